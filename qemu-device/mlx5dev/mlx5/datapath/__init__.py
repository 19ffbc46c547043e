"""The card's data path: send WQEs executed (``tx``), frames received into RQs (``rx``), completion
events (``events``), the rings and memory keys they use (``wq``), what the offload engines compute
(``packet``) and the port's traffic counters (``counters``). Where a frame goes between ports is the
card's business (``mlx5dev.card``: the cable)."""

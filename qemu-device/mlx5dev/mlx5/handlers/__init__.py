"""Command handlers, one module per area; importing this package registers all of them."""

from . import access_reg, counters, cq, eq, flow, hca, l2, mkey, pd, queues, vport  # noqa: F401

"""The positive control's edits (Variant B) against the guest kernel's real Debian source.

The source is the ``linux-source`` .deb of the guest image's kernel version that `make setup` downloaded to
build the positive control; only ``mlx5/core`` and ``mlxfw`` are extracted (about 5 s, shared per session).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from mlx5image.vulnerable.edits import HELPER, POISON, VARIANT_B, apply_edits


def test_variant_b_applies_to_the_debian_source(mellanox_source: Path, tmp_path: Path) -> None:
    tree = shutil.copytree(mellanox_source, tmp_path / "mellanox", symlinks=True)
    diff = apply_edits(tree, VARIANT_B)
    cmd = (tree / "mlx5/core/cmd.c").read_text()
    main = (tree / "mlx5/core/main.c").read_text()
    en_main = (tree / "mlx5/core/en_main.c").read_text()
    assert "mlx5_cmd_is_down(dev) || !opcode_allowed(&dev->cmd, opcode)" not in cmd
    assert f"void {HELPER}(struct mlx5_core_dev *dev)" in cmd and POISON in cmd
    helper = cmd[cmd.index(f"void {HELPER}("):]
    assert helper.index("rtnl_lock()") < helper.index("dma_pool_destroy") < helper.index("rtnl_unlock()")
    assert "#include <linux/rtnetlink.h>" in cmd
    assert f"{HELPER}(dev);\n\tmsleep(2000);" in main and "mlx5_unload_one(dev, true);" in main
    start = en_main.index("static void mlx5e_nic_disable(")
    assert "netif_device_detach(priv->netdev);" not in en_main[start:en_main.index("\n}\n", start)]
    assert f"void {HELPER}(struct mlx5_core_dev *dev);" in (tree / "mlx5/core/mlx5_core.h").read_text()
    assert diff.count("\n+++ b/") + diff.startswith("+++") == 4
    assert "mlx5_cmd_is_down(dev) || !opcode_allowed" in (mellanox_source / "mlx5/core/cmd.c").read_text()  # shared


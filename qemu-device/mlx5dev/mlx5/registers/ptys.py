"""PTYS (0x5004): port speeds; the register behind ``cat /sys/class/net/<if>/speed``.

The read path in 6.1: ``net/core/net-sysfs.c: speed_show`` -> ``net/ethtool/ioctl.c:
__ethtool_get_link_ksettings`` -> ``drivers/net/ethernet/mellanox/mlx5/core/en_ethtool.c:
mlx5e_ethtool_get_link_ksettings`` -> ``port.c: mlx5_query_port_ptys`` (ACCESS_REG read, ``proto_mask``
``MLX5_PTYS_EN``, ``local_port`` 1). The register layout is ``struct mlx5_ifc_ptys_reg_bits`` in
``include/linux/mlx5/mlx5_ifc.h``.
"""

from __future__ import annotations

from ..consts import Reg
from ..errors import bad_param
from ..ifc.regs import PTYS
from . import RegCtx, register

PTYS_EN = 1 << 2  # proto_mask: Ethernet
CONNECTOR_DA = 7  # MLX5E_PORT_DA (direct attach copper), only shown with PCAM ptys_connector_type


def check_port(rc: RegCtx) -> None:
    if rc.get("local_port") != 1:
        raise bad_param(f"{rc.layout.name}: local_port {rc.get('local_port')} (only port 1 exists)")


@register(Reg.PTYS, PTYS)
def ptys(rc: RegCtx) -> None:
    check_port(rc)
    if rc.write:
        rc.note = (
            f"admin write eth {rc.get('eth_proto_admin'):#x} ext {rc.get('ext_eth_proto_admin'):#x} ignored"
        )
    view = rc.dev.port.ptys()
    rc.out[:] = bytes(len(rc.out))
    rc.put("local_port", 1)
    rc.put("proto_mask", rc.get("proto_mask") or PTYS_EN)
    rc.put("an_disable_cap", 1)
    if not rc.get("proto_mask") & PTYS_EN and rc.get("proto_mask"):
        return  # IB / FC protocol groups: nothing to report on an Ethernet port
    for name in (
        "eth_proto_capability",
        "eth_proto_admin",
        "eth_proto_oper",
        "ext_eth_proto_capability",
        "ext_eth_proto_admin",
        "ext_eth_proto_oper",
        "data_rate_oper",
        "an_status",
    ):
        rc.put(name, getattr(view, name))
    rc.put("eth_proto_lp_advertise", view.eth_proto_oper)
    rc.put("connector_type", CONNECTOR_DA)
    rc.note = rc.note or f"{rc.dev.port.speed_mbps} Mb/s {'up' if rc.dev.port.oper_up else 'down'}"

"""HCA life cycle and function-level commands.

Where the 6.1 driver issues them (paths under ``drivers/net/ethernet/mellanox/mlx5/core/``):

- ``main.c: mlx5_function_enable``: ENABLE_HCA, QUERY_ISSI/SET_ISSI (``mlx5_core_set_issi``), boot pages;
- ``main.c: mlx5_function_open``: ``set_hca_ctrl``, SET_HCA_CAP (``handle_hca_cap``), init pages,
  INIT_HCA (``fw.c: mlx5_cmd_init_hca``), ``mlx5_set_driver_version``, ``fw.c: mlx5_query_hca_caps``;
- ``main.c: mlx5_init_once``: QUERY_ADAPTER (``fw.c: mlx5_query_board_id``);
- ``main.c: mlx5_load``: ALLOC_UAR (``uar.c: mlx5_get_uars_page``);
- pages: ``pagealloc.c: mlx5_satisfy_startup_pages``, ``give_pages``, ``reclaim_pages``;
- teardown: ``main.c: mlx5_function_teardown`` (TEARDOWN_HCA in ``fw.c: mlx5_cmd_teardown_hca``, then
  ``mlx5_function_disable``: page reclaim and DISABLE_HCA) and ``main.c: mlx5_try_fast_unload``
  (``fw.c: mlx5_cmd_fast_teardown_hca``, then ``mlx5_cmd_force_teardown_hca``).
"""

from __future__ import annotations

from ..capabilities import CAP_PAGE, WRITABLE_GENERAL
from ..consts import Cap, Op, Status
from ..dispatcher import Ctx, Phase, handler
from ..errors import CmdError, Synd, bad_param, bad_state
from ..ifc import cmds as c
from ..ifc.caps import CMD_HCA_CAP
from ..objects import Opaque
from ..state import MAX_GIVEN_PAGES

SUPPORTED_ISSI = 0x3  # ISSI 0 and 1
PAGES_CANT_GIVE, PAGES_GIVE, PAGES_TAKE = 0, 1, 2
PAS_ENTRY = 8


@handler(Op.ENABLE_HCA, c.ENABLE_HCA_IN, c.CMD_OUT, Phase.ANY)
def enable_hca(ctx: Ctx) -> None:
    if ctx.get("function_id") != 0 or ctx.get("embedded_cpu_function"):
        raise bad_param(f"function_id {ctx.get('function_id')} is not this function")
    if ctx.dev.hca.enabled:
        # the driver's health recovery reloads without a device reset (no VSC here): start afresh,
        # as the firmware reset of a real recovery would
        ctx.note("ENABLE_HCA on an enabled function: firmware state dropped")
        ctx.after(ctx.dev.teardown)
    ctx.dev.hca.enabled = True


@handler(Op.DISABLE_HCA, c.DISABLE_HCA_IN, c.CMD_OUT, Phase.ENABLED)
def disable_hca(ctx: Ctx) -> None:
    if ctx.dev.hca.initialized:
        ctx.note("disabled while initialised: objects dropped")
    ctx.dev.hca.enabled = False
    ctx.after(ctx.dev.teardown)  # after the completion, so an (unusual) events-mode caller gets its EQE


@handler(Op.QUERY_ISSI, c.CMD_IN, c.QUERY_ISSI_OUT, Phase.ENABLED)
def query_issi(ctx: Ctx) -> None:
    ctx.put("current_issi", ctx.dev.hca.issi)
    ctx.put("supported_issi_dw0", SUPPORTED_ISSI)


@handler(Op.SET_ISSI, c.SET_ISSI_IN, c.CMD_OUT, Phase.ENABLED)
def set_issi(ctx: Ctx) -> None:
    issi = ctx.get("current_issi")
    if issi >= 32 or not (SUPPORTED_ISSI >> issi) & 1:
        raise bad_param(f"ISSI {issi} not supported")
    ctx.dev.hca.issi = issi


@handler(Op.QUERY_PAGES, c.QUERY_PAGES_IN, c.QUERY_PAGES_OUT, Phase.ENABLED)
def query_pages(ctx: Ctx) -> None:
    # boot (1), init (2) and regular (3) page demands are all 0: the model needs no host memory
    if ctx.op_mod not in (1, 2, 3):
        raise bad_param(f"QUERY_PAGES op_mod {ctx.op_mod}")
    ctx.put("function_id", 0)
    ctx.put("num_pages", 0)


@handler(Op.MANAGE_PAGES, c.MANAGE_PAGES_IN, c.MANAGE_PAGES_OUT, Phase.ENABLED)
def manage_pages(ctx: Ctx) -> None:
    hca = ctx.dev.hca
    n = ctx.get("input_num_entries")
    pas_off = c.MANAGE_PAGES_IN.off("pas")
    if ctx.op_mod == PAGES_CANT_GIVE:
        return
    if ctx.op_mod == PAGES_GIVE:
        if pas_off + n * PAS_ENTRY > ctx.req.inlen:
            raise CmdError(
                Status.BAD_INP_LEN, Synd.BAD_INPUT_LEN | Op.MANAGE_PAGES, f"{n} pages do not fit inlen"
            )
        if len(hca.given_pages) + n > MAX_GIVEN_PAGES:
            raise CmdError(Status.NO_RES, Synd.NO_RESOURCES | Op.MANAGE_PAGES, "too many pages given")
        pas = ctx.inp[pas_off : pas_off + n * PAS_ENTRY]
        hca.given_pages += [int.from_bytes(pas[i : i + 8], "big") for i in range(0, len(pas), PAS_ENTRY)]
        return
    if ctx.op_mod == PAGES_TAKE:
        n = min(n, len(hca.given_pages), (ctx.req.outlen - pas_off) // PAS_ENTRY)
        taken, hca.given_pages = (
            hca.given_pages[len(hca.given_pages) - n :],
            hca.given_pages[: len(hca.given_pages) - n],
        )
        ctx.put("output_num_entries", n)
        for i, addr in enumerate(taken):
            ctx.out[pas_off + i * PAS_ENTRY : pas_off + (i + 1) * PAS_ENTRY] = addr.to_bytes(8, "big")
        return
    raise bad_param(f"MANAGE_PAGES op_mod {ctx.op_mod}")


@handler(Op.QUERY_HCA_CAP, c.QUERY_HCA_CAP_IN, c.QUERY_HCA_CAP_OUT, Phase.ENABLED)
def query_hca_cap(ctx: Ctx) -> None:
    cap_type, cur = ctx.op_mod >> 1, ctx.op_mod & 1
    if ctx.get("other_function"):
        raise bad_param("other_function caps are not available")
    if cap_type not in Cap._value2member_map_:
        raise bad_param(f"unknown capability type {cap_type:#x}", cap_type)
    pages = ctx.dev.caps_cur if cur else ctx.dev.caps_max
    page = pages.get(cap_type, bytes(CAP_PAGE))
    off = c.QUERY_HCA_CAP_OUT.off("capability")
    ctx.out[off : off + CAP_PAGE] = page
    ctx.note(f"{Cap(cap_type).name} {'cur' if cur else 'max'}")


@handler(Op.SET_HCA_CAP, c.SET_HCA_CAP_IN, c.CMD_OUT, Phase.ENABLED)
def set_hca_cap(ctx: Ctx) -> None:
    cap_type = ctx.op_mod >> 1
    if cap_type not in Cap._value2member_map_:
        raise bad_param(f"unknown capability type {cap_type:#x}", cap_type)
    if ctx.dev.hca.initialized:
        raise bad_state("SET_HCA_CAP after INIT_HCA")
    if cap_type != Cap.GENERAL:
        ctx.note(f"{Cap(cap_type).name}: accepted, nothing writable")
        return
    off = c.SET_HCA_CAP_IN.off("capability")
    new, cur = ctx.inp[off : off + CMD_HCA_CAP.size], ctx.dev.caps_cur[Cap.GENERAL]
    for name in WRITABLE_GENERAL:
        CMD_HCA_CAP.set(cur, name, CMD_HCA_CAP.get(new, name))


@handler(Op.INIT_HCA, c.INIT_HCA_IN, c.CMD_OUT, Phase.ENABLED)
def init_hca(ctx: Ctx) -> None:
    if ctx.dev.hca.initialized:
        raise bad_state("INIT_HCA twice")
    ctx.dev.hca.initialized = True


@handler(Op.TEARDOWN_HCA, c.TEARDOWN_HCA_IN, c.TEARDOWN_HCA_OUT, Phase.ENABLED)
def teardown_hca(ctx: Ctx) -> None:
    profile = ctx.get("profile")
    if profile not in (0, 1, 2):
        raise bad_param(f"TEARDOWN_HCA profile {profile}")
    ctx.put("state", 0)  # MLX5_TEARDOWN_HCA_OUT_FORCE_STATE_SUCCESS
    ctx.note(["graceful", "force close", "prepare fast teardown"][profile])
    ctx.after(ctx.dev.teardown)  # after the completion: a fast teardown still needs the cmd EQ for it


@handler(Op.QUERY_ADAPTER, c.CMD_IN, c.QUERY_ADAPTER_OUT)
def query_adapter(ctx: Ctx) -> None:
    psid = ctx.dev.config.board_id.encode()[:16].ljust(16, b"\0")
    c.QUERY_ADAPTER_OUT.set_bytes(ctx.out, "query_adapter_struct.vsd_contd_psid", psid)
    ctx.put("query_adapter_struct.ieee_vendor_id", 0x0002C9)  # Mellanox OUI


@handler(Op.SET_DRIVER_VERSION, c.SET_DRIVER_VERSION_IN, c.CMD_OUT)
def set_driver_version(ctx: Ctx) -> None:
    raw = c.SET_DRIVER_VERSION_IN.get_bytes(ctx.inp, "driver_version")
    ctx.dev.hca.driver_version = raw.split(b"\0", 1)[0].decode("ascii", "replace")
    ctx.note(ctx.dev.hca.driver_version)


@handler(Op.ALLOC_UAR, c.CMD_IN, c.ALLOC_UAR_OUT)
def alloc_uar(ctx: Ctx) -> None:
    ctx.put("uar", ctx.dev.objects.uars.add(Opaque()))


@handler(Op.DEALLOC_UAR, c.DEALLOC_UAR_IN, c.CMD_OUT)
def dealloc_uar(ctx: Ctx) -> None:
    uar = ctx.get("uar")
    users = [eq.eqn for eq in ctx.dev.objects.eqs.values() if eq.uar_page == uar]
    if users:
        ctx.note(f"UAR still used by EQs {users}")
    ctx.dev.objects.uars.remove(uar)


@handler(Op.NOP, c.CMD_IN, c.CMD_OUT, Phase.ENABLED)
def nop(ctx: Ctx) -> None:
    pass

"""The operation vocabulary of fuzz programs, as data: every op kind, its names and each argument's domain.

Five kinds (program format v1): ``read`` (a guest reader, one name per reader kind of ``mlx5lab-read``),
``path`` (an unload/reload path of :mod:`mlx5lab.paths.registry`, guest- or device-side), ``device`` (an event
through the card's control channel), ``sleep`` (its one positional argument, seconds) and ``wait``.

An argument's :class:`Domain` is its type, its default and the values the fuzzer may give it (choices, or
an inclusive numeric range plus a few *special* values drawn more often, as syzkaller draws special
integers). Defaults are never printed in a program, so the executor reads every value through
:func:`full_args`. Ranges chosen here (the registry gives only choices and minimums):

- ``fn`` of every kind: ``0``, ``1`` or ``both``, the functions of the default card (:data:`CARD_FUNCTIONS`);
  the registry's indices 2..7 are dropped, they fail on a two-function card.
- path ``count`` arguments (repeat counts, minimum 1): minimum .. minimum + 2, so a path stays seconds long.
- path ``bool`` arguments: both values.
- path arguments the registry gives no domain for, listed in :data:`PATH_ARG_DOMAINS`: ``ethtool-rings
  sizes`` (a few size lists), ``speed-change mbps`` (the speeds PTYS reports), ``link-flap down_ms``
  (0..5000), ``fw-fatal synd`` (1..255), ``fw-dead seconds`` (0.1..10), ``health-counter-freeze seconds``
  (1..12).
- any other path argument without choices (``reboot``/``poweroff`` ``timeout``): *fixed*: any value the
  path takes is valid, but the fuzzer never changes the default (a timeout changes how long we wait, not
  what the driver does).
- ``read``: ``threads`` 1..16, ``duration`` 0.1..30 s; ``sleep`` 0..10 s (the format's bounds).
- ``device``: control-channel arguments with the control channel's defaults where it has one; conventions
  (translated by :func:`control_request`): ``fn=both`` means every function (``function`` omitted),
  ``fault opcode=any``/``register=any`` match every command, ``fault status=none`` does not fail it,
  ``fault count=0`` means every matching command (no limit), ``fw_dead seconds=0`` means it stays dead.

Cross-argument rules live in an :class:`OpSpec`'s ``check`` (``fault``: ``drop``/``hold`` need a count, a
register needs ``opcode=ACCESS_REG`` or ``any``; ``corrupt``: the field must be an output field of the
opcode and the value must fit its width). :func:`validate_op` is the one check of an op against the
vocabulary: it returns the op *normalized* (typed values, defaults dropped, sorted) or raises
:class:`OpError` naming the argument.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

KINDS = ("read", "path", "device", "sleep", "wait")
CARD_FUNCTIONS = 2  # the default card: 01:00.0 and 01:00.1
FN_VALUES = ("0", "1", "both")
FLOAT_DECIMALS = 3

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


class OpError(ValueError):
    """An op the vocabulary does not take; ``key`` is the offending argument (None: the kind or name)."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


def format_value(value: Any) -> str:
    """A value as a program prints it: ``true``/``false``, floats with at most 3 decimals (``0.35``, ``2``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        text = f"{value:.{FLOAT_DECIMALS}f}".rstrip("0").rstrip(".")
        return "0" if text in ("", "-0") else text
    return str(value)


def _same(a: Any, b: Any) -> bool:
    """Equal and of the same type (True is not 1 here)."""
    return type(a) is type(b) and a == b


@dataclass(frozen=True)
class Domain:
    """One argument: ``type`` is choice, int, float, bool or str (str: a free word, never fuzzed)."""

    key: str
    type: str
    default: Any
    choices: tuple[Any, ...] = ()
    low: float | None = None
    high: float | None = None
    special: tuple[Any, ...] = ()
    fuzzed: bool = True
    help: str = ""

    def coerce(self, value: Any) -> Any:
        """``value`` (Python or program text) as this argument's type, checked; ValueError says why."""
        if self.type == "choice":
            return self._choice(value)
        if self.type == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, int) and value in (0, 1):
                return bool(value)
            if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
                return value.lower() in _TRUE
            raise ValueError(f"{self.key}={format_value(value)}: not a bool (true or false)")
        if self.type == "int":
            return self._ranged(self._int(value))
        if self.type == "float":
            return self._ranged(self._float(value))
        return self._word(value)

    def _choice(self, value: Any) -> Any:
        for c in self.choices:
            if _same(c, value):
                return c
        text = value if isinstance(value, str) else format_value(value)
        for c in self.choices:
            if format_value(c) == text:
                return c
        raise ValueError(f"{self.key}={format_value(value)}: not one of "
                         f"{'|'.join(format_value(c) or repr(c) for c in self.choices)}")

    def _int(self, value: Any) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value, 0)
            except ValueError:
                pass
        raise ValueError(f"{self.key}={format_value(value)}: not an integer")

    def _float(self, value: Any) -> float:
        v: float | None = None
        if isinstance(value, int | float) and not isinstance(value, bool):
            v = float(value)
        elif isinstance(value, str):
            try:
                v = float(value)
            except ValueError:
                v = None
        if v is None or not math.isfinite(v):
            raise ValueError(f"{self.key}={format_value(value)}: not a number")
        return round(v, FLOAT_DECIMALS) + 0.0  # + 0.0: no -0.0

    def _ranged(self, v: Any) -> Any:
        if not self.fuzzed:
            return v
        if (self.low is not None and v < self.low) or (self.high is not None and v > self.high):
            raise ValueError(f"{self.key}={format_value(v)}: out of range "
                             f"{format_value(self.low)}..{format_value(self.high)}")
        return v

    def _word(self, value: Any) -> str:
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = format_value(value)
        if not isinstance(value, str) or any(c.isspace() for c in value) or value.startswith(("#", "&")):
            raise ValueError(f"{self.key}={value!r}: not a word (no spaces, not starting with # or &)")
        return value

    # -- generation ---------------------------------------------------------------------------------
    def values(self) -> tuple[Any, ...]:
        """Every value of a finite domain (choice, bool, fixed); () for a numeric range."""
        if not self.fuzzed:
            return (self.default,)
        if self.type == "choice":
            return self.choices
        if self.type == "bool":
            return (False, True)
        return ()

    def varies(self) -> bool:
        """Whether the fuzzer can give this argument more than one value."""
        return self.fuzzed and (self.type in ("int", "float") or len(self.values()) > 1)

    def draw(self, rng: random.Random, cap: float | None = None) -> Any:
        """A random value (numeric ranges: a special value half of the time); ``cap`` lowers ``high``."""
        finite = self.values()
        if finite:
            return finite[rng.randrange(len(finite))]
        assert self.low is not None and self.high is not None
        high = self.high if cap is None else max(self.low, min(self.high, cap))
        special = [s for s in self.special if self.low <= s <= high]
        if special and rng.random() < 0.5:
            return special[rng.randrange(len(special))]
        if self.type == "int":
            return rng.randint(int(self.low), int(high))
        v = math.floor(rng.uniform(self.low, high) * 10**FLOAT_DECIMALS) / 10**FLOAT_DECIMALS
        return self._float(min(high, max(self.low, v)))


def choice(key: str, values: Iterable[Any], default: Any, help: str = "") -> Domain:
    return Domain(key, "choice", default, tuple(values), help=help)


def integer(key: str, low: int, high: int, default: int, special: Iterable[int] = (), help: str = "") -> Domain:
    return Domain(key, "int", default, low=low, high=high, special=tuple(special), help=help)


def real(key: str, low: float, high: float, default: float, special: Iterable[float] = (),
         help: str = "") -> Domain:
    return Domain(key, "float", float(default), low=low, high=high, special=tuple(float(s) for s in special),
                  help=help)


def boolean(key: str, default: bool, help: str = "") -> Domain:
    return Domain(key, "bool", default, help=help)


def fn_domain(help: str = "the function: 0, 1 or both") -> Domain:
    return choice("fn", FN_VALUES, "both", help)


Check = Callable[[Mapping[str, Any]], str | None]
Sampler = Callable[[random.Random], dict[str, Any]]


@dataclass(frozen=True)
class OpSpec:
    """One operation of the vocabulary.

    ``side``: who performs it (guest, device, or None: the executor itself, for sleep and wait).
    ``time_arg``: the argument, in seconds, that counts toward a program's duration bound.
    ``positional``: the op's one argument is written bare after the kind (``sleep 0.35``) and always printed.
    ``check``: a cross-argument rule over the full arguments (a message when broken).
    ``sample``: draws consistent arguments when independent draws rarely pass ``check``.
    ``concurrent``: for a path, the arguments under which background operations keep running while it
    tears down (:attr:`mlx5lab.paths.registry.DriverPath.concurrent_args`).
    """

    kind: str
    name: str
    domains: tuple[Domain, ...]
    side: str | None
    help: str = ""
    time_arg: str | None = None
    positional: bool = False
    background_ok: bool = True
    check: Check | None = field(default=None, compare=False)
    sample: Sampler | None = field(default=None, compare=False)
    concurrent: tuple[tuple[str, Any], ...] = ()

    def domain(self, key: str) -> Domain:
        for d in self.domains:
            if d.key == key:
                return d
        raise OpError(f"{self.title()}: unknown argument {key!r}; its arguments: "
                      f"{', '.join(d.key for d in self.domains) or 'none'}", key)

    def arg_keys(self) -> tuple[str, ...]:
        return tuple(d.key for d in self.domains)

    def defaults(self) -> dict[str, Any]:
        return {d.key: d.default for d in self.domains}

    def title(self) -> str:
        return f"{self.kind} {self.name}".strip()


# -- read ---------------------------------------------------------------------------------------------
# guest-images/reader/mlx5lab-read: each kind and the driver code it reaches.
READ_KINDS: dict[str, str] = {
    "speed": "read /sys/class/net/IF/speed (mlx5e_get_link_ksettings: ACCESS_REG PTYS, PFCC)",
    "duplex": "read .../duplex (as speed)",
    "carrier": "read .../carrier (no driver call: a control)",
    "operstate": "read .../operstate (no driver call: a control)",
    "statistics": "read .../statistics/rx_bytes, tx_bytes (mlx5e_get_stats64, update_stats_work)",
    "procnetdev": "read /proc/net/dev (dev_get_stats of every device)",
    "ethtool-ioctl": "ethtool -i IF (ETHTOOL_GDRVINFO: mlx5e_get_drvinfo, PFCC)",
    "ethtool-netlink": "ethtool IF (LINKMODES, LINKINFO, WOL, DEBUG, LINKSTATE)",
    "ethtool-netlink-dump": "ethtool '*' (the same requests as a dump over every netdev)",
    "ethtool-stats": "ethtool -S IF (mlx5e_stats_update: PPCNT, QUERY_VPORT_COUNTER, QUERY_Q_COUNTER)",
    "ethtool-module": "ethtool -m IF (module EEPROM: PMLP, MCIA)",
    "devlink-info": "devlink dev info (mlx5_devlink_info_get: MCQI, MCQS)",
    "devlink-health": "devlink health show (a dump of the reporters)",
    "devlink-port": "devlink port show (a dump of the ports)",
    "bond-speed": "read /sys/class/net/BOND/speed (bonding over mlx5 ports)",
    "vlan-speed": "read /sys/class/net/VLAN/speed (__ethtool_get_link_ksettings of the real device)",
    "traffic": "UDP datagrams out of each port across the card's cable (mlx5e_xmit, the partner's RQ and NAPI)",
}

# Readers whose driver call queries the PTYS register: net-sysfs.c speed_show / duplex_show and ethtool's
# LINKMODES (net/ethtool/linkmodes.c) -> __ethtool_get_link_ksettings -> en_ethtool.c: mlx5e_get_link_ksettings;
# bonding's miimon (bond_main.c: bond_update_speed_duplex) and 802.1Q (vlan_dev.c:
# vlan_ethtool_get_link_ksettings) pass the same call down to the mlx5 port.
PTYS_READERS = frozenset({"speed", "duplex", "ethtool-netlink", "ethtool-netlink-dump", "bond-speed", "vlan-speed"})

READ_DOMAINS = (
    integer("threads", 1, 16, 2, (1, 2, 4, 8, 16), "reader threads (mlx5lab-read -t)"),
    real("duration", 0.1, 30.0, 2.0, (0.1, 0.5, 1, 2, 5), "seconds the readers run (mlx5lab-read -d)"),
    fn_domain("the ports read: function 0, 1 or both"),
)

SLEEP_DOMAIN = real("seconds", 0.0, 10.0, 0.0, (0.001, 0.01, 0.05, 0.1, 0.2, 0.5, 1, 2),
                    "seconds the executor waits")

# -- device -----------------------------------------------------------------------------------------
# Opcodes and registers a fault or corruption targets: the commands of teardown, of probe, and of the
# readers (mlx5dev.mlx5.consts names; tests check them against it).
FAULT_OPCODES = (
    "ACCESS_REG", "CREATE_CQ", "CREATE_EQ", "CREATE_MKEY", "DEALLOC_PD", "DEALLOC_Q_COUNTER", "DEALLOC_UAR",
    "DESTROY_CQ", "DESTROY_EQ", "DESTROY_MKEY", "DESTROY_RQ", "DESTROY_SQ", "DESTROY_TIR", "DESTROY_TIS",
    "DISABLE_HCA", "ENABLE_HCA", "INIT_HCA", "MANAGE_PAGES", "MODIFY_NIC_VPORT_CONTEXT", "MODIFY_RQ", "MODIFY_SQ",
    "QUERY_HCA_CAP", "QUERY_ISSI", "QUERY_NIC_VPORT_CONTEXT", "QUERY_PAGES", "QUERY_Q_COUNTER",
    "QUERY_VPORT_COUNTER", "QUERY_VPORT_STATE", "SET_HCA_CAP", "TEARDOWN_HCA",
)
FAULT_REGISTERS = (
    "DCBX_PARAM", "MCAM", "MCIA", "MCQI", "MCQS", "MFRL", "MTRC_CAP", "PAOS", "PCAM", "PDDR", "PFCC", "PMLP",
    "PMTU", "PPCNT", "PPLM", "PTYS", "QCAM",
)
# Command status a fault answers with (device.h MLX5_CMD_STAT_*; the control channel takes the number).
FAULT_STATUS: dict[str, int] = {
    "INT_ERR": 0x01, "BAD_OP": 0x02, "BAD_PARAM": 0x03, "BAD_SYS_STATE": 0x04, "BAD_RES": 0x05,
    "RES_BUSY": 0x06, "LIM_ERR": 0x08, "BAD_RES_STATE": 0x09, "IX_ERR": 0x0A, "NO_RES": 0x0F,
    "BAD_QP_STATE": 0x10, "BAD_PKT": 0x30, "BAD_SIZE_OUTS_CQES": 0x40, "BAD_INP_LEN": 0x50, "BAD_OUTP_LEN": 0x51,
}
ANY = "any"
NO_STATUS = "none"
# Speeds the card reports through PTYS (mlx5dev.mlx5.port: LEGACY_BIT, EXT_BIT), 1 Gb/s and up.
LINK_SPEEDS = (1000, 5000, 10000, 20000, 25000, 40000, 50000, 56000, 100000, 200000, 400000)
# corrupt: output fields of command answers (mlx5_ifc.h *_out, as mlx5dev.mlx5.ifc.cmds lays them out) and
# their widths in bits: (opcode, field) -> width.
CORRUPT_FIELDS: dict[tuple[str, str], int] = {
    ("ALLOC_PD", "pd"): 24,
    ("ALLOC_Q_COUNTER", "counter_set_id"): 8,
    ("ALLOC_TRANSPORT_DOMAIN", "transport_domain"): 24,
    ("ALLOC_UAR", "uar"): 24,
    ("CREATE_CQ", "cqn"): 24,
    ("CREATE_EQ", "eq_number"): 8,
    ("CREATE_FLOW_TABLE", "table_id"): 24,
    ("CREATE_MKEY", "mkey_index"): 24,
    ("CREATE_RQ", "rqn"): 24,
    ("CREATE_SQ", "sqn"): 24,
    ("CREATE_TIR", "tirn"): 24,
    ("CREATE_TIS", "tisn"): 24,
    ("MANAGE_PAGES", "output_num_entries"): 32,
    ("QUERY_ISSI", "current_issi"): 16,
    ("QUERY_ISSI", "supported_issi_dw0"): 32,
    ("QUERY_PAGES", "function_id"): 16,
    ("QUERY_PAGES", "num_pages"): 32,
    ("QUERY_VPORT_STATE", "admin_state"): 4,
    ("QUERY_VPORT_STATE", "state"): 4,
    ("TEARDOWN_HCA", "state"): 1,
}
CORRUPT_MAX = 0xFFFFFFFF
# Counts whose byte size wraps 32 bits when multiplied by an element of 4, 8 or 16 bytes (the product becomes
# 4, 8 or 16): a driver that sizes a buffer from a firmware count in 32-bit arithmetic allocates a few bytes
# and then writes the count's elements into them (pagealloc.c: give_pages does inlen += npages * 8 for
# QUERY_PAGES' num_pages, then fills pas[0..npages)).
OVERFLOW_COUNTS = tuple((1 << (32 - k)) + 1 for k in (2, 3, 4))


def _check_fault(a: Mapping[str, Any]) -> str | None:
    if (a["drop"] or a["hold"]) and a["count"] == 0:
        return "drop and hold need a count (count=0, every command, would stall the whole driver)"
    if a["register"] != ANY and a["opcode"] not in (ANY, "ACCESS_REG"):
        return f"register={a['register']} needs opcode=ACCESS_REG (or any), not {a['opcode']}"
    return None


def _check_corrupt(a: Mapping[str, Any]) -> str | None:
    width = CORRUPT_FIELDS.get((a["opcode"], a["field"]))
    if width is None:
        fields = sorted(f for (o, f) in CORRUPT_FIELDS if o == a["opcode"])
        return f"field={a['field']} is not an output field of {a['opcode']} (its fields: {', '.join(fields)})"
    if a["value"] >= 1 << width:
        return f"value={a['value']} does not fit {a['field']} ({width} bits)"
    return None


def _sample_corrupt(rng: random.Random) -> dict[str, Any]:
    pairs = sorted(CORRUPT_FIELDS)
    opcode, fld = pairs[rng.randrange(len(pairs))]
    top = (1 << CORRUPT_FIELDS[opcode, fld]) - 1
    special = sorted({0, 1, top, max(0, top - 1), (top + 1) // 2, *(c for c in OVERFLOW_COUNTS if c <= top)})
    value = special[rng.randrange(len(special))] if rng.random() < 0.5 else rng.randint(0, top)
    return {"fn": FN_VALUES[rng.randrange(len(FN_VALUES))], "opcode": opcode, "field": fld, "value": value}


def _device(name: str, help: str, *domains: Domain, check: Check | None = None,
            sample: Sampler | None = None) -> OpSpec:
    return OpSpec("device", name, tuple(domains), "device", help, check=check, sample=sample)


DEVICE_EVENTS: tuple[OpSpec, ...] = (
    _device("clear_faults", "remove every fault rule", fn_domain()),
    _device("corrupt", "answer a command with an output field out of the range the driver expects",
            fn_domain(),
            choice("opcode", sorted({o for o, _ in CORRUPT_FIELDS}), "QUERY_PAGES", "the command"),
            choice("field", sorted({f for _, f in CORRUPT_FIELDS}), "num_pages", "its output field"),
            integer("value", 0, CORRUPT_MAX, 0, (0, 1, 0xFF, 0xFFFF, 0xFFFFFF, *sorted(OVERFLOW_COUNTS),
                                                 0x7FFFFFFF, CORRUPT_MAX), "the value answered"),
            check=_check_corrupt, sample=_sample_corrupt),
    _device("fault", "delay, fail, drop or hold matching commands",
            fn_domain(),
            choice("opcode", (ANY, *FAULT_OPCODES), ANY, "the command matched (any: every command)"),
            choice("register", (ANY, *FAULT_REGISTERS), ANY, "ACCESS_REG only: the register matched"),
            integer("delay_ms", 0, 5000, 0, (0, 1, 10, 100, 500, 2000, 5000), "delay before execution"),
            choice("status", (NO_STATUS, *FAULT_STATUS), NO_STATUS, "fail with this command status"),
            boolean("drop", False, "never complete it (the driver times out)"),
            boolean("hold", False, "park it until release_held (a late completion)"),
            integer("count", 0, 8, 1, (0, 1, 2, 8), "matching commands affected (0: every one)"),
            check=_check_fault),
    _device("flap_link", "cable out, back in after down_ms", fn_domain(),
            integer("down_ms", 0, 5000, 500, (0, 1, 10, 100, 500, 2000), "milliseconds without link")),
    _device("freeze_health_counter", "stop (or restart) the firmware's health counter",
            boolean("frozen", True, "frozen (true) or running again")),
    _device("fw_dead", "every firmware read returns all-ones; back (reset) after seconds",
            real("seconds", 0.0, 10.0, 0.0, (0, 0.1, 1, 5), "seconds until it comes back (0: stays dead)")),
    _device("fw_fatal", "a firmware assert: health syndrome with recovery-required",
            integer("synd", 1, 255, 1, (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 255), "health syndrome")),
    _device("release_held", "complete the commands a hold fault parked", fn_domain()),
    _device("set_link", "plug or unplug the cable", fn_domain(), boolean("up", False, "plugged (true) or not")),
    _device("set_speed", "change the negotiated speed", fn_domain(),
            choice("mbps", LINK_SPEEDS, 100000, "Mb/s")),
    _device("sync_reset", "the firmware asks every function for a sync reset"),
)

# -- path ---------------------------------------------------------------------------------------------
PATH_COUNT_SPAN = 2  # repeat counts ("count"): minimum .. minimum + 2
# Path arguments whose domain the registry does not give (free strings, ints with only a minimum, floats):
# (path, argument) -> Domain fields; the default is always the registry's.
PATH_ARG_DOMAINS: dict[tuple[str, str], dict[str, Any]] = {
    ("ethtool-rings", "sizes"): {"type": "choice",
                                 "choices": ("64,512,max", "64", "512", "max", "64,max", "max,64,max")},
    ("speed-change", "mbps"): {"type": "choice", "choices": LINK_SPEEDS},
    ("link-flap", "down_ms"): {"type": "int", "low": 0, "high": 5000, "special": (0, 1, 10, 100, 500, 2000)},
    ("fw-fatal", "synd"): {"type": "int", "low": 1, "high": 255, "special": (1, 7, 8, 255)},
    ("fw-dead", "seconds"): {"type": "float", "low": 0.1, "high": 10.0, "special": (0.1, 1.0, 3.0)},
    ("health-counter-freeze", "seconds"): {"type": "float", "low": 1.0, "high": 12.0, "special": (2.0, 10.0)},
}


def path_domain(path: str, info: Any) -> Domain:
    """The domain of one path argument from its registry ``ArgInfo`` (module docstring: the rules)."""
    help = info.help
    override = PATH_ARG_DOMAINS.get((path, info.name))
    if override is not None:
        kw = dict(override)
        if kw["type"] == "choice" and info.default not in kw["choices"]:
            kw["choices"] = (info.default, *kw["choices"])
        default = float(info.default) if kw["type"] == "float" else info.default
        return Domain(info.name, default=default, help=help, **kw)
    if info.choices is not None:
        values = tuple(info.choices)
        if all(isinstance(c, str) for c in values) and any(c.isdigit() for c in values):
            values = tuple(c for c in values if not c.isdigit() or int(c) < CARD_FUNCTIONS or c == info.default)
        return choice(info.name, values, info.default, help)
    if info.type == "bool":
        return boolean(info.name, bool(info.default), help)
    if info.type == "int" and info.minimum is not None and info.name == "count":
        low = int(info.minimum)
        return integer(info.name, low, max(int(info.default), low) + PATH_COUNT_SPAN, int(info.default), (low,),
                       help)
    base = info.type if info.type in ("int", "float") else "str"
    return Domain(info.name, base, info.default, fuzzed=False, help=help)


def _check_path(name: str) -> Check:
    def check(a: Mapping[str, Any]) -> str | None:
        from ..paths.registry import get_path

        try:
            get_path(name).make_args(**a)
        except Exception as exc:  # PathArgError, or a broken Args: both make the op invalid
            return str(exc)
        return None

    return check


def path_specs() -> tuple[OpSpec, ...]:
    """One spec per registered path, sorted by name (registration order is not the fuzzer's business)."""
    from ..paths.registry import get_path, path_names

    specs = []
    for name in sorted(path_names()):
        p = get_path(name)
        specs.append(OpSpec("path", name, tuple(path_domain(name, i) for i in p.arg_infos()), p.side,
                            getattr(p, "summary", ""), check=_check_path(name),
                            concurrent=tuple(sorted(p.concurrent_args.items()))))
    return tuple(specs)


# A path tears the function's command interface down when its call chain (the registry's kernel_functions)
# goes through one of these main.c / fw.c functions.
TEARDOWN_FUNCTIONS = ("mlx5_unload", "mlx5_try_fast_unload", "mlx5_function_teardown", "mlx5_cmd_fast_teardown_hca")


@functools.cache
def teardown_paths() -> tuple[str, ...]:
    """Sorted names of the paths that tear down (and maybe re-create) a function's command interface."""
    from ..paths.registry import get_path, path_names

    return tuple(sorted(n for n in path_names()
                        if any(f in chain for chain in get_path(n).kernel_functions for f in TEARDOWN_FUNCTIONS)))


# -- the vocabulary -------------------------------------------------------------------------------
class Vocabulary:
    """Every :class:`OpSpec`, looked up by (kind, name); names of a kind are sorted."""

    def __init__(self, specs: Iterable[OpSpec]) -> None:
        self._specs: dict[tuple[str, str], OpSpec] = {}
        for s in specs:
            if s.kind not in KINDS:
                raise ValueError(f"{s.title()}: unknown kind")
            self._specs[s.kind, s.name] = s
        self._names = {k: tuple(sorted(n for (kind, n) in self._specs if kind == k)) for k in KINDS}

    def names(self, kind: str) -> tuple[str, ...]:
        if kind not in KINDS:
            raise OpError(f"unknown kind {kind!r}; kinds: {', '.join(KINDS)}")
        return self._names[kind]

    def spec(self, kind: str, name: str = "") -> OpSpec:
        names = self.names(kind)
        found = self._specs.get((kind, name))
        if found is None:
            if kind in ("sleep", "wait"):
                raise OpError(f"{kind} has no name (got {name!r})")
            raise OpError(f"unknown {kind} {name!r}; known: {', '.join(names)}")
        return found

    def specs(self) -> tuple[OpSpec, ...]:
        return tuple(self._specs[k, n] for k in KINDS for n in self._names[k])

    def counts(self) -> dict[str, int]:
        return {k: len(self._names[k]) for k in KINDS}


def build_vocabulary() -> Vocabulary:
    reads = (OpSpec("read", k, READ_DOMAINS, "guest", h, time_arg="duration") for k, h in READ_KINDS.items())
    return Vocabulary((
        *reads,
        *path_specs(),
        *DEVICE_EVENTS,
        OpSpec("sleep", "", (SLEEP_DOMAIN,), None, "the executor waits", time_arg="seconds", positional=True,
               background_ok=False),
        OpSpec("wait", "", (), None, "wait for every operation started with &", background_ok=False),
    ))


@functools.cache
def vocabulary() -> Vocabulary:
    """The vocabulary of this process (the paths registry is read once)."""
    return build_vocabulary()


# -- checking ops -----------------------------------------------------------------------------------
class OpLike(Protocol):
    kind: str
    name: str
    args: Any
    background: bool


OpT = TypeVar("OpT", bound=OpLike)


def _pairs(args: Any) -> list[tuple[str, Any]]:
    return list(args.items()) if isinstance(args, Mapping) else list(args)


def normalize_args(spec: OpSpec, args: Any) -> tuple[tuple[str, Any], ...]:
    """``args`` typed, checked (each, then the cross-argument rule), defaults dropped, sorted by key."""
    full = spec.defaults()
    given: dict[str, Any] = {}
    for key, value in _pairs(args):
        d = spec.domain(key)
        if key in given:
            raise OpError(f"{spec.title()}: {key} given twice", key)
        try:
            given[key] = full[key] = d.coerce(value)
        except ValueError as exc:
            raise OpError(f"{spec.title()}: {exc}", key) from None
    if spec.positional and not given:
        raise OpError(f"{spec.kind} needs its {spec.domains[0].key}")
    if spec.check is not None:
        problem = spec.check(full)
        if problem:
            raise OpError(f"{spec.title()}: {problem}", next(iter(sorted(given)), None))
    keep = {k: v for k, v in given.items() if spec.positional or not _same(v, spec.domain(k).default)}
    return tuple(sorted(keep.items()))


def validate_op(op: OpT, vocab: Vocabulary | None = None) -> OpT:
    """``op`` checked against the vocabulary and normalized (a copy); :class:`OpError` says what is wrong."""
    spec = (vocab or vocabulary()).spec(op.kind, op.name)
    if op.background and not spec.background_ok:
        raise OpError(f"{spec.title()}: cannot run in the background (&)")
    args = normalize_args(spec, op.args)
    return op if args == tuple(op.args) else dataclasses.replace(op, args=args)  # type: ignore[type-var]


def full_args(op: OpLike, vocab: Vocabulary | None = None) -> dict[str, Any]:
    """Every argument of ``op`` with its value, defaults included (what the executor runs)."""
    spec = (vocab or vocabulary()).spec(op.kind, op.name)
    return {**spec.defaults(), **dict(_pairs(op.args))}


def op_seconds(op: OpLike, vocab: Vocabulary | None = None) -> float:
    """The seconds ``op`` counts toward a program's duration bound (a sleep, a reader's duration)."""
    spec = (vocab or vocabulary()).spec(op.kind, op.name)
    return float(full_args(op, vocab)[spec.time_arg]) if spec.time_arg else 0.0


def control_request(op: OpLike, vocab: Vocabulary | None = None) -> tuple[str, dict[str, Any]]:
    """A ``device`` op as its control-channel request (op name, arguments), the conventions translated."""
    if op.kind != "device":
        raise OpError(f"{op.kind} {op.name}: not a device event")
    a = full_args(op, vocab)
    req: dict[str, Any] = {}
    if "fn" in a:
        fn = a.pop("fn")
        if fn != "both":
            req["function"] = int(fn)
    if op.name == "fault":
        for key in ("opcode", "register"):
            if a[key] != ANY:
                req[key] = a[key]
        req["delay_ms"] = a["delay_ms"]
        if a["status"] != NO_STATUS:
            req["status"] = FAULT_STATUS[a["status"]]
        req.update(drop=a["drop"], hold=a["hold"])
        if a["count"]:
            req["count"] = a["count"]
        return "add_fault", req
    if op.name == "fw_dead":
        return "fw_dead", {**req, **({"seconds": a["seconds"]} if a["seconds"] else {})}
    return op.name, {**req, **a}

"""The contract of an unload/reload path: a named class with typed arguments and a ``run`` that waits.

A path is one way the real mlx5_core lets go of a function and (usually) takes it back: a driver unbind, a
PCI remove, a devlink reload, a reboot, a firmware fatal error raised by the device... Each is a class
decorated :func:`register_path` with

- ``name`` ("unbind-bind"), a one-line ``summary``, the ``trigger`` (the guest command or control-channel
  operation that starts it) and what the ``device`` sees, for ``mlx5lab paths`` and the README;
- ``Args``: a frozen dataclass of its arguments, each with a default and a help text (field metadata);
  values are checked and converted (``fn=1`` and ``fn="1"`` are the same) before anything runs;
- ``kernel_functions``: which driver functions run, as ``file: function`` chains of the 6.1 source;
- ``ends_bound``: whether mlx5_core drives every function of the card when the path has finished (the
  health check then wants every port up); ``ends_machine``: QEMU is gone afterwards (poweroff);
- ``expected_dmesg``: regexes of the error lines the path makes the driver print on purpose (a firmware
  fatal error is reported as one), and ``expected_trace``: regexes of the trace records it causes on
  purpose (as ``mlx5dev.mlx5.trace.format_record`` prints them, e.g. doorbells a reset function refuses):
  neither is a problem after that path. Guest paths have none: beyond health.py's allow-lists the lines
  they make the driver print are not errors;
- ``card_settings``: the CardConfig settings the path needs (e.g. a short command timeout); the benchmark
  boots a card with them for it;
- ``run(m, **args)``: perform the trigger and wait until the path has finished, or raise :class:`PathError`
  saying what was seen.

Guest-triggered paths live in ``guest.py``, ``ethtool.py``, ``stack.py`` and ``power.py``; device-triggered
ones (through ``m.card.control.request(op, ...)``) in ``device.py``. The runner (``runner.py``) marks the
kernel log, runs a path and checks health (``health.py``), whatever the path is.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar

from mlx5dev.card import CardConfig

from .. import Mlx5LabError

if typing.TYPE_CHECKING:
    from ..vm.machine import Machine


class PathError(Mlx5LabError):
    """A path did not finish as it should: the message says what was expected and what was seen."""


class PathArgError(Mlx5LabError):
    """Unknown path, unknown argument or a value the argument does not take."""


def arg(default: Any, help: str, choices: tuple[Any, ...] | None = None, minimum: int | None = None) -> Any:
    """A path argument: its default, a help text and (optionally) the values it takes or its minimum."""
    return field(default=default, metadata={"help": help, "choices": choices, "minimum": minimum})


@dataclass(frozen=True)
class NoArgs:
    """For a path without arguments."""


MAX_FUNCTIONS = 8  # a card has 1 to 8 functions (cli/common.py: speeds)
FN_CHOICES = (*(str(i) for i in range(MAX_FUNCTIONS)), "both")
ORDERS = ("forward", "reverse")


def fn_arg(default: str = "both", what: str = "the function") -> Any:
    return arg(default, f"{what}: a function index (0, 1, ...) or both (every function of the card)",
               FN_CHOICES)


def order_arg(what: str = "the functions are taken") -> Any:
    return arg("forward", f"in which order {what} when fn=both: forward (0, 1, ...) or reverse", ORDERS)


def count_arg(what: str = "cycles") -> Any:
    return arg(1, f"how many {what} in one run of the path", minimum=1)


def select_functions(fn: str, order: str, functions: int) -> list[int]:
    """The function indices ``fn`` names on a card of ``functions`` functions, in ``order``."""
    if fn == "both":
        chosen = list(range(functions))
    else:
        if int(fn) >= functions:
            raise PathArgError(f"fn={fn}: the card has {functions} function(s) (0..{functions - 1})")
        chosen = [int(fn)]
    return chosen[::-1] if order == "reverse" else chosen


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _coerce(path: str, name: str, kind: Any, value: Any) -> Any:
    """``value`` as the argument's type (from Python or from a ``key=value`` string)."""
    bad = PathArgError(f"{path}: {name}={value!r} is not a {getattr(kind, '__name__', kind)}")
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        raise bad
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value, 0)
            except ValueError:
                raise bad from None
        raise bad
    if kind is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise bad from None
        raise bad
    if kind is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)  # fn=1 means fn="1"
        raise bad
    raise TypeError(f"{path}: argument {name} has an unsupported type {kind!r}")


@dataclass(frozen=True)
class ArgInfo:
    """One argument as ``mlx5lab paths`` lists it."""

    name: str
    type: str
    default: Any
    help: str
    choices: tuple[Any, ...] | None
    minimum: int | None


class DriverPath:
    """Base of every path; subclasses set the class attributes and implement :meth:`perform`."""

    name: ClassVar[str]
    summary: ClassVar[str]
    trigger: ClassVar[str]
    device: ClassVar[str]
    kernel_functions: ClassVar[tuple[str, ...]]
    Args: ClassVar[type[Any]] = NoArgs
    ends_bound: ClassVar[bool] = True
    ends_machine: ClassVar[bool] = False
    side: ClassVar[str] = "guest"  # "guest": a guest command starts it; "device": the card does
    expected_dmesg: ClassVar[tuple[str, ...]] = ()  # see the module docstring
    expected_trace: ClassVar[tuple[str, ...]] = ()
    card_settings: ClassVar[dict[str, Any]] = {}
    # arguments under which the processes already running go on running while the path tears down; without
    # them the path ends every process first (a graceful reboot: init kills them before reboot(2)), so
    # nothing can race its teardown. The fuzzer's race-shaped programs draw the path with these.
    concurrent_args: ClassVar[dict[str, Any]] = {}
    # argument sets `mlx5lab bench paths` and the VM tests run by default (each a dict for ``run``)
    variants: ClassVar[tuple[dict[str, Any], ...]] = ({},)

    @classmethod
    def expected_dmesg_for(cls, args: Any) -> tuple[str, ...]:
        """``expected_dmesg`` for one set of arguments (a path whose arguments change what the driver
        reports on purpose overrides this)."""
        return cls.expected_dmesg

    @classmethod
    def expected_trace_for(cls, args: Any) -> tuple[str, ...]:
        return cls.expected_trace

    # -- arguments --------------------------------------------------------------------------------
    @classmethod
    def arg_infos(cls) -> list[ArgInfo]:
        hints = typing.get_type_hints(cls.Args)
        return [ArgInfo(f.name, getattr(hints[f.name], "__name__", str(hints[f.name])), f.default,
                        f.metadata.get("help", ""), f.metadata.get("choices"), f.metadata.get("minimum"))
                for f in dataclasses.fields(cls.Args)]

    @classmethod
    def make_args(cls, **values: Any) -> Any:
        """The checked ``Args`` for ``values``; :class:`PathArgError` names what is wrong and what is valid."""
        hints = typing.get_type_hints(cls.Args)
        fields = {f.name: f for f in dataclasses.fields(cls.Args)}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            valid = ", ".join(fields) or "none"
            raise PathArgError(f"{cls.name}: unknown argument(s) {', '.join(unknown)}; its arguments: {valid}")
        checked: dict[str, Any] = {}
        for key, value in values.items():
            v = _coerce(cls.name, key, hints[key], value)
            choices = fields[key].metadata.get("choices")
            if choices is not None and v not in choices:
                raise PathArgError(f"{cls.name}: {key}={v!r} is not one of {'|'.join(map(str, choices))}")
            minimum = fields[key].metadata.get("minimum")
            if minimum is not None and v < minimum:
                raise PathArgError(f"{cls.name}: {key}={v!r} is below its minimum {minimum}")
            checked[key] = v
        try:
            return cls.Args(**checked)
        except (ValueError, TypeError) as exc:
            raise PathArgError(f"{cls.name}: {exc}") from exc

    @classmethod
    def arg_dict(cls, args: Any) -> dict[str, Any]:
        return dataclasses.asdict(args)

    @classmethod
    def label(cls, args: Any | None = None) -> str:
        """``name`` plus the arguments that differ from their defaults: "unbind-bind fn=1"."""
        if args is None:
            return cls.name
        changed = [f"{f.name}={getattr(args, f.name)}" for f in dataclasses.fields(cls.Args)
                   if getattr(args, f.name) != f.default]
        return " ".join([cls.name, *changed])

    # -- running ------------------------------------------------------------------------------------
    def run(self, m: Machine, **args: Any) -> None:
        """Perform the path on ``m`` with ``args`` and wait until it has finished (raises PathError)."""
        self.perform(m, self.make_args(**args))

    def perform(self, m: Machine, args: Any) -> None:
        raise NotImplementedError


_PATHS: dict[str, DriverPath] = {}
_ORDER: dict[str, int] = {}  # registration order, for path_names

_REQUIRED = ("name", "summary", "trigger", "device", "kernel_functions")


def register_path(cls: type[DriverPath]) -> type[DriverPath]:
    """Class decorator: make ``cls`` available as ``get_path(cls.name)``."""
    missing = [a for a in _REQUIRED if not getattr(cls, a, None)]
    if missing:
        raise TypeError(f"{cls.__name__} lacks {', '.join(missing)}")
    if not (dataclasses.is_dataclass(cls.Args) and cls.Args.__dataclass_params__.frozen):  # type: ignore[attr-defined]
        raise TypeError(f"{cls.__name__}.Args must be a frozen dataclass")
    if cls.side not in ("guest", "device"):
        raise TypeError(f"{cls.__name__}.side must be guest or device")
    unknown = set(cls.card_settings) - {f.name for f in dataclasses.fields(CardConfig)}
    if unknown:
        raise TypeError(f"{cls.__name__}.card_settings: {', '.join(sorted(unknown))} are not CardConfig settings")
    known = _PATHS.get(cls.name)
    if known is not None and type(known).__qualname__ != cls.__qualname__:
        raise TypeError(f"path {cls.name!r} is already registered by {type(known).__name__}")
    for variant in cls.variants:
        cls.make_args(**variant)  # a broken default variant fails at import, not in a benchmark
    _PATHS[cls.name] = cls()
    _ORDER.setdefault(cls.name, len(_ORDER))
    return cls


def path_names() -> list[str]:
    """Every registered path: by module in the order of ``PATH_MODULES`` (guest paths, then device paths),
    then in registration order (others, e.g. a test's, last)."""
    from . import PATH_MODULES

    _load_builtin()

    def key(name: str) -> tuple[int, int]:
        package, _, module = type(_PATHS[name]).__module__.rpartition(".")
        ours = package == __package__ and module in PATH_MODULES
        return (PATH_MODULES.index(module) if ours else len(PATH_MODULES)), _ORDER[name]

    return sorted(_PATHS, key=key)


def get_path(name: str) -> DriverPath:
    _load_builtin()
    try:
        return _PATHS[name]
    except KeyError:
        raise PathArgError(f"unknown path {name!r}; known: {', '.join(path_names())}") from None


def parse_spec(spec: str) -> tuple[str, dict[str, str]]:
    """``"unbind-bind:fn=1,order=reverse"`` -> ``("unbind-bind", {"fn": "1", "order": "reverse"})``."""
    name, _, rest = spec.partition(":")
    args: dict[str, str] = {}
    for item in filter(None, (x.strip() for x in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise PathArgError(f"{spec!r}: arguments are key=value, comma-separated")
        args[key.strip()] = value.strip()
    get_path(name).make_args(**args)  # unknown names and bad values fail here
    return name, args


def _load_builtin() -> None:
    from . import load_paths

    load_paths()

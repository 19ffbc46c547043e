"""Fuzz programs: :class:`Op`, :class:`Program`, the text format (v1), its canonical form and the hash.

One op per line, ``KIND NAME key=value ... [&]`` (``sleep SECONDS``, ``wait``); ``#`` starts a comment
(a line, or a token starting with ``#`` to the end of the line); blank lines are ignored. :func:`parse`
checks every op against the vocabulary (:func:`.ops.validate_op`) and raises :class:`ProgramError` naming
the line and the token; :func:`format` prints the canonical text: ``# mlx5lab-program v1``, the header
comments, then one op per line with its arguments sorted by key, defaults left out, floats with at most 3
decimals. ``format(parse(text)) == text`` for canonical text, and ``parse(format(p)) == p`` for a
normalized program (every program parse, generate and mutate return).

Header comments are the ``#`` lines before the first op (the version line aside); they are kept and printed.
:func:`program_hash` is the SHA-256 of the canonical text, header comments included, so it is the name the
work folder gives the same text (``workdir.program_hash(format(p)) == program_hash(p)``); the identity of
the ops alone, whatever the comments, is ``program_hash(p.with_comments())``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .ops import OpError, Vocabulary, format_value, op_seconds, validate_op, vocabulary

FORMAT_VERSION = 1
VERSION_LINE = f"# mlx5lab-program v{FORMAT_VERSION}"
_VERSION = re.compile(r"mlx5lab-program\s+v(\S+)")


class ProgramError(ValueError):
    """A program text or op that is not valid; ``line`` (1-based) and ``token`` say where."""

    def __init__(self, message: str, line: int | None = None, token: str | None = None) -> None:
        where = f"line {line}: " if line is not None else ""
        at = f" (at {token!r})" if token is not None else ""
        super().__init__(f"{where}{message}{at}")
        self.reason = message
        self.line = line
        self.token = token


ArgPairs = tuple[tuple[str, Any], ...]


@dataclass(frozen=True)
class Op:
    """One operation. ``args`` are (key, value) pairs, sorted (a mapping is accepted and converted)."""

    kind: str
    name: str = ""
    args: ArgPairs = ()
    background: bool = False

    def __post_init__(self) -> None:
        pairs = self.args.items() if isinstance(self.args, Mapping) else self.args
        object.__setattr__(self, "args", tuple(sorted((str(k), v) for k, v in pairs)))

    def arg(self, key: str, default: Any = None) -> Any:
        """The value given to ``key`` (not its vocabulary default: see :func:`.ops.full_args`)."""
        return dict(self.args).get(key, default)

    def argmap(self) -> dict[str, Any]:
        return dict(self.args)

    def with_args(self, **changes: Any) -> Op:
        """A copy with ``changes`` applied (a value of None removes the argument: back to its default)."""
        args = {**dict(self.args), **changes}
        return Op(self.kind, self.name, tuple((k, v) for k, v in args.items() if v is not None), self.background)

    def with_background(self, background: bool) -> Op:
        return Op(self.kind, self.name, self.args, background)

    def is_control(self) -> bool:
        """``sleep`` or ``wait``: the executor's own, neither guest nor device."""
        return self.kind in ("sleep", "wait")

    def side(self, vocab: Vocabulary | None = None) -> str | None:
        """guest, device or None (sleep, wait), from the vocabulary (a path's side is its registry's)."""
        return (vocab or vocabulary()).spec(self.kind, self.name).side

    def text(self, vocab: Vocabulary | None = None) -> str:
        """The op's canonical line."""
        return format_op(self, vocab)

    def __str__(self) -> str:
        return format_op(self)


@dataclass(frozen=True)
class Program:
    """Ops in program order, plus header comments (free text: printed and hashed, but not compared)."""

    ops: tuple[Op, ...]
    comments: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ops", tuple(self.ops))
        object.__setattr__(self, "comments", tuple(self.comments))

    def __len__(self) -> int:
        return len(self.ops)

    def guest_ops(self, vocab: Vocabulary | None = None) -> tuple[Op, ...]:
        """Ops the guest performs: readers and guest-side paths."""
        return tuple(op for op in self.ops if op.side(vocab) == "guest")

    def device_ops(self, vocab: Vocabulary | None = None) -> tuple[Op, ...]:
        """Ops the card performs: device events and device-side paths."""
        return tuple(op for op in self.ops if op.side(vocab) == "device")

    def active_ops(self) -> tuple[Op, ...]:
        """Every op but sleeps and waits."""
        return tuple(op for op in self.ops if not op.is_control())

    def seconds(self, vocab: Vocabulary | None = None) -> float:
        """An upper bound of the time the program spends on its own: every sleep and every reader's
        duration, as if nothing overlapped (paths and device events are not counted)."""
        return round(sum(op_seconds(op, vocab) for op in self.ops), 3)

    def with_ops(self, ops: Iterable[Op]) -> Program:
        return Program(tuple(ops), self.comments)

    def with_comments(self, *comments: str) -> Program:
        return Program(self.ops, comments)

    def validate(self, vocab: Vocabulary | None = None) -> Program:
        """The program with every op checked and normalized; :class:`ProgramError` names the op's line."""
        return Program(tuple(_checked(op, i + 1, vocab) for i, op in enumerate(self.ops)), self.comments)

    def text(self, vocab: Vocabulary | None = None) -> str:
        return format(self, vocab)

    def hash(self) -> str:
        return program_hash(self)


def _checked(op: Op, line: int, vocab: Vocabulary | None) -> Op:
    try:
        return validate_op(op, vocab)
    except OpError as exc:
        raise ProgramError(str(exc), line, op.kind if exc.key is None else exc.key) from None


# -- printing -------------------------------------------------------------------------------------------
def format_op(op: Op, vocab: Vocabulary | None = None) -> str:
    """``KIND NAME k=v ... [&]``, arguments sorted, those at their vocabulary default left out."""
    v = vocab or vocabulary()
    try:
        spec = v.spec(op.kind, op.name)
    except OpError:
        spec = None
    words = [op.kind] + ([op.name] if op.name else [])
    for key, value in sorted(op.args):
        if spec is not None and spec.positional:
            words.append(format_value(value))
            continue
        if spec is not None and key in spec.arg_keys():
            default = spec.domain(key).default
            if type(default) is type(value) and default == value:
                continue
        words.append(f"{key}={format_value(value)}")
    if op.background:
        words.append("&")
    return " ".join(words)


def format(program: Program, vocab: Vocabulary | None = None, *, comments: bool = True) -> str:
    """The canonical text of ``program`` (``comments=False``: without its header comments)."""
    lines = [VERSION_LINE]
    if comments:
        lines += [f"# {c}".rstrip() for c in program.comments]
    lines += [format_op(op, vocab) for op in program.ops]
    return "\n".join(lines) + "\n"


def program_hash(program: Program) -> str:
    """16 hex digits of the SHA-256 of the canonical text (:func:`format`, header comments included)."""
    return hashlib.sha256(format(program).encode()).hexdigest()[:16]


# -- parsing ----------------------------------------------------------------------------------------------
def parse(text: str, vocab: Vocabulary | None = None) -> Program:
    """The program of ``text``, every op checked against the vocabulary (:class:`ProgramError` otherwise)."""
    v = vocab or vocabulary()
    ops: list[Op] = []
    comments: list[str] = []
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if stripped.startswith("#"):
            body = stripped[1:].strip()
            version = _VERSION.fullmatch(body)
            if version:
                if version.group(1) != str(FORMAT_VERSION):
                    raise ProgramError(f"unsupported program format version (this is v{FORMAT_VERSION})",
                                       number, stripped)
            elif not ops:
                comments.append(body)
            continue
        tokens = stripped.split()
        for i, t in enumerate(tokens):
            if t.startswith("#"):
                tokens = tokens[:i]
                break
        if tokens:
            ops.append(parse_line(tokens, number, v))
    return Program(tuple(ops), tuple(comments))


def parse_line(tokens: list[str], number: int, vocab: Vocabulary | None = None) -> Op:
    """One op from the tokens of line ``number``."""
    v = vocab or vocabulary()
    kind, rest = tokens[0], tokens[1:]
    background = bool(rest) and rest[-1] == "&"
    if background:
        rest = rest[:-1]
    if "&" in rest:
        raise ProgramError("& comes last on a line", number, "&")
    try:
        v.names(kind)
    except OpError as exc:
        raise ProgramError(str(exc), number, kind) from None
    if kind == "sleep":
        if len(rest) != 1:
            raise ProgramError("sleep takes one value, the seconds: sleep 0.35", number,
                               rest[1] if len(rest) > 1 else kind)
        name, words, pairs = "", {"seconds": rest[0]}, [("seconds", rest[0])]
    elif kind == "wait":
        if rest:
            raise ProgramError("wait takes no argument", number, rest[0])
        name, words, pairs = "", {}, []
    else:
        if not rest or "=" in rest[0]:
            raise ProgramError(f"{kind} needs a name; known: {', '.join(v.names(kind))}", number,
                               rest[0] if rest else kind)
        name, words, pairs = rest[0], {}, []
        try:
            v.spec(kind, name)
        except OpError as exc:
            raise ProgramError(str(exc), number, name) from None
        for token in rest[1:]:
            key, eq, value = token.partition("=")
            if not eq or not key:
                raise ProgramError("an argument is key=value", number, token)
            if key in words:
                raise ProgramError(f"{key} given twice", number, token)
            words[key] = token
            pairs.append((key, value))
    try:
        return validate_op(Op(kind, name, tuple(pairs), background), v)
    except OpError as exc:
        fallback = "&" if background else kind
        token = fallback if exc.key is None else words.get(exc.key, fallback)
        raise ProgramError(str(exc), number, token) from None


def check_program(program: Program, vocab: Vocabulary | None = None) -> Program:
    """``program`` normalized; raises :class:`ProgramError` for an invalid op or a program with no op
    other than sleep and wait (the executor would boot a guest for nothing)."""
    checked = program.validate(vocab)
    if not checked.active_ops():
        raise ProgramError("a program needs an op other than sleep and wait")
    return checked


__all__ = ["FORMAT_VERSION", "VERSION_LINE", "Op", "Program", "ProgramError", "check_program", "format",
           "format_op", "parse", "parse_line", "program_hash"]

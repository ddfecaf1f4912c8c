"""What a well-formed field is: the type and range of every value on the wire.

Theory of operation
-------------------
Every message that reaches a node, from a peer or from a client, is decoded
by ``messages.from_wire``, and every field goes through one of the checks
below on the way (G5). A value that fails its check makes the whole message
a ``DecodeError`` with a one-line reason naming the field, so a bad request
is answered ``invalid`` and never reaches the core, and nothing the core
then holds can fail to encode later: every integer fits both msgpack and
SQLite (64-bit signed), every float is finite, ids are short plain text,
nesting and list lengths are bounded.

The limits are the contract of docs/api.md ("Limits"); they are generous
for real work and small enough that no single value can cost a node much.
"""

from __future__ import annotations

import math
import re
from typing import Any

INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
UINT64_MAX = (1 << 64) - 1      # msgpack's largest integer (task arguments and results)

MAX_ID_CHARS = 200
ID_CHARS = "A-Z a-z 0-9 . _ : @ + = ~ -"
ID_PATTERN = _ID = re.compile(r"[A-Za-z0-9._:@+=~-]{1,%d}" % MAX_ID_CHARS)
MAX_TARGET_CHARS = 4096         # a built-in name, pkg.mod:fn, or a command
MAX_HOST_CHARS = 255
MAX_TEXT_CHARS = 4096           # cwd, environment values
MAX_RETRIES = 100
MAX_TIMEOUT_S = 30 * 24 * 3600.0
MAX_VALUE_DEPTH = 32            # nesting of a task's arguments (and of its returned value)
MAX_RESULT_DEPTH = MAX_VALUE_DEPTH + 8   # a result wraps the value: {"value": ...}
MAX_BODY_DEPTH = MAX_RESULT_DEPTH + 8    # a reply wraps results: {"task": {"attempts": [...]}}
MAX_ITEMS = 100_000             # any one list in a message (records, members, ids)
MAX_ARGS = 10_000               # arguments of one task
MAX_SPEC_BYTES = 1024 * 1024    # a task's target, arguments and options together, about
MAX_SUBMIT_TASKS = 10_000       # tasks in one submit
MAX_PAGE = 100_000              # tasks in one list reply (the frame limit may refuse a big page)
MAX_OFFSET = 1_000_000_000
MAX_SLOTS = 1_000_000


class DecodeError(ValueError):
    """A frame that is not a well-formed p2pq message (the message says which field, and why)."""


def ident(value: Any, what: str = "id") -> str:
    """A node, task or attempt id: 1-200 characters of letters, digits and . _ : @ + = ~ -."""
    if type(value) is str and _ID.fullmatch(value):
        return value
    raise DecodeError(f"{what} must be 1-{MAX_ID_CHARS} characters of {ID_CHARS}, got {_show(value)}")


def optional_ident(value: Any, what: str = "id") -> str:
    """An id, or "" for "none yet" (a term before any election, a submit that lets the leader choose)."""
    return value if value == "" and type(value) is str else ident(value, what)


def integer(value: Any, what: str, low: int = INT64_MIN, high: int = INT64_MAX) -> int:
    """An int (never a bool or a float) in [low, high]."""
    if type(value) is int and low <= value <= high:
        return value
    if type(value) is int:
        raise DecodeError(f"{what} must be between {low} and {high}, got {value}")
    raise DecodeError(f"{what} must be an integer, got {_show(value)}")


def number(value: Any, what: str, low: float = -math.inf, high: float = math.inf) -> float:
    """A finite int or float in [low, high], as a float."""
    if (type(value) is float or type(value) is int) and low <= value <= high and math.isfinite(value):
        return float(value)
    if type(value) is float or type(value) is int:
        raise DecodeError(f"{what} must be a finite number between {low:g} and {high:g}, got {value!r}")
    raise DecodeError(f"{what} must be a number, got {_show(value)}")


def boolean(value: Any, what: str) -> bool:
    if type(value) is bool:
        return value
    raise DecodeError(f"{what} must be true or false, got {_show(value)}")


def text(value: Any, what: str, max_chars: int = MAX_TEXT_CHARS, *, empty: bool = False) -> str:
    if type(value) is str and (empty or value) and len(value) <= max_chars:
        return value
    if type(value) is str:
        raise DecodeError(f"{what} must be 1-{max_chars} characters, got {len(value)}")
    raise DecodeError(f"{what} must be a string, got {_show(value)}")


def items(value: Any, what: str, max_items: int = MAX_ITEMS) -> list | tuple:
    """A list (msgpack's arrays) of at most max_items."""
    if (type(value) is list or type(value) is tuple) and len(value) <= max_items:
        return value
    if type(value) is list or type(value) is tuple:
        raise DecodeError(f"{what} may hold at most {max_items} items, got {len(value)}")
    raise DecodeError(f"{what} must be a list, got {_show(value)}")


def mapping(value: Any, what: str, max_items: int = MAX_ITEMS) -> dict:
    """A map with string keys."""
    if type(value) is not dict:
        raise DecodeError(f"{what} must be a map, got {_show(value)}")
    if len(value) > max_items:
        raise DecodeError(f"{what} may hold at most {max_items} entries, got {len(value)}")
    for key in value:
        if type(key) is not str:
            raise DecodeError(f"{what} must have string keys, got {_show(key)}")
    return value


def id_list(value: Any, what: str) -> tuple[str, ...]:
    out = items(value, what)
    for v in out:
        if type(v) is not str or not _ID.fullmatch(v):
            ident(v, f"each of {what}")
    return tuple(out)


def json_value(value: Any, what: str, depth: int = MAX_VALUE_DEPTH, *, finite: bool = True) -> Any:
    """A JSON value (null, true/false, a number, a string, a list, a map with string keys).

    Integers must fit msgpack (-2^63 .. 2^64-1), floats must be finite
    unless finite=False (a result may hold NaN), and nesting is at most
    `depth` containers deep. Bytes are not JSON: refused.
    """
    t = type(value)
    if t is str or t is bool or value is None:
        return value
    if t is int:
        if INT64_MIN <= value <= UINT64_MAX:
            return value
        raise DecodeError(f"{what} holds an integer beyond 64 bits ({_show(value)})")
    if t is float:
        if not finite or math.isfinite(value):
            return value
        raise DecodeError(f"{what} holds {value!r}, which is not a JSON number")
    if t is list or t is tuple or t is dict:
        if depth <= 0:
            raise DecodeError(f"{what} nests deeper than the limit")
        if t is dict:
            for key, v in value.items():
                if type(key) is not str:
                    raise DecodeError(f"{what} has a map key that is not a string ({_show(key)})")
                json_value(v, what, depth - 1, finite=finite)
        else:
            for v in value:
                json_value(v, what, depth - 1, finite=finite)
        return value
    raise DecodeError(f"{what} holds a {t.__name__}, which is not a JSON value "
                      "(null, bool, number, string, list, or map with string keys)")


def json_map(value: Any, what: str, depth: int, *, finite: bool = True) -> dict:
    """A map with string keys whose values are JSON values (json_value, with a short way for scalars)."""
    if type(value) is not dict:
        raise DecodeError(f"{what} must be a map, got {_show(value)}")
    for key, v in value.items():
        if type(key) is not str:
            raise DecodeError(f"{what} must have string keys, got {_show(key)}")
        t = type(v)
        if t is str or v is None or t is bool or (t is int and INT64_MIN <= v <= UINT64_MAX) \
                or (t is float and (not finite or v - v == 0.0)):
            continue
        json_value(v, what, depth - 1, finite=finite)
    return value


def value_depth(value: Any) -> int:
    """How many containers deep a value nests (0 for a scalar); stops counting past the limit."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, (list, tuple, dict)):
            d += 1
            if d > deepest:
                deepest = d
                if d > MAX_BODY_DEPTH:
                    return d
            stack.extend((x, d) for x in (v.values() if isinstance(v, dict) else v))
    return deepest


def _show(value: Any) -> str:
    """A short, safe rendering of a bad value for an error line."""
    kind = type(value).__name__
    if value is None or type(value) in (bool, float):
        return repr(value)
    if type(value) is int:
        return str(value) if abs(value) < 10**30 else f"an integer of {len(str(abs(value)))} digits"
    if type(value) is str:
        return repr(value) if len(value) <= 60 else f"a string of {len(value)} characters"
    return f"a {kind}"

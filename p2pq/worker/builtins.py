"""Built-in tasks, addressable by name from `p2pq submit NAME ARG...`.

Every argument may arrive as a string (the CLI cannot know types), so the
numeric tasks coerce "30" to 30 themselves and reject anything else with a
one-line message that names the task and the bad value. Tasks run inside a
worker child process, never on the node's event loop (see executor.py), so
`sleep` and `cpu_burn` may block freely.

The registry maps a name to a plain function. A worker child imports the
function by `module:qualname`, so a task registered with `register_task`
must be a module-level function of an importable module.
"""

from __future__ import annotations

import difflib
import math
import re
import time
from collections.abc import Callable
from typing import Any

__all__ = [
    "UnknownTask",
    "get_task",
    "list_tasks",
    "register_task",
    "unregister_task",
]

# Names must not contain ":" (that marks a "pkg.mod:fn" import path) and
# must not start with "-" (the CLI would read them as options).
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")

# json.dumps refuses ints above 4300 digits (sys.int_max_str_digits), and
# fibonacci(20000) has 4180, so this keeps every answer deliverable.
FIBONACCI_MAX_N = 20_000


class UnknownTask(LookupError):
    """No built-in task has this name."""

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = known
        hint = difflib.get_close_matches(name, known, n=1)
        did_you_mean = f" (did you mean {hint[0]!r}?)" if hint else ""
        super().__init__(
            f"unknown task {name!r}{did_you_mean}; known tasks: {', '.join(known)}"
        )


# --- argument coercion ------------------------------------------------------


def _as_int(task: str, arg: str, value: Any) -> int:
    """Accept an int, an integral float, or a string holding an integer."""
    if isinstance(value, bool):  # bool is an int subclass; True is not 1 here
        raise ValueError(f"{task} needs an integer {arg}, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise ValueError(f"{task} needs an integer {arg}, got {value!r}")


def _as_seconds(task: str, value: Any) -> float:
    """Accept a finite, non-negative number of seconds (or its string form)."""
    seconds: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        try:
            seconds = float(value.strip())
        except ValueError:
            pass
    if seconds is None or not math.isfinite(seconds):
        raise ValueError(f"{task} needs a number of seconds, got {value!r}")
    if seconds < 0:
        raise ValueError(f"{task} needs seconds >= 0, got {value!r}")
    return seconds


def _as_str(task: str, value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{task} needs a string, got {type(value).__name__}")
    return value


# --- the tasks ----------------------------------------------------------------


def noop() -> None:
    """Do nothing and return None (used by the throughput benchmark)."""
    return None


def echo(*args: Any) -> Any:
    """Return the arguments: the single argument itself, or a list of them."""
    return args[0] if len(args) == 1 else list(args)


def sleep(seconds: Any) -> None:
    """Sleep for the given number of seconds."""
    time.sleep(_as_seconds("sleep", seconds))


def fibonacci(n: Any) -> int:
    """Return the n-th Fibonacci number, exactly (fibonacci(0) = 0)."""
    n = _as_int("fibonacci", "n", n)
    if n < 0:
        raise ValueError(f"fibonacci needs n >= 0, got {n}")
    if n > FIBONACCI_MAX_N:
        raise ValueError(f"fibonacci needs n <= {FIBONACCI_MAX_N}, got {n}")
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


# Deterministic Miller-Rabin bases: with these, the test is exact for every
# n < 3.3e24; above that a composite passes with probability < 4**-20.
_MR_BASES = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71)


def is_prime(n: Any) -> bool:
    """Return whether n is prime (exact below 3.3e24, Miller-Rabin above)."""
    n = _as_int("is_prime", "n", n)
    if n < 2:
        return False
    for p in _MR_BASES:
        if n % p == 0:
            return n == p
    d, r = n - 1, 0
    while d % 2 == 0:
        d, r = d // 2, r + 1
    for a in _MR_BASES:
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


def reverse_string(s: Any) -> str:
    """Return the string reversed."""
    return _as_str("reverse_string", s)[::-1]


def to_uppercase(s: Any) -> str:
    """Return the string in upper case."""
    return _as_str("to_uppercase", s).upper()


def fail(message: Any = "task failed on purpose") -> None:
    """Raise RuntimeError(message), to exercise retries and error reporting."""
    raise RuntimeError(str(message))


def cpu_burn(seconds: Any) -> int:
    """Spin the CPU for the given seconds; return the loop count."""
    deadline = time.monotonic() + _as_seconds("cpu_burn", seconds)
    loops = 0
    while time.monotonic() < deadline:
        loops += 1
    return loops


# --- the registry -------------------------------------------------------------

_registry: dict[str, Callable[..., Any]] = {
    fn.__name__: fn
    for fn in (
        noop, echo, sleep, fibonacci, is_prime,
        reverse_string, to_uppercase, fail, cpu_burn,
    )
}


def register_task(name: str, fn: Callable[..., Any], *, replace: bool = False) -> None:
    """Make `fn` runnable as a built-in task called `name`."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(
            f"task name must be letters, digits, '_' or '-' "
            f"(not starting with '-' or a digit), got {name!r}"
        )
    if not callable(fn):
        raise TypeError(f"task {name!r} must be callable, got {type(fn).__name__}")
    if name in _registry and not replace:
        raise ValueError(f"task {name!r} is already registered (pass replace=True)")
    _registry[name] = fn


def unregister_task(name: str) -> None:
    """Remove a task (built-ins too), or raise UnknownTask."""
    if name not in _registry:
        raise UnknownTask(name, sorted(_registry))
    del _registry[name]


def list_tasks() -> dict[str, str]:
    """Return {name: one-line description}, sorted by name."""
    return {name: _summary(_registry[name]) for name in sorted(_registry)}


def get_task(name: str) -> Callable[..., Any]:
    """Return the task called `name`, or raise UnknownTask listing the known ones."""
    try:
        return _registry[name]
    except (KeyError, TypeError):  # TypeError: an unhashable "name"
        raise UnknownTask(str(name), sorted(_registry)) from None


def _summary(fn: Callable[..., Any]) -> str:
    doc = (fn.__doc__ or "").strip()
    return doc.splitlines()[0] if doc else ""

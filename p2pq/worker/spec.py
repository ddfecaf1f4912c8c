"""Task specs: the plain, JSON-able dicts that say what to run.

    {"kind": "builtin", "target": "fibonacci", "args": [30]}
    {"kind": "python",  "target": "pkg.mod:fn", "args": [1], "kwargs": {}}
    {"kind": "shell",   "target": "ls", "args": ["-l"], "cwd": "/tmp", "env": {}}

parse_spec() checks one and turns it into a Call (run in a worker child) or
a Shell (run as a process group). Unknown keys are ignored on purpose: a
newer node may add fields, and an older one must still run the task.
"""

from __future__ import annotations

import inspect
import math
import re
from dataclasses import dataclass
from typing import Any

from p2pq.worker.builtins import UnknownTask, get_task

__all__ = ["KINDS", "Call", "Shell", "SpecError", "check_runnable", "check_timeout", "parse_spec",
           "validate_spec"]

KINDS = ("builtin", "python", "shell")


class SpecError(ValueError):
    """The task spec is malformed (the message says how)."""


@dataclass(frozen=True, slots=True)
class Call:
    """A builtin or python task: call `target` ("module:qualname") in a child."""

    target: str
    args: tuple
    kwargs: dict
    path: str | None = None  # a directory the module is imported from (a script's own, say)


@dataclass(frozen=True, slots=True)
class Shell:
    """A shell task: argv run directly (no shell), in its own process group."""

    argv: tuple[str, ...]
    cwd: str | None
    env: dict[str, str] | None


_DOTTED = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"
_PYTHON_TARGET_RE = re.compile(rf"^{_DOTTED}:{_DOTTED}$")


def validate_spec(spec: Any) -> None:
    """Raise SpecError if `spec` is malformed. Builtin names are not checked:
    the node that runs the task may have registered more."""
    parse_spec(spec, resolve_builtins=False)


def parse_spec(spec: Any, *, resolve_builtins: bool = True) -> Call | Shell:
    """Check a spec; raise SpecError, UnknownTask, or TypeError for a
    registered task that a child process could not import."""
    if not isinstance(spec, dict):
        raise SpecError(f"a task spec must be a dict, got {type(spec).__name__}")
    kind, target = spec.get("kind"), spec.get("target")
    if kind not in KINDS:
        raise SpecError(f"'kind' must be one of {', '.join(KINDS)}, got {kind!r}")
    if not isinstance(target, str) or not target:
        raise SpecError(f"'target' must be a non-empty string, got {target!r}")
    if kind == "shell":
        return _parse_shell(target, spec)
    args, kwargs = _parse_args(spec), _parse_kwargs(spec)
    if kind == "python":
        if not _PYTHON_TARGET_RE.match(target):
            raise SpecError(f"a python target looks like 'pkg.mod:fn', got {target!r}")
        path = spec.get("path")
        if path is not None and not (isinstance(path, str) and path.startswith("/")):
            raise SpecError(f"'path' must be an absolute directory, got {path!r}")
        return Call(target, args, kwargs, path)
    if resolve_builtins:
        target = _import_path(target, get_task(target))  # UnknownTask if absent
    return Call(target, args, kwargs)


def check_runnable(kind: str, target: str, args: tuple, kwargs: dict | None = None) -> None:
    """What a node can tell of a task at submit, before any node runs it; SpecError if it can never run.

    A built-in must exist here (with a "did you mean" for a near miss) and
    accept the arguments given; a python target must look like
    pkg.module:function (whether it imports is known only where it runs).
    """
    if kind == "python" and not _PYTHON_TARGET_RE.match(target):
        raise SpecError(f"a python target looks like 'pkg.mod:fn', got {target!r}")
    if kind != "builtin":
        return
    try:
        fn = get_task(target)
    except UnknownTask as exc:
        raise SpecError(str(exc)) from None
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # a callable without a signature: only running it can tell
        return
    try:
        signature.bind(*args, **(kwargs or {}))
    except TypeError as exc:
        params = ", ".join(str(p.replace(annotation=inspect.Parameter.empty))
                           for p in signature.parameters.values())
        raise SpecError(f"task {target}({params}): {exc} ({len(args)} given)") from None


def _import_path(name: str, fn: Any) -> str:
    """Where a child process can import a registered task's function from."""
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if not module or not qualname or "<" in qualname or module == "__main__":
        raise TypeError(
            f"task {name!r} is registered as {fn!r}, which a worker process "
            f"cannot import; register a module-level function instead"
        )
    return f"{module}:{qualname}"


def _parse_args(spec: dict) -> tuple:
    args = spec.get("args")
    if args is None:
        return ()
    if not isinstance(args, (list, tuple)):
        raise SpecError(f"'args' must be a list, got {type(args).__name__}")
    return tuple(args)


def _parse_kwargs(spec: dict) -> dict:
    kwargs = spec.get("kwargs")
    if kwargs is None:
        return {}
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise SpecError("'kwargs' must be a dict with string keys")
    return kwargs


def _parse_shell(target: str, spec: dict) -> Shell:
    argv = [target]
    for arg in _parse_args(spec):
        # The CLI sends strings; numbers from the Python API are fair too.
        if isinstance(arg, bool) or not isinstance(arg, (str, int, float)):
            raise SpecError(f"shell arguments must be strings, got {arg!r}")
        argv.append(str(arg))
    cwd, env = spec.get("cwd"), spec.get("env")
    if cwd is not None and not isinstance(cwd, str):
        raise SpecError(f"'cwd' must be a string, got {type(cwd).__name__}")
    if env is not None and not (
        isinstance(env, dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())
    ):
        raise SpecError("'env' must be a dict of strings to strings")
    return Shell(tuple(argv), cwd, env or None)


def check_timeout(timeout_s: Any) -> float | None:
    """A positive float, or None for no limit (infinity counts as none)."""
    if timeout_s is None:
        return None
    if (
        isinstance(timeout_s, bool)
        or not isinstance(timeout_s, (int, float))
        or math.isnan(timeout_s)
        or timeout_s <= 0
    ):
        raise SpecError(f"timeout_s must be a positive number or None, got {timeout_s!r}")
    return None if math.isinf(timeout_s) else float(timeout_s)



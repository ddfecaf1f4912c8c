"""Task execution: built-in tasks, Python callables and shell commands,
run in worker processes so the event loop (and heartbeats) never wait.

Exports load lazily (PEP 562): every worker child imports this package on
its way to p2pq.worker._child, and must not pay for asyncio and the
executor (some 40 ms) each time a slot is replaced after a timeout.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from p2pq.worker.builtins import (
        UnknownTask,
        get_task,
        list_tasks,
        register_task,
        unregister_task,
    )
    from p2pq.worker.executor import Executor
    from p2pq.worker.outcome import STATUSES, Outcome
    from p2pq.worker.spec import KINDS, SpecError, validate_spec

_EXPORTS = {
    "UnknownTask": "builtins",
    "get_task": "builtins",
    "list_tasks": "builtins",
    "register_task": "builtins",
    "unregister_task": "builtins",
    "Executor": "executor",
    "Outcome": "outcome",
    "STATUSES": "outcome",
    "KINDS": "spec",
    "SpecError": "spec",
    "validate_spec": "spec",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)

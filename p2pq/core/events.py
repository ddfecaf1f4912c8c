"""Events (past-tense facts fed into a node) and commands (what it asks for).

The runtime and the simulator both turn the world into events and carry out
the commands; the core itself never touches a socket, a clock or a disk.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Union

from .tasks import Attempt, TaskRecord, TaskSpec
from .types import NodeId, Term

# -- events -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Started:
    """The node came up (the first event it sees)."""


@dataclass(frozen=True, slots=True)
class PeerDiscovered:
    """Discovery (mDNS, a --peer seed, a hello) saw a node."""

    node: NodeId
    priority: int
    address: tuple | None = None


@dataclass(frozen=True, slots=True)
class PeerRefused:
    """A dial to the node was refused: its machine answers, but nothing listens
    on its port (its process died). Not a proof of death: the node is judged
    silent after a shorter wait than the failure timeout (Config.refused_timeout_s)."""

    node: NodeId


@dataclass(frozen=True, slots=True)
class MessageReceived:
    sender: NodeId
    message: Any


@dataclass(frozen=True, slots=True)
class TimerFired:
    name: str


@dataclass(frozen=True, slots=True)
class ClientRequested:
    """A client asked this node something; the answer goes out as Reply(request_id)."""

    request_id: int
    request: Any


@dataclass(frozen=True, slots=True)
class TaskCompleted:
    """A task this node ran has ended (succeeded, failed, timed out or was cancelled)."""

    task_id: str
    attempt_id: str
    outcome: str
    result: dict | None
    ended_at: float


@dataclass(frozen=True, slots=True)
class ShutdownRequested:
    """The operator asked the node to leave the cluster."""


Event = Union[Started, PeerDiscovered, PeerRefused, MessageReceived, TimerFired, ClientRequested,
              TaskCompleted, ShutdownRequested]

# -- commands -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    to: NodeId
    message: Any


@dataclass(frozen=True, slots=True)
class SetTimer:
    """Fire TimerFired(name) at `at_s` (replaces a pending timer of that name)."""

    name: str
    at_s: float


@dataclass(frozen=True, slots=True)
class Reply:
    request_id: int
    body: dict


@dataclass(frozen=True, slots=True)
class RunTask:
    task_id: str
    attempt_id: str
    spec: TaskSpec


@dataclass(frozen=True, slots=True)
class StopTask:
    """Kill a running attempt (the task was cancelled)."""

    task_id: str
    attempt_id: str


@dataclass(frozen=True, slots=True)
class PersistTerm:
    """Write the highest term seen before acting on it."""

    term: Term


@dataclass(frozen=True, slots=True)
class PersistRecords:
    """Write these task records (each replaces the stored copy of its task)."""

    records: tuple[TaskRecord, ...]


@dataclass(frozen=True, slots=True)
class ForgetRecords:
    """Delete these finished tasks from the journal (pruned past their retention)."""

    task_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ForgetPeer:
    """Stop dialing `node` and drop what is queued for it: it is gone from the membership."""

    node: NodeId


@dataclass(frozen=True, slots=True)
class Note:
    """Something worth telling a human: an election, a failover, a node's death."""

    kind: str
    detail: dict


Command = Union[Send, SetTimer, Reply, RunTask, StopTask, PersistTerm, PersistRecords,
                ForgetRecords, ForgetPeer, Note]

# Every command, and the driver method that carries it out: the runtime
# (net/node.py) and the simulator (sim/world.py) each bind all of them when
# they start, so a command that a driver does not handle is an error there,
# never a command silently dropped. The durable ones come first in a step.
COMMANDS: dict[type, str] = {
    PersistTerm: "_do_persist_term", PersistRecords: "_do_persist_records",
    ForgetRecords: "_do_forget_records", Send: "_do_send", SetTimer: "_do_set_timer",
    Reply: "_do_reply", RunTask: "_do_run_task", StopTask: "_do_stop_task",
    ForgetPeer: "_do_forget_peer", Note: "_do_note",
}
DURABLE = (PersistTerm, PersistRecords, ForgetRecords)


def bind_commands(driver: object) -> dict[type, Callable[..., None]]:
    """Each command type's handler on `driver`; TypeError naming any it lacks."""
    missing = [name for name in COMMANDS.values() if not callable(getattr(driver, name, None))]
    if missing:
        raise TypeError(f"{type(driver).__name__} does not carry out {', '.join(missing)}")
    return {kind: getattr(driver, name) for kind, name in COMMANDS.items()}

__all__ = [
    "Started", "PeerDiscovered", "PeerRefused", "MessageReceived", "TimerFired", "ClientRequested",
    "TaskCompleted", "ShutdownRequested", "Event", "Send", "SetTimer", "Reply", "RunTask",
    "StopTask", "PersistTerm", "PersistRecords", "ForgetRecords", "ForgetPeer", "Note", "Command", "Attempt",
    "COMMANDS", "DURABLE", "bind_commands",
]

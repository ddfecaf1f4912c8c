"""Events (past-tense facts fed into a node) and commands (what it asks for).

The runtime and the simulator both turn the world into events and carry out
the commands; the core itself never touches a socket, a clock or a disk.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union

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

__all__ = [
    "Started", "PeerDiscovered", "PeerRefused", "MessageReceived", "TimerFired", "ClientRequested",
    "TaskCompleted", "ShutdownRequested", "Event", "Send", "SetTimer", "Reply", "RunTask",
    "StopTask", "PersistTerm", "PersistRecords", "ForgetRecords", "ForgetPeer", "Note", "Command", "Attempt",
]

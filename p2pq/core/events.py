"""Events (past-tense facts fed into a node) and commands (what it asks for).

The runtime and the simulator both turn the world into events and carry out
the commands; the core itself never touches a socket, a clock or a disk.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping, Union

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
class Push:
    """A part of the answer to request `request_id`, which stays open for more (a watch)."""

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


Durable = Union[PersistTerm, PersistRecords, ForgetRecords]
Action = Union[Send, SetTimer, Reply, Push, RunTask, StopTask, ForgetPeer, Note]
Command = Union[Durable, Action]
DURABLE: tuple[type, ...] = (PersistTerm, PersistRecords, ForgetRecords)
ACTIONS: tuple[type, ...] = (Send, SetTimer, Reply, Push, RunTask, StopTask, ForgetPeer, Note)


@dataclass(frozen=True, slots=True)
class Step:
    """What one ``handle_batch`` asks of its driver: what to make durable, then what to do.

    A driver writes ``durable`` (one journal batch) before it carries out
    anything of ``actions``: nothing is said that a crash could take back.
    Iterating a step gives every command in that order.
    """

    durable: tuple[Durable, ...] = ()
    actions: tuple[Action, ...] = ()

    def __iter__(self) -> Iterator[Command]:
        yield from self.durable
        yield from self.actions

    def __len__(self) -> int:
        return len(self.durable) + len(self.actions)


# Every command, and the driver method that carries it out. The simulator
# (sim/world.py) binds all of them; the runtime (net/node.py) binds the
# actions and hands the durable ones to its journal (net/storage.py,
# batch_of). A command that a driver does not handle is an error, never a
# command silently dropped.
COMMANDS: dict[type, str] = {
    PersistTerm: "_do_persist_term", PersistRecords: "_do_persist_records",
    ForgetRecords: "_do_forget_records", Send: "_do_send", SetTimer: "_do_set_timer",
    Reply: "_do_reply", Push: "_do_push", RunTask: "_do_run_task", StopTask: "_do_stop_task",
    ForgetPeer: "_do_forget_peer", Note: "_do_note",
}
Handlers = Mapping[type, Callable[..., None]]


def bind_commands(driver: object, kinds: Iterable[type] = tuple(COMMANDS)) -> dict[type, Callable[..., None]]:
    """The handler on `driver` of each command type of `kinds`; TypeError naming any it lacks."""
    kinds = tuple(kinds)
    missing = [COMMANDS[kind] for kind in kinds if not callable(getattr(driver, COMMANDS[kind], None))]
    if missing:
        raise TypeError(f"{type(driver).__name__} does not carry out {', '.join(missing)}")
    return {kind: getattr(driver, COMMANDS[kind]) for kind in kinds}


def carry_out(commands: Iterable[Command], handlers: Handlers, *context: Any,
              on_error: Callable[[Command, Exception], None] | None = None) -> None:
    """Carry out `commands` in order, each by its type's handler, called as ``handler(*context, command)``.

    The one loop both drivers run. A command no handler takes raises
    TypeError. With `on_error`, a command that fails is reported to it and
    the others go on (G5); without, the failure propagates.
    """
    for command in commands:
        handler = handlers.get(type(command))
        try:
            if handler is None:
                raise TypeError(f"no handler for the command {type(command).__name__}")
            handler(*context, command)
        except Exception as exc:
            if on_error is None:
                raise
            on_error(command, exc)


__all__ = [
    "Started", "PeerDiscovered", "PeerRefused", "MessageReceived", "TimerFired", "ClientRequested",
    "TaskCompleted", "ShutdownRequested", "Event", "Send", "SetTimer", "Reply", "Push", "RunTask",
    "StopTask", "PersistTerm", "PersistRecords", "ForgetRecords", "ForgetPeer", "Note", "Command", "Attempt",
    "Durable", "Action", "Step", "COMMANDS", "DURABLE", "ACTIONS", "bind_commands", "carry_out",
]

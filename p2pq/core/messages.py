"""Messages between nodes and from clients, and their wire form.

Every message is a frozen dataclass with a ``TYPE`` tag. ``to_wire`` turns
one into a plain dict (msgpack-able: str, int, float, bool, None, list,
dict) and ``from_wire`` back; an unknown type or a malformed field raises
``DecodeError`` so the transport can close the connection with a reason
(G5) instead of crashing.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Callable, ClassVar

from .tasks import Attempt, TaskRecord, TaskSpec
from .types import NodeId, Term


class DecodeError(ValueError):
    """A frame that is not a well-formed p2pq message."""


@dataclass(frozen=True, slots=True)
class Member:
    """One node as the leader sees it, gossiped in every heartbeat."""

    node: NodeId
    priority: int
    address: tuple | None
    alive: bool
    slots: int
    running: int


# -- node to node -------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Join:
    TYPE: ClassVar[str] = "join"
    priority: int
    address: tuple | None
    slots: int


@dataclass(frozen=True, slots=True)
class Gossip:
    """Peers the sender knows that the leader's heartbeat did not list."""

    TYPE: ClassVar[str] = "gossip"
    members: tuple[Member, ...]


@dataclass(frozen=True, slots=True)
class Leave:
    TYPE: ClassVar[str] = "leave"


@dataclass(frozen=True, slots=True)
class Heartbeat:
    TYPE: ClassVar[str] = "heartbeat"
    term: Term
    priority: int
    members: tuple[Member, ...]
    followers: tuple[NodeId, ...]
    want_offer: bool


@dataclass(frozen=True, slots=True)
class HeartbeatAck:
    TYPE: ClassVar[str] = "heartbeat_ack"
    term: Term
    slots: int
    busy: tuple[str, ...]  # attempt ids running here or finished but not yet acknowledged


@dataclass(frozen=True, slots=True)
class Election:
    TYPE: ClassVar[str] = "election"
    term: Term
    priority: int


@dataclass(frozen=True, slots=True)
class Answer:
    TYPE: ClassVar[str] = "answer"
    term: Term


@dataclass(frozen=True, slots=True)
class Coordinator:
    TYPE: ClassVar[str] = "coordinator"
    term: Term
    priority: int


@dataclass(frozen=True, slots=True)
class StateOffer:
    TYPE: ClassVar[str] = "state_offer"
    term: Term
    records: tuple[TaskRecord, ...]
    running: tuple[tuple[str, Attempt], ...]
    forgotten: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Reject:
    """Fencing: "your term is older than mine" (G3)."""

    TYPE: ClassVar[str] = "reject"
    term: Term


@dataclass(frozen=True, slots=True)
class Append:
    TYPE: ClassVar[str] = "append"
    term: Term
    prev_index: int
    last_index: int
    records: tuple[TaskRecord, ...]
    snapshot: bool
    forgotten: tuple[str, ...] = ()  # pruned tasks: drop them, never take them back
    sent_at: float = 0.0  # the leader's clock when sent; echoed in the ack (quorum lease)


@dataclass(frozen=True, slots=True)
class AppendAck:
    TYPE: ClassVar[str] = "append_ack"
    term: Term
    index: int
    ok: bool
    sent_at: float = 0.0  # the sent_at of the append this answers


@dataclass(frozen=True, slots=True)
class Dispatch:
    """Run `attempt_id` of this task; the record already holds the attempt."""

    TYPE: ClassVar[str] = "dispatch"
    term: Term
    record: TaskRecord
    attempt_id: str


@dataclass(frozen=True, slots=True)
class Finished:
    """A task's record with one of this node's attempts ended."""

    TYPE: ClassVar[str] = "finished"
    term: Term
    record: TaskRecord


@dataclass(frozen=True, slots=True)
class FinishedAck:
    TYPE: ClassVar[str] = "finished_ack"
    term: Term
    attempt_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CancelRun:
    TYPE: ClassVar[str] = "cancel_run"
    term: Term
    task_id: str
    attempt_id: str


@dataclass(frozen=True, slots=True)
class Forward:
    """A client request handed on to the leader by the node the client asked."""

    TYPE: ClassVar[str] = "forward"
    origin: NodeId
    request_id: int
    request: Any  # a client request message


@dataclass(frozen=True, slots=True)
class ForwardReply:
    TYPE: ClassVar[str] = "forward_reply"
    request_id: int
    body: dict


# -- client requests --------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Submit:
    """Submit tasks; a client-chosen id makes a retried submit idempotent."""

    TYPE: ClassVar[str] = "submit"
    tasks: tuple[tuple[str, TaskSpec], ...]


@dataclass(frozen=True, slots=True)
class Cancel:
    TYPE: ClassVar[str] = "cancel"
    task_id: str


@dataclass(frozen=True, slots=True)
class Query:
    """Read the leader's view: what is 'task', 'list' or 'stats'."""

    TYPE: ClassVar[str] = "query"
    what: str
    params: dict = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Wait:
    """Answer when the task reaches a terminal state."""

    TYPE: ClassVar[str] = "wait"
    task_id: str


CLIENT_REQUESTS = (Submit, Cancel, Query, Wait)

# -- wire codec -------------------------------------------------------------------


def spec_to_wire(s: TaskSpec) -> dict:
    return {"kind": s.kind, "target": s.target, "args": list(s.args), "priority": s.priority,
            "retries": s.retries, "timeout_s": s.timeout_s, "options": s.options}


def spec_from_wire(d: dict) -> TaskSpec:
    get = d.get
    return TaskSpec(d["kind"], d["target"], tuple(get("args", ())), int(get("priority", 5)),
                    int(get("retries", 0)), get("timeout_s"), dict(get("options") or {}))


def attempt_to_wire(a: Attempt) -> list:
    return [a.attempt_id, a.node, a.started_at, a.ended_at, a.outcome, a.result]


def attempt_from_wire(v: list) -> Attempt:
    attempt_id, node, started_at, ended_at, outcome, result = v
    return Attempt(attempt_id, node, started_at, ended_at, outcome, result)


def record_to_wire(r: TaskRecord) -> list:
    return [r.task_id, spec_to_wire(r.spec), list(r.seq), r.submitted_at,
            [attempt_to_wire(a) for a in r.attempts], r.cancelled]


def record_from_wire(v: list) -> TaskRecord:
    task_id, spec, seq, submitted_at, attempts, cancelled = v
    return TaskRecord(task_id, spec_from_wire(spec), (int(seq[0]), int(seq[1])), submitted_at,
                      tuple([attempt_from_wire(a) for a in attempts]), bool(cancelled))


def _member_to_wire(m: Member) -> list:
    return [m.node, m.priority, list(m.address) if m.address else None, m.alive, m.slots, m.running]


def _member_from_wire(v: list) -> Member:
    node, priority, address, alive, slots, running = v
    return Member(node, priority, tuple(address) if address else None, alive, slots, running)


_Codec = tuple[Callable[[Any], Any], Callable[[Any], Any]]
_ident: _Codec = (lambda v: v, lambda v: v)
_CODECS: dict[str, _Codec] = {
    "Term": (list, lambda v: Term(int(v[0]), str(v[1]))),
    "TaskSpec": (spec_to_wire, spec_from_wire),
    "TaskRecord": (record_to_wire, record_from_wire),
    "Attempt": (attempt_to_wire, attempt_from_wire),
    "tuple[TaskRecord, ...]": (lambda rs: [record_to_wire(r) for r in rs],
                               lambda v: tuple([record_from_wire(r) for r in v])),
    "tuple[Member, ...]": (lambda ms: [_member_to_wire(m) for m in ms],
                           lambda v: tuple(_member_from_wire(m) for m in v)),
    "tuple[tuple[str, Attempt], ...]": (lambda rs: [[t, attempt_to_wire(a)] for t, a in rs],
                                        lambda v: tuple((t, attempt_from_wire(a)) for t, a in v)),
    "tuple[tuple[str, TaskSpec], ...]": (lambda ts: [[t, spec_to_wire(s)] for t, s in ts],
                                         lambda v: tuple((t, spec_from_wire(s)) for t, s in v)),
    "tuple[NodeId, ...]": (list, tuple),
    "tuple[str, ...]": (list, tuple),
    "tuple | None": (lambda v: list(v) if v is not None else None,
                     lambda v: tuple(v) if v is not None else None),
    "Any": (lambda m: to_wire(m), lambda v: from_wire(v)),
}

MESSAGE_TYPES: dict[str, type] = {
    cls.TYPE: cls
    for cls in (Join, Gossip, Leave, Heartbeat, HeartbeatAck, Election, Answer, Coordinator, StateOffer,
                Reject, Append, AppendAck, Dispatch, Finished, FinishedAck, CancelRun, Forward,
                ForwardReply, Submit, Cancel, Query, Wait)
}
_FIELDS: dict[type, list[tuple[str, _Codec]]] = {
    cls: [(f.name, _CODECS.get(str(f.type), _ident)) for f in fields(cls)]
    for cls in MESSAGE_TYPES.values()
}


def to_wire(message: Any) -> dict:
    """The msgpack-able dict form of a message."""
    out: dict[str, Any] = {"type": message.TYPE}
    for name, (enc, _) in _FIELDS[type(message)]:
        out[name] = enc(getattr(message, name))
    return out


def from_wire(data: Any) -> Any:
    """Parse a dict back into a message; DecodeError on anything malformed."""
    if not isinstance(data, dict):
        raise DecodeError(f"expected a map, got {type(data).__name__}")
    cls = MESSAGE_TYPES.get(data.get("type"))  # type: ignore[arg-type]
    if cls is None:
        raise DecodeError(f"unknown message type {data.get('type')!r}")
    try:
        kwargs = {name: dec(data[name]) for name, (_, dec) in _FIELDS[cls] if name in data}
        return cls(**kwargs)
    except DecodeError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise DecodeError(f"malformed {cls.TYPE} message: {exc}") from None

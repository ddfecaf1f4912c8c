"""Messages between nodes and from clients, and their wire form.

Every message is a frozen dataclass with a ``TYPE`` tag. ``to_wire`` turns
one into a plain dict (msgpack-able: str, int, float, bool, None, list,
dict) and ``from_wire`` back. ``from_wire`` is the edge of the cluster
(G5): every field is checked for type and range as it is decoded (the rules
are in schema.py), so an unknown type, a missing or malformed field, an
out-of-range number or a too-deep value raises ``DecodeError`` with one line
naming the field, and is answered ``invalid``; it never reaches the core.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Callable, ClassVar

from . import schema
from .schema import DecodeError
from .tasks import DIGEST_BYTES, Attempt, TaskRecord, TaskSpec, TaskState, check_after, check_size, check_spec
from .types import NodeId, Term


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
    digests: bytes = b""  # with want_offer: the leader's table digests (TaskTable.digests)


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
    digests: bytes = b""  # the winner's table digests: an offer need carry only what differs


@dataclass(frozen=True, slots=True)
class StateOffer:
    """What a node holds, for a new leader; a big table comes in `parts` consecutive messages."""

    TYPE: ClassVar[str] = "state_offer"
    term: Term
    records: tuple[TaskRecord, ...]
    running: tuple[tuple[str, Attempt], ...]
    forgotten: tuple[str, ...] = ()
    part: int = 0
    parts: int = 1
    digests: bytes = b""  # the sender's table digests when it sent the offer (last part)
    offer_id: int = 0     # names this offer; a snapshot that trusts its digests names it back


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
    part: int = 0         # a snapshot too big for one message comes in `parts` consecutive parts
    parts: int = 1
    based_on: int = 0     # a snapshot of only what differed from the follower's offer `based_on` (0: all)


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


@dataclass(frozen=True, slots=True)
class ForwardPush:
    """A part of the answer to a forwarded request that has more to come (a watch's results)."""

    TYPE: ClassVar[str] = "forward_push"
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
    """Cancel a task; a running one is stopped too, unless `queued_only` (then it runs on)."""

    TYPE: ClassVar[str] = "cancel"
    task_id: str
    queued_only: bool = False


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


@dataclass(frozen=True, slots=True)
class Watch:
    """Push each task's view as it reaches a terminal state; the last one ends the request.

    The answer is pushed in parts (those already finished at once, the
    others as they end) and the final reply comes with the last of them.
    A leader that steps down ends the watch with an error: the client
    watches what is left again, through the next leader.
    """

    TYPE: ClassVar[str] = "watch"
    ids: tuple[str, ...]


CLIENT_REQUESTS = (Submit, Cancel, Query, Wait, Watch)

# -- wire codec -------------------------------------------------------------------
#
# Encoders turn a message's fields into plain values; decoders check each
# plain value (schema.py) and build the field. A decoder raises DecodeError
# and never anything else; from_wire adds the message type and field name.

OUTCOMES = (None, "succeeded", "failed", "timeout", "cancelled", "lost")
_ID_MATCH = schema.ID_PATTERN.fullmatch
QUERIES = ("task", "list", "stats", "peers")
_STATES = tuple(s.value for s in TaskState)


def spec_to_wire(s: TaskSpec) -> dict:
    wire = {"kind": s.kind, "target": s.target, "args": list(s.args), "priority": s.priority,
            "retries": s.retries, "timeout_s": s.timeout_s, "options": s.options}
    if s.after:
        wire["after"] = list(s.after)
    return wire


def spec_from_wire(d: Any) -> TaskSpec:
    if type(d) is not dict:
        raise DecodeError(f"a task spec must be a map, got {schema._show(d)}")
    get = d.get
    kind, target, args = get("kind"), get("target"), get("args", ())
    priority, retries, timeout_s = get("priority", 5), get("retries", 0), get("timeout_s")
    options = get("options")
    if options is None:
        options = {}
    check_spec(kind, target, args, priority, retries, timeout_s, options)
    if type(timeout_s) is int:
        timeout_s = float(timeout_s)
    after = get("after")
    after = check_after(after) if after else ()
    return TaskSpec(kind, target, tuple(args), priority, retries, timeout_s, dict(options), after)


def attempt_to_wire(a: Attempt) -> list:
    return [a.attempt_id, a.node, a.started_at, a.ended_at, a.outcome, a.result]


def attempt_from_wire(v: Any) -> Attempt:
    if type(v) is not list and type(v) is not tuple or len(v) != 6:
        raise DecodeError("an attempt must be a list of 6 fields")
    attempt_id, node, started_at, ended_at, outcome, result = v
    if type(attempt_id) is not str or not _ID_MATCH(attempt_id):
        schema.ident(attempt_id, "attempt id")
    if type(node) is not str or not _ID_MATCH(node):
        schema.ident(node, "an attempt's node")
    if type(started_at) is not float or started_at - started_at != 0.0:
        started_at = schema.number(started_at, "started_at")
    if ended_at is not None and (type(ended_at) is not float or ended_at - ended_at != 0.0):
        ended_at = schema.number(ended_at, "ended_at")
    if outcome not in OUTCOMES:
        raise DecodeError(f"outcome must be one of {', '.join(map(str, OUTCOMES))}, got {schema._show(outcome)}")
    if (ended_at is None) != (outcome is None):
        raise DecodeError("an attempt has an outcome exactly when it has ended")
    if result is not None:
        schema.json_map(result, "result", schema.MAX_RESULT_DEPTH, finite=False)
    return Attempt(attempt_id, node, started_at, ended_at, outcome, result)


def record_to_wire(r: TaskRecord) -> list:
    wire = [r.task_id, spec_to_wire(r.spec), list(r.seq), r.submitted_at,
            [attempt_to_wire(a) for a in r.attempts], r.cancelled]
    if r.released:
        wire.append(True)  # a 7th field only when set: records without dependencies stay as they were
    return wire


def record_from_wire(v: Any) -> TaskRecord:
    if type(v) is not list and type(v) is not tuple or len(v) not in (6, 7):
        raise DecodeError("a task record must be a list of 6 or 7 fields")
    task_id, spec, seq, submitted_at, attempts, cancelled = v[:6]
    released = v[6] if len(v) == 7 else False
    if type(released) is not bool:
        schema.boolean(released, "released")
    if type(task_id) is not str or not _ID_MATCH(task_id):
        schema.ident(task_id, "task id")
    try:
        decoded_spec = spec_from_wire(spec)
    except DecodeError as exc:
        raise DecodeError(f"task {task_id}: {exc}") from None
    if type(seq) is not list and type(seq) is not tuple or len(seq) != 2:
        raise DecodeError("seq must be a pair of integers")
    seq = (schema.integer(seq[0], "seq"), schema.integer(seq[1], "seq"))
    if type(submitted_at) is not float or submitted_at - submitted_at != 0.0:
        submitted_at = schema.number(submitted_at, "submitted_at")
    if type(cancelled) is not bool:
        schema.boolean(cancelled, "cancelled")
    schema.items(attempts, "attempts")
    return TaskRecord(task_id, decoded_spec, seq, submitted_at,
                      tuple([attempt_from_wire(a) for a in attempts]), cancelled, released)


def _member_to_wire(m: Member) -> list:
    return [m.node, m.priority, list(m.address) if m.address else None, m.alive, m.slots, m.running]


def _member_from_wire(v: Any) -> Member:
    if type(v) is not list and type(v) is not tuple or len(v) != 6:
        raise DecodeError("a member must be a list of 6 fields")
    node, priority, address, alive, slots, running = v
    return Member(schema.ident(node, "node"), schema.integer(priority, "priority"), _address(address),
                  schema.boolean(alive, "alive"), _slots(slots),
                  schema.integer(running, "running", 0))


def _address(v: Any) -> tuple | None:
    if v is None:
        return None
    if type(v) is not list and type(v) is not tuple or len(v) != 2:
        raise DecodeError("an address must be [host, port]")
    return (schema.text(v[0], "host", schema.MAX_HOST_CHARS), schema.integer(v[1], "port", 0, 65535))


def _slots(v: Any) -> int:
    return schema.integer(v, "slots", 0, schema.MAX_SLOTS)


def _term(v: Any) -> Term:
    if type(v) is not list and type(v) is not tuple or len(v) != 2:
        raise DecodeError("a term must be [number, node]")
    return Term(schema.integer(v[0], "term number", 0), schema.optional_ident(v[1], "term node"))


def _records(v: Any) -> tuple[TaskRecord, ...]:
    return tuple([record_from_wire(r) for r in schema.items(v, "records")])


def _members(v: Any) -> tuple[Member, ...]:
    return tuple([_member_from_wire(m) for m in schema.items(v, "members")])


def _running(v: Any) -> tuple[tuple[str, Attempt], ...]:
    out = []
    for pair in schema.items(v, "running"):
        if type(pair) is not list and type(pair) is not tuple or len(pair) != 2:
            raise DecodeError("running entries must be [task id, attempt]")
        out.append((schema.ident(pair[0], "task id"), attempt_from_wire(pair[1])))
    return tuple(out)


def _submitted(v: Any) -> tuple[tuple[str, TaskSpec], ...]:
    tasks = schema.items(v, "tasks", schema.MAX_SUBMIT_TASKS)
    if not tasks:
        raise DecodeError("a submit needs at least one task")
    out = []
    for i, pair in enumerate(tasks):
        if type(pair) is not list and type(pair) is not tuple or len(pair) != 2:
            raise DecodeError(f"task {i} must be [id, spec]")
        try:
            spec = spec_from_wire(pair[1])
            check_size(spec)
            out.append((schema.optional_ident(pair[0], "task id"), spec))
        except DecodeError as exc:
            raise DecodeError(f"task {i}: {exc}" if len(tasks) > 1 else str(exc)) from None
    return tuple(out)


def _query_params(v: Any) -> dict:
    """A query's parameters, checked; the known ones only (the what is checked by Query)."""
    params = schema.mapping(v, "params", 16)
    out: dict[str, Any] = {}
    if "id" in params:
        out["id"] = schema.ident(params["id"], "id")
    if params.get("state") is not None:
        if params["state"] not in _STATES:
            raise DecodeError(f"state must be one of {', '.join(_STATES)}, got {schema._show(params['state'])}")
        out["state"] = params["state"]
    if params.get("offset") is not None:
        out["offset"] = schema.integer(params["offset"], "offset", 0, schema.MAX_OFFSET)
    if params.get("limit") is not None:
        out["limit"] = schema.integer(params["limit"], "limit", 1, schema.MAX_PAGE)
    return out


def _body(v: Any) -> dict:
    schema.mapping(v, "body")
    schema.json_value(v, "body", schema.MAX_BODY_DEPTH, finite=False)
    return v


def _client_request(v: Any) -> Any:
    """A client request inside a Forward: never another Forward (no nesting at all)."""
    return decode_client_request(v)


def _ident_field(what: str) -> Callable[[Any], str]:
    return lambda v: schema.ident(v, what)


def _int_field(what: str, low: int = schema.INT64_MIN, high: int = schema.INT64_MAX) -> Callable[[Any], int]:
    return lambda v: schema.integer(v, what, low, high)


def _ids_field(what: str) -> Callable[[Any], tuple[str, ...]]:
    return lambda v: schema.id_list(v, what)


_Codec = tuple[Callable[[Any], Any], Callable[[Any], Any]]
_list_of = lambda enc: lambda xs: [enc(x) for x in xs]  # noqa: E731
# Encoders and decoders by field annotation; _FIELD_CODECS below overrides by field.
_same = lambda v: v  # noqa: E731
_CODECS: dict[str, _Codec] = {
    "Term": (list, _term),
    "TaskRecord": (record_to_wire, record_from_wire),
    "tuple[TaskRecord, ...]": (_list_of(record_to_wire), _records),
    "tuple[Member, ...]": (_list_of(_member_to_wire), _members),
    "tuple[tuple[str, Attempt], ...]": (lambda rs: [[t, attempt_to_wire(a)] for t, a in rs], _running),
    "tuple[tuple[str, TaskSpec], ...]": (lambda ts: [[t, spec_to_wire(s)] for t, s in ts], _submitted),
    "tuple[NodeId, ...]": (list, _ids_field("node ids")),
    "tuple[str, ...]": (list, _ids_field("ids")),
    "tuple | None": (lambda v: list(v) if v is not None else None, _address),
    "Any": (lambda m: to_wire(m), _client_request),
    "dict": (_same, _body),
    "bytes": (_same, lambda v: _digests(v)),
}
# Plain fields, checked under their own names.
_PLAIN: dict[str, Callable[[str], Callable[[Any], Any]]] = {
    "NodeId": _ident_field, "str": _ident_field, "int": _int_field,
    "bool": lambda name: lambda v: schema.boolean(v, name),
    "float": lambda name: lambda v: schema.number(v, name),
}
_FIELD_CODECS: dict[tuple[str, str], _Codec] = {
    ("join", "slots"): (_same, _slots),
    ("heartbeat_ack", "slots"): (_same, _slots),
    ("append", "prev_index"): (_same, _int_field("prev_index", -1)),
    ("append", "last_index"): (_same, _int_field("last_index", 0)),
    ("append_ack", "index"): (_same, _int_field("index", -1)),
    ("append", "part"): (_same, _int_field("part", 0, schema.MAX_ITEMS)),
    ("append", "parts"): (_same, _int_field("parts", 1, schema.MAX_ITEMS)),
    ("state_offer", "part"): (_same, _int_field("part", 0, schema.MAX_ITEMS)),
    ("state_offer", "parts"): (_same, _int_field("parts", 1, schema.MAX_ITEMS)),
    ("state_offer", "offer_id"): (_same, _int_field("offer_id", 0)),
    ("append", "based_on"): (_same, _int_field("based_on", 0)),
    ("query", "what"): (_same, lambda v: _what(v)),
    ("watch", "ids"): (list, lambda v: _watched(v)),
    ("query", "params"): (_same, _query_params),
}


def _digests(v: Any) -> bytes:
    if type(v) is not bytes or len(v) not in (0, DIGEST_BYTES):
        raise DecodeError(f"digests must be empty or {DIGEST_BYTES} bytes, got {schema._show(v)}")
    return v


def _watched(v: Any) -> tuple[str, ...]:
    if (type(v) is list or type(v) is tuple) and len(v) > schema.MAX_SUBMIT_TASKS:
        raise DecodeError(f"ids: at most {schema.MAX_SUBMIT_TASKS:,} tasks in one watch, got {len(v):,}")
    return schema.id_list(v, "ids")


def _what(v: Any) -> str:
    if v in QUERIES and type(v) is str:
        return v
    raise DecodeError(f"unknown query {schema._show(v)}; expected one of {', '.join(QUERIES)}")


MESSAGE_TYPES: dict[str, type] = {
    cls.TYPE: cls
    for cls in (Join, Gossip, Leave, Heartbeat, HeartbeatAck, Election, Answer, Coordinator, StateOffer,
                Reject, Append, AppendAck, Dispatch, Finished, FinishedAck, CancelRun, Forward,
                ForwardReply, ForwardPush, Submit, Cancel, Query, Wait, Watch)
}
_CLIENT_TYPES = frozenset(cls.TYPE for cls in CLIENT_REQUESTS)


def _field_codecs(cls: type) -> list[tuple[str, _Codec, bool]]:
    out = []
    for f in fields(cls):
        annotation = str(f.type)
        codec = _FIELD_CODECS.get((cls.TYPE, f.name))
        if codec is None:
            codec = (_same, _PLAIN[annotation](f.name)) if annotation in _PLAIN else _CODECS[annotation]
        required = f.default is MISSING and f.default_factory is MISSING  # type: ignore[misc]
        out.append((f.name, codec, required))
    return out


_FIELDS: dict[type, list[tuple[str, _Codec, bool]]] = {cls: _field_codecs(cls) for cls in MESSAGE_TYPES.values()}


def to_wire(message: Any) -> dict:
    """The msgpack-able dict form of a message."""
    out: dict[str, Any] = {"type": message.TYPE}
    for name, (enc, _), _ in _FIELDS[type(message)]:
        out[name] = enc(getattr(message, name))
    return out


def from_wire(data: Any) -> Any:
    """Parse and check a dict into a message; DecodeError (one line) on anything malformed.

    Unknown fields are ignored (a newer node may add some); a missing field
    takes its default, or is an error if it has none.
    """
    if type(data) is not dict:
        raise DecodeError(f"expected a map, got {schema._show(data)}")
    kind = data.get("type")
    cls = MESSAGE_TYPES.get(kind) if type(kind) is str else None
    if cls is None:
        raise DecodeError(f"unknown message type {schema._show(kind)}")
    kwargs = {}
    for name, (_, dec), required in _FIELDS[cls]:
        if name in data:
            try:
                kwargs[name] = dec(data[name])
            except DecodeError as exc:
                raise DecodeError(f"{kind}: {exc}") from None
            except Exception as exc:  # a decoder must raise only DecodeError; this is its safety net
                raise DecodeError(f"{kind}: {name}: malformed ({type(exc).__name__})") from None
        elif required:
            raise DecodeError(f"{kind}: missing field {name!r}")
    message = cls(**kwargs)
    if cls is Query and message.what == "task" and "id" not in message.params:
        raise DecodeError("query: a task query needs params.id")
    if (cls is Append or cls is StateOffer) and message.part >= message.parts:
        raise DecodeError(f"{kind}: part {message.part} of {message.parts}")
    return message


def decode_client_request(data: Any) -> Any:
    """A client request (submit, cancel, query, wait, watch) from the wire; DecodeError for anything else."""
    if type(data) is dict and data.get("type") not in _CLIENT_TYPES:
        raise DecodeError(f"{schema._show(data.get('type'))} is not a client request "
                          f"(expected one of {', '.join(sorted(_CLIENT_TYPES))})")
    return from_wire(data)

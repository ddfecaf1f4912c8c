"""Client requests: served by the leader, handed on by everyone else.

Every node takes requests (``p2pq submit`` may reach any of them). The
leader serves them: a submit or a cancel is answered once it is committed
(G1), a wait once its task ends. Another node forwards them to its leader
and carries the answer back; a node that cannot reach its leader but
knows who answered its election relays through that node (a bridge). A
node with nobody to ask answers at once, with an error the client retries
(``core/errors.py``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from . import dependencies, scheduler
from .errors import ErrorCode, error, submit_ack
from .messages import Cancel, Forward, ForwardPush, ForwardReply, Query, Submit, Wait, Watch
from .state import NodeState, push_parts
from .tasks import TaskRecord, TaskSpec, TaskState, describe, describe_end
from .types import NodeId, Role


def fail_forwarded(core: NodeState, code: ErrorCode, to: NodeId | None = None) -> None:
    """Answer the requests we handed to `to` (to anyone: None) with an error to retry."""
    for request_id, target in list(core.forwarded.items()):
        if to is None or target == to:
            del core.forwarded[request_id]
            _answer(core, request_id, error(code, "the leader changed while handling the request; retry"))


def _answer(core: NodeState, request_id: int, body: dict, final: bool = True) -> None:
    """The reply to a request we forwarded: to our client, or back to the node we relay for.
    A part of it with more to come (`final` False, a watch's results) keeps the relay open."""
    origin = core.relays.pop(request_id, None) if final else core.relays.get(request_id)
    core.reply(origin if origin is not None else (core.id, request_id), body, final)


def _hand_on(core: NodeState, to: NodeId, target: tuple[NodeId, int], request: Any) -> None:
    """Forward a request to `to`; one from another node is relayed under an id of ours,
    so the answer comes back through us (the asker may not reach `to`)."""
    request_id = target[1]
    if target[0] != core.id:
        core.relay_counter -= 1
        request_id = core.relay_counter
        core.relays[request_id] = target
    core.forwarded[request_id] = to
    core.send(to, Forward(core.id, request_id, request))


def on_client_request(core: NodeState, target: tuple[NodeId, int], request: Any) -> None:
    if isinstance(request, Query) and request.what == "peers":
        core.reply(target, {"ok": True, **core.view()})
    elif core.role is Role.LEADER:
        _serve(core, target, request)
    elif core.leader not in (None, core.id) and core.leader_alive():
        # A request another node forwarded to us (it cannot reach the leader, or took us
        # for the leader) is relayed too: a bridge node carries its side's requests.
        _hand_on(core, core.leader, target, request)
    elif (target[0] == core.id and core.role in (Role.ELECTING, Role.WAITING)
          and core.answered_by in core.peers and core.peers[core.answered_by].alive):
        # A higher node answered our election but no COORDINATOR reaches us: it has a
        # leader we cannot hear (a bridge). It relays our clients' requests meanwhile.
        _hand_on(core, core.answered_by, target, request)
    elif core.config.quorum and not core.has_quorum():
        live = 1 + sum(1 for p in core.peers.values() if p.alive)
        core.reply(target, error(ErrorCode.NO_QUORUM, f"no quorum: this node sees {live} of "
                                 f"{core.config.quorum} nodes"))
    else:
        core.reply(target, error(ErrorCode.NO_LEADER, "no leader yet (an election is in progress); "
                                 "retry shortly"))


def _serve(core: NodeState, target: tuple[NodeId, int], request: Any) -> None:
    match request:
        case Submit(tasks):
            _submit(core, target, tasks)
        case Cancel(task_id, queued_only):
            _cancel(core, target, task_id, queued_only)
        case Wait(task_id):
            _wait(core, target, task_id)
        case Watch(ids):
            _watch(core, target, ids)
        case Query(what, params):
            core.reply(target, _query(core, what, params))
        case _:
            core.reply(target, error(ErrorCode.INVALID, f"unknown request {type(request).__name__}"))


def _submit(core: NodeState, target: tuple[NodeId, int], tasks: tuple) -> None:
    if core.config.quorum and not core.has_quorum():
        core.reply(target, error(ErrorCode.NO_QUORUM, "no quorum: the leader cannot reach a majority"))
        return
    if not core.lead.followers and not core.may_ack_unreplicated():
        core.reply(target, error(ErrorCode.UNREPLICATED, "no other node is reachable to hold a copy "
                                 "of the task (G1); retry when another node is up"))
        return
    try:
        for _, spec in tasks:
            spec.validate()
    except ValueError as exc:
        core.reply(target, error(ErrorCode.INVALID, str(exc)))
        return
    if any(spec.after for _, spec in tasks):
        why = dependencies.refusal(core.table, core.forgotten, tasks)
        if why is not None:
            core.reply(target, error(ErrorCode.INVALID, why))
            return
    chosen: dict[str, TaskSpec] = {}
    for task_id, spec in tasks:
        if not task_id:
            continue  # the leader chooses the id
        held = core.table.get(task_id)
        earlier = held.spec if held is not None else chosen.setdefault(task_id, spec)
        if earlier != spec:
            # A retried submit must carry the same task; a reused id for another one is refused.
            core.reply(target, error(ErrorCode.CONFLICT, f"task {task_id} already exists with a different "
                                     "spec; choose another id"))
            return
    ids = []
    for task_id, spec in tasks:
        task_id = task_id or f"{core.rng.getrandbits(64):016x}"
        if task_id not in core.table and task_id not in core.forgotten:
            core.submit_counter += 1
            seq = (core.term.number, core.submit_counter)
            core.merge(TaskRecord(task_id, spec, seq, core.now))
        ids.append(task_id)
    core.lead.await_commit("reply", target, submit_ack(ids, bool(core.lead.followers), core.id, str(core.term)))


def _cancel(core: NodeState, target: tuple[NodeId, int], task_id: str, queued_only: bool = False) -> None:
    record = core.table.get(task_id)
    if record is None:
        core.reply(target, _unknown(core, task_id))
        return
    if queued_only and record.state not in (TaskState.QUEUED, TaskState.BLOCKED):
        core.reply(target, {"ok": True, "id": task_id, "state": record.state.value})  # it runs on
        return
    if not record.state.terminal:
        record = core.merge(replace(record, cancelled=True)) or record
        scheduler.cancel_attempts(core, record)
    core.lead.await_commit("reply", target, {"ok": True, "id": task_id, "state": record.state.value})


def _wait(core: NodeState, target: tuple[NodeId, int], task_id: str) -> None:
    record = core.table.get(task_id)
    if record is None:
        core.reply(target, _unknown(core, task_id))
    elif record.state.terminal:
        core.reply(target, {"ok": True, "task": describe(record)})
    else:
        core.lead.waiters.setdefault(task_id, []).append(target)


def _watch(core: NodeState, target: tuple[NodeId, int], ids: tuple[str, ...]) -> None:
    """Push the views of the tasks already finished (in parts of about WATCH_PUSH_BYTES), then each
    of the others as it ends; the reply that carries the last one ends the watch."""
    lead, table = core.lead, core.table
    if target in lead.watches:  # the same request id twice: a confused client, told so
        core.reply(target, error(ErrorCode.INVALID, "this request id already watches tasks"))
        return
    unknown = [task_id for task_id in ids if task_id not in table]
    pending = {task_id for task_id in ids if task_id in table and not table.get(task_id).state.terminal}
    ended = [describe_end(table.get(task_id)) for task_id in dict.fromkeys(ids)
             if task_id in table and table.get(task_id).state.terminal]
    parts = list(push_parts(ended)) or [[]]
    for part in parts[:-1]:
        core.push(target, {"ok": True, "tasks": part})
    last = {"ok": True, "tasks": parts[-1]}
    if unknown:
        last["unknown"] = unknown
    if not pending:
        core.reply(target, last)
        return
    if last["tasks"] or unknown:
        core.push(target, last)
    lead.watches[target] = pending
    for task_id in pending:
        lead.waiters.setdefault(task_id, []).append(target)


def _query(core: NodeState, what: str, params: dict) -> dict:
    if what == "task":
        record = core.table.get(str(params.get("id")))
        if record is None:
            return _unknown(core, str(params.get("id")))
        return {"ok": True, "task": describe(record)}
    if what == "list":
        return {"ok": True, **_list(core, params)}
    if what == "stats":
        return {"ok": True, **core.stats()}
    return error(ErrorCode.INVALID, f"unknown query {what!r}")


def _unknown(core: NodeState, task_id: str) -> dict:
    if task_id in core.forgotten:
        return error(ErrorCode.UNKNOWN_TASK, f"task {task_id} finished and was pruned (retention: "
                     f"{core.config.retain_finished} tasks or {core.config.retain_finished_s:g} s)")
    return error(ErrorCode.UNKNOWN_TASK, f"no task with id {task_id}")


def _list(core: NodeState, params: dict) -> dict:
    state = params.get("state")
    records = [r for r in core.table.values() if state is None or r.state.value == state]
    records.sort(key=lambda r: r.seq, reverse=True)
    offset, limit = params.get("offset", 0), params.get("limit", 50)
    return {"total": len(records), "tasks": [describe(r) for r in records[offset:offset + limit]]}


def on_forward(core: NodeState, sender: NodeId, msg: Forward) -> None:
    """A request another node took from its client (or relays): served or handed on in turn."""
    on_client_request(core, (msg.origin, msg.request_id), msg.request)


def on_forward_reply(core: NodeState, sender: NodeId, msg: ForwardReply) -> None:
    """The answer to a request we handed on: to its client, or on back towards it."""
    if core.forwarded.pop(msg.request_id, None) is not None:
        _answer(core, msg.request_id, msg.body)


def on_forward_push(core: NodeState, sender: NodeId, msg: ForwardPush) -> None:
    """A part of the answer to a request we handed on; the request stays forwarded."""
    if msg.request_id in core.forwarded:
        _answer(core, msg.request_id, msg.body, final=False)

"""Replicating the task table from the leader to its followers.

Theory of operation
-------------------
The leader numbers every change of its task table: entry ``i`` of its log
names the task that changed. It streams the changed tasks' *current* records
to each follower in ``Append`` messages, pipelined (it does not wait for an
ack before sending more). Records join as a lattice (see ``tasks.py``), so
shipping the latest record instead of the historical one, twice, or out of
order is harmless.

- Followers are the ``replicas`` highest-ranked live nodes other than the
  leader, so that the next bully winner is the node holding the copy. In
  quorum mode every live node follows.
- A follower applies an ``Append`` only if it continues what it has
  (``prev_index`` equals its applied index) and acknowledges its applied
  index; after a gap it acknowledges ``ok=False`` and the leader goes back to
  what was acknowledged. A new follower, or one that fell behind the trimmed
  log, first gets a snapshot: every record the leader holds.
- The commit index is the highest index every follower acknowledged
  (available mode) or that a majority of the cluster holds (quorum mode).
  In quorum mode acknowledgments are also leased: only acks of appends sent
  within the last half failure timeout count, and a new leader acknowledges
  nothing until one failure timeout after it started serving, so an old
  leader's last acknowledgment and a new leader's first never overlap, even
  when the new leader's clock runs up to twice as fast as the old one's (a
  node that already accepted the new term may have acked the old leader just
  before; each side measures its own wait on its own clock).
  A submit is answered only once its entry is committed (G1): a task
  acknowledged to a client is held by the leader and by its followers.
- A leader with no follower (every other node is dead) answers submits with
  an error instead of acknowledging a copy nobody else holds; only a node
  that has never known a peer, or one run with ``replicas=0``, acknowledges
  unreplicated, and says so.
- Messages are lost, so anything unacknowledged after a heartbeat interval is
  sent again from the acknowledged index.
- No message grows with the table: an ``Append`` carries at most
  ``max_batch`` records and about ``max_chunk_bytes`` (records' estimated
  size), a tail is cut into consecutive log ranges to keep to that, and a
  snapshot goes in consecutive *parts*. A follower applies a snapshot only
  once it has every part in order; a missing part makes it answer
  ``ok=False`` (once), and the leader sends the snapshot again.
"""

from __future__ import annotations

from . import compaction
from .leader import FollowerProgress, PendingAck
from .messages import Append, AppendAck, FinishedAck, Heartbeat, Member
from .state import NodeState
from .tasks import next_part, stream_chunks
from .types import NodeId, Role


# -- leader: the log ---------------------------------------------------------
def choose_followers(core: NodeState) -> None:
    """The highest-ranked live peers hold the copy (next bully winners)."""
    live = sorted((p for p in core.peers.values() if p.alive), key=lambda p: p.rank, reverse=True)
    want = len(live) if core.config.quorum else core.config.replicas
    chosen = [p.node for p in live[:want]]
    followers = core.lead.followers
    for node in list(followers):
        if node not in chosen:
            del followers[node]
    for node in chosen:
        if node not in followers:
            followers[node] = FollowerProgress(chosen_at=core.now)
    advance_commit(core)


def replicate(core: NodeState) -> None:
    """Ship every follower what it has not been sent yet."""
    lead = core.lead
    for node, progress in lead.followers.items():
        if progress.needs_snapshot:
            if (node not in lead.peer_offers and node not in lead.offers_from
                    and core.now - progress.chosen_at < core.config.failure_timeout_s):
                continue  # its offer (and digests) is on the way: then it gets only what differs
            _send_snapshot(core, node, progress)
        elif progress.sent < lead.last_index:
            _send_tail(core, node, progress)


def _send_snapshot(core: NodeState, node: NodeId, progress: FollowerProgress) -> None:
    """Every record, or, given the follower's offer, the records of buckets that differ.

    The follower applies a snapshot based on an offer only if it sent
    that offer since it started (a restart may have lost what the offer
    described); otherwise it refuses, and gets everything.
    """
    index = core.lead.last_index
    offer_id, theirs = core.lead.peer_offers.get(node, (0, b""))
    records = list(core.table.values_unlike(theirs))
    term, based_on, forgotten = core.term, offer_id if theirs else 0, tuple(core.forgotten)

    def parts():  # cut as they go (_send_parts): `parts` is part + 1 on the last one, more before
        for n, chunk, last in stream_chunks(records, core.config.max_batch, core.config.max_chunk_bytes):
            yield Append(term, 0, index, tuple(chunk), snapshot=True, forgotten=forgotten if last else (),
                         sent_at=core.now, part=n, parts=n + 1 if last else n + 2, based_on=based_on)
    core.send_parts(node, "snapshot", parts())
    progress.needs_snapshot = False
    progress.snapshot_based_on = based_on
    progress.snapshot_parts = max(1, -(-len(records) // core.config.max_batch))
    progress.snapshot_index = index
    progress.sent = index
    progress.sent_at = core.now


def _send_tail(core: NodeState, node: NodeId, progress: FollowerProgress) -> None:
    # Chunks cover consecutive log ranges, so a lost chunk shows up as a
    # gap at the follower instead of being skipped over; a range ends
    # early where its records reach the byte cap.
    lead = core.lead
    batch, cap, base, last = core.config.max_batch, core.config.max_chunk_bytes, lead.log_base, lead.last_index
    records, log = core.table.records, lead.log
    start, ids, size = progress.sent, {}, 0
    for pos in range(progress.sent, last):
        task_id = log[pos - base]
        if task_id in ids:
            continue
        record = records.get(task_id)
        n = record.approx_bytes if record is not None else 16
        if ids and (len(ids) >= batch or size + n > cap):
            _send_range(core, node, start, pos, ids)
            start, ids, size = pos, {}, 0
        ids[task_id] = None
        size += n
    if ids or start < last:
        _send_range(core, node, start, last, ids)
    progress.sent = last
    progress.sent_at = core.now


def _send_range(core: NodeState, node: NodeId, prev: int, last: int, ids: dict[str, None]) -> None:
    table = core.table.records
    records = tuple(table[t] for t in ids if t in table)
    gone = tuple(t for t in ids if t not in table)
    core.send(node, Append(core.term, prev, last, records, snapshot=False, forgotten=gone,
                           sent_at=core.now))


def resend_stalled(core: NodeState) -> None:
    """Go back to what a follower acknowledged when its acks stopped coming."""
    for node, progress in core.lead.followers.items():
        # A snapshot in many parts takes its follower a while to merge: wait
        # a failure timeout per part before sending it all over again.
        wait_s = max(2 * core.config.heartbeat_interval_s,
                     progress.snapshot_parts * core.config.failure_timeout_s)
        if progress.acked < progress.sent and core.now - progress.sent_at >= wait_s:
            _rewind(core, node, progress, progress.acked, refused=False)


def _rewind(core: NodeState, node: NodeId, progress: FollowerProgress, index: int, refused: bool = True) -> None:
    lead = core.lead
    if index < 0 or index < progress.snapshot_index or index < lead.log_base:
        progress.needs_snapshot = True
        # Perhaps a sparse snapshot it could not trust: the next one is whole, unless
        # a newer offer came meanwhile (a restarted follower offers again at once).
        offer = lead.peer_offers.get(node)
        if refused and offer is not None and offer[0] == progress.snapshot_based_on:
            del lead.peer_offers[node]
    else:
        progress.sent = index


def on_append_ack(core: NodeState, sender: NodeId, msg: AppendAck) -> None:
    if msg.term != core.term:
        return
    progress = core.lead.followers.get(sender)
    if progress is None:
        return
    if msg.ok:
        progress.acked = max(progress.acked, msg.index)
        if progress.acked >= progress.snapshot_index:
            progress.snapshot_parts = 0
        progress.fresh_at = max(progress.fresh_at, msg.sent_at)
    else:
        _rewind(core, sender, progress, msg.index)
    advance_commit(core)


# -- leader: commit ------------------------------------------------------------
def _commit_index(core: NodeState) -> int:
    lead = core.lead
    acks = [p.acked for p in lead.followers.values()]
    if core.config.quorum:
        need = core.config.majority - 1  # the leader holds everything it logged
        if need <= 0:
            return lead.last_index
        # The lease (G3): only acks of appends sent within half a failure
        # timeout count. A leader that was paused and wakes up to a backlog
        # of old acks cannot commit with them: by now another leader may
        # serve. Half: the next leader waits a whole one on its own clock,
        # which may run faster than ours.
        lease_from = core.now - core.config.failure_timeout_s / 2
        acks = [p.acked for p in lead.followers.values() if p.fresh_at >= lease_from]
        return sorted(acks, reverse=True)[need - 1] if len(acks) >= need else lead.commit
    if acks:
        return min(acks)
    return lead.last_index if core.may_ack_unreplicated() else lead.commit


def advance_commit(core: NodeState) -> None:
    if core.role is not Role.LEADER:
        return
    lead = core.lead
    if core.now < lead.serve_from:
        return  # quorum mode: the previous leader's lease may not have run out yet
    lead.commit = max(lead.commit, _commit_index(core))
    for item in lead.take_committed():
        _complete(core, item)
    lead.trim_log()


def _complete(core: NodeState, item: PendingAck) -> None:
    if item.kind == "reply":
        core.reply(item.target, item.body or {"ok": True})
    elif item.kind == "finished":
        node, attempt_id = item.target
        if node == core.id:
            core.unacked.pop(attempt_id, None)
        else:
            core.send(node, FinishedAck(core.term, (attempt_id,)))


# -- leader: heartbeats ------------------------------------------------------------
def heartbeat(core: NodeState) -> None:
    """Every tick: the leader is alive, here is the membership, and who has not offered yet."""
    lead = core.lead
    members = [Member(core.id, core.priority, core.address, True, core.config.slots, lead.holding(core.id))]
    members += [Member(p.node, p.priority, p.address, p.alive, p.slots, lead.holding(p.node))
                for p in core.peers.values()]
    members_t, followers = tuple(members), tuple(lead.followers)
    digests = None
    for peer in core.peers.values():
        want = peer.node not in lead.offers_from
        if want and peer.alive and digests is None:
            digests = core.table.digests()
        core.send(peer.node, Heartbeat(core.term, core.priority, members_t, followers, want,
                                       digests if want and peer.alive else b""))


def heartbeat_one(core: NodeState, node: NodeId) -> None:
    want = node not in core.lead.offers_from
    core.send(node, Heartbeat(core.term, core.priority, (), tuple(core.lead.followers), want,
                              core.table.digests() if want else b""))


# -- follower ----------------------------------------------------------------------
def on_append(core: NodeState, sender: NodeId, msg: Append) -> bool:
    """Apply what continues what we have and acknowledge it; True if it did (bully step 6 may follow)."""
    if msg.snapshot and msg.based_on and msg.based_on not in core.offer_ids:
        # Sparse, trusting an offer of ours we never sent (we restarted since): its
        # records are facts still, but we hold less than it assumes. Ask for all.
        _apply(core, msg)
        if msg.part == msg.parts - 1:
            core.send(sender, AppendAck(core.term, core.applied_index, ok=False, sent_at=msg.sent_at))
        return False
    if msg.snapshot and msg.parts > 1 and not _snapshot_part(core, sender, msg):
        return False
    if msg.snapshot:
        _apply(core, msg)
        core.applied_index = msg.last_index
        core.caught_up = True
    elif msg.prev_index == core.applied_index:
        _apply(core, msg)
        core.applied_index = max(core.applied_index, msg.last_index)
    elif msg.last_index <= core.applied_index:
        pass  # a duplicate of what we have
    else:
        core.send(sender, AppendAck(core.term, core.applied_index, ok=False, sent_at=msg.sent_at))
        return False
    core.send(sender, AppendAck(core.term, core.applied_index, ok=True, sent_at=msg.sent_at))
    return True


def _snapshot_part(core: NodeState, sender: NodeId, msg: Append) -> bool:
    """True for the last part of a snapshot whose parts all came, in order (then it applies).

    Earlier parts are merged as they come (records are facts either way)
    but count for nothing until the last; after a gap the snapshot is
    refused once, at its last part, and the leader sends it again.
    """
    core.snapshot_parts, whole = next_part(core.snapshot_parts, (msg.term, msg.last_index),
                                           msg.part, msg.parts)
    if whole is None:  # more to come: merge what came (facts), apply nothing yet
        _apply(core, msg)
    elif whole is False and msg.part == msg.parts - 1:  # a part went missing
        core.send(sender, AppendAck(core.term, core.applied_index, ok=False, sent_at=msg.sent_at))
    return whole is True


def _apply(core: NodeState, msg: Append) -> None:
    compaction.forget(core, msg.forgotten)
    for record in msg.records:
        core.merge(record)

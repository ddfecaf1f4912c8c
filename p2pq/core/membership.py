"""Who is in the cluster, who is alive, and how the news spreads.

Theory of operation
-------------------
A node meets peers through its driver (mDNS, ``--peer`` seeds, a hello:
``PeerDiscovered``), through a message from a stranger that says its
priority, and through gossip: a newcomer that sends JOIN is told whom the
node knows (``introduce``), a leader's heartbeat lists every member, and a
member answers with the ones the leader does not list.

Failure detection is by silence. A leader judges a member dead after a
failure timeout without a word (two heartbeats if a dial to it was refused
since: its process is gone); a member judges its leader the same way and
starts an election (bully step 1). A peer dead for ``forget_after_s`` is
forgotten: no more heartbeats, dials or queued frames for it, and nobody
brings it back until it shows up again itself.
"""

from __future__ import annotations

from . import clients, election, replication, scheduler
from .errors import ErrorCode
from .events import ForgetPeer, Note
from .messages import Gossip, Heartbeat, HeartbeatAck, Join, Member
from .state import NodeState, Peer
from .types import NodeId, Role


def add_peer(core: NodeState, node: NodeId, priority: int, address: tuple | None, slots: int = 1) -> Peer:
    peer = Peer(node, priority, address, slots, last_heard=core.now)
    core.peers[node] = peer
    core.out.append(Note("node_joined", {"node": node, "priority": priority}))
    if core.role is Role.LEADER:
        replication.choose_followers(core)
    return peer


def meet(core: NodeState, node: NodeId, priority: int, address: tuple | None, slots: int = 1) -> None:
    """A node we learnt of: know it, and introduce ourselves to it."""
    if node != core.id and node not in core.peers:
        add_peer(core, node, priority, address, slots)
        core.send(node, Join(core.priority, core.address, core.config.slots))


def heard(core: NodeState, peer: Peer) -> None:
    peer.last_heard = core.now
    if not peer.alive:
        peer.alive = True
        core.out.append(Note("node_alive", {"node": peer.node}))
        if core.role is Role.LEADER:
            replication.choose_followers(core)


def declare_dead(core: NodeState, peer: Peer, why: str) -> None:
    peer.alive = False
    clients.fail_forwarded(core, ErrorCode.LEADER_CHANGED, to=peer.node)
    if core.lead is not None:
        core.lead.peer_offers.pop(peer.node, None)
    core.out.append(Note("node_dead", {"node": peer.node, "why": why}))
    if core.role is Role.LEADER:
        scheduler.reclaim_node(core, peer.node)
        replication.choose_followers(core)
    if peer.node == core.leader:
        election.start_election(core, f"leader {peer.node} {why}")


def declare_silent_dead(core: NodeState) -> None:
    """A leader's tick: members silent for a failure timeout are dead."""
    for peer in list(core.peers.values()):
        if peer.alive and core.peer_silent(peer):
            declare_dead(core, peer, "stopped answering")


def forget_departed(core: NodeState) -> None:
    """Drop peers dead for forget_after_s: no heartbeats, redials or queued frames for them.

    A forgotten node that comes back is met as a new one (it announces
    itself, mDNS or a seed finds it). Nobody brings it back meanwhile:
    gossip and heartbeats spread only the dead that a node already knows.
    """
    for peer in list(core.peers.values()):
        if peer.alive:
            core.dead_since.pop(peer.node, None)
            continue
        since = core.dead_since.setdefault(peer.node, core.now)
        if core.now - since < core.config.forget_after_s:
            continue
        del core.peers[peer.node]
        del core.dead_since[peer.node]
        if core.lead is not None:
            core.lead.forget_node(peer.node)
        core.out.append(ForgetPeer(peer.node))
        core.out.append(Note("node_forgotten", {"node": peer.node, "dead_s": round(core.now - since, 1)}))


def on_refused(core: NodeState, node: NodeId) -> None:
    """A dial to `node` was refused: its process is gone, most likely.

    It only shortens the wait: a node we heard from within the shorter
    timeout is still alive (a refused dial is no proof of death, say over
    a one-way firewall rule), and the judgement is the tick's, made now.
    """
    peer = core.peers.get(node)
    if peer is None or core.stopping:
        return
    peer.refused_at = core.now
    if core.role is Role.LEADER and peer.alive and core.peer_silent(peer):
        declare_dead(core, peer, "refused connections")
    elif core.role is Role.MEMBER and node == core.leader:
        check_leader(core)


def check_leader(core: NodeState) -> bool:
    """A member whose leader fell silent starts an election (bully step 1); True if it did."""
    if not core.leader_silent():
        return False
    if core.leader in core.peers:
        core.peers[core.leader].alive = False
    if core.config.election == "ranked" and core.leader and election.defer(core):
        return True
    election.start_election(core, "leader silent" if core.leader else "no leader")
    return True


def introduce(core: NodeState, newcomer: NodeId) -> None:
    """Tell a node that just introduced itself whom we know; it joins them in turn.

    Membership must not wait for a leader: with --peer seeds and no
    multicast, nodes that know only the seed each think themselves the
    highest and, in quorum mode, none can gather a majority to lead, so
    the leader's heartbeats would never spread the peer list.
    """
    known = tuple(Member(p.node, p.priority, p.address, p.alive, p.slots, 0)
                  for p in core.peers.values() if p.node != newcomer and p.alive)
    if known:
        core.send(newcomer, Gossip(known))


# -- messages (the tables are in node.py) -------------------------------------------------
def on_heartbeat(core: NodeState, sender: NodeId, msg: Heartbeat) -> None:
    """A member hears its leader: take its membership, ack what we run, offer if asked."""
    for m in msg.members:
        if m.node == core.id or (m.node not in core.peers and not m.alive):
            continue  # the dead we do not know stay unknown (or a forgotten one comes back)
        peer = core.peers.get(m.node) or add_peer(core, m.node, m.priority, m.address, m.slots)
        peer.address, peer.slots = m.address or peer.address, m.slots  # what a restarted member knows of the others
        if m.node != sender:
            peer.alive = m.alive
    if msg.members:
        # Gossip back what the leader does not know: with --peer seeds two
        # nodes may know each other only through us.
        listed = {m.node for m in msg.members}
        missing = tuple(Member(p.node, p.priority, p.address, p.alive, p.slots, 0)
                        for p in core.peers.values() if p.node not in listed and p.alive)
        if missing:
            core.send(sender, Gossip(missing))
    core.followed_by = msg.followers
    core.send(sender, HeartbeatAck(core.term, core.config.slots, core.busy()))
    if msg.want_offer:
        election.send_offer(core, again=True)
    scheduler.resend_finished(core)


def note_slots(core: NodeState, sender: NodeId, msg: HeartbeatAck) -> None:
    """Not leading: a heartbeat ack still says how many slots its node has."""
    core.peers[sender].slots = msg.slots


def on_join(core: NodeState, sender: NodeId, msg: Join) -> None:
    peer = core.peers[sender]
    peer.priority, peer.address, peer.slots = msg.priority, msg.address or peer.address, msg.slots


def on_join_leader(core: NodeState, sender: NodeId, msg: Join) -> None:
    """A leader heartbeats a node that joins at once, so it learns the membership now."""
    on_join(core, sender, msg)
    replication.heartbeat_one(core, sender)


def on_gossip(core: NodeState, sender: NodeId, msg: Gossip) -> None:
    for m in msg.members:
        if m.alive:
            meet(core, m.node, m.priority, m.address, m.slots)

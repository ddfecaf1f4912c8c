"""The fault library and the simulated network, piece by piece."""

from __future__ import annotations

import pytest

from p2pq.core.types import Role
from p2pq.sim.faults import (bridge, crash, halves, isolate, leader_of, links, majorities_ring, one_way,
                             pause)
from p2pq.sim.links import LinkModel, Uniform
from p2pq.sim.world import World


def settled_world(n: int = 5, seed: int = 1) -> World:
    world = World(n, seed)
    world.run_until(2.0)
    assert len(world.leaders()) == 1
    return world


def hears(world: World, node: str) -> set[str]:
    return {a for a in world.ids if a != node and world.link_up(a, node)}


@pytest.mark.parametrize("n", [5, 7, 9])
def test_majorities_ring_every_node_hears_a_majority_and_no_two_the_same(n):
    world = settled_world(n)
    majorities_ring(world)
    heard = [frozenset(hears(world, node) | {node}) for node in world.ids]
    assert all(len(h) == n // 2 + 1 for h in heard)
    assert len(set(heard)) == n


def test_bridge_node_sees_both_halves_which_do_not_see_each_other():
    world = settled_world()
    undo = bridge(world)
    middle = next(node for node in world.ids if len(hears(world, node)) == len(world.ids) - 1)
    rest = [node for node in world.ids if node != middle]
    assert all(middle in hears(world, node) for node in rest)
    assert all(len(hears(world, node)) < len(world.ids) - 1 for node in rest)
    undo()
    assert all(len(hears(world, node)) == len(world.ids) - 1 for node in world.ids)


def test_random_halves_and_isolation_cut_both_ways():
    world = settled_world()
    halves(world)
    sizes = sorted(len(hears(world, node)) + 1 for node in world.ids)
    assert sizes == [2, 2, 3, 3, 3]
    world.heal()
    isolate(lambda w: "n3")(world)
    assert hears(world, "n3") == set() and all("n3" not in hears(world, x) for x in world.ids)


def test_one_way_partition_cuts_one_direction_only():
    world = settled_world()
    one_way(lambda w: "n2", "deaf")(world)
    assert hears(world, "n2") == set()
    assert all("n2" in hears(world, other) for other in world.ids if other != "n2")


def test_isolating_the_leader_records_a_leader_loss_and_a_window():
    world = settled_world()
    leader = leader_of(world)
    undo = isolate(leader_of)(world)
    world.run_until(world.now + 1.0)
    undo()
    assert world.history.leader_losses[0][1] == leader
    window = world.history.windows[0]
    assert window.kind == "isolate" and window.detail == leader and window.end_s == world.now


def test_a_paused_node_handles_nothing_until_resumed_then_everything_at_once():
    world = settled_world()
    leader = leader_of(world)
    undo = pause(leader_of)(world)
    term_before = world.nodes[leader].core.term
    world.run_until(world.now + 3.0)  # long enough for the others to elect
    assert world.nodes[leader].core.role is Role.LEADER and world.nodes[leader].core.term == term_before
    assert world.nodes[leader].inbox  # messages and due timers queued up
    others = [n for n in world.leaders() if n != leader]
    assert others, "the others elected a new leader meanwhile"
    undo()
    assert not world.nodes[leader].inbox
    world.run_until(world.now + 2.0)
    assert len(world.leaders()) == 1


def test_a_crashed_node_restarts_from_its_disk():
    world = settled_world()
    victim = leader_of(world)
    undo = crash(leader_of)(world)
    assert not world.nodes[victim].alive and world.nodes[victim].leadership is None
    term_on_disk = world.nodes[victim].disk_term
    undo()
    assert world.nodes[victim].alive and world.nodes[victim].core.max_term >= term_on_disk


def test_a_link_that_drops_everything_stops_the_cluster_hearing_itself():
    world = settled_world()
    sent_before = world.messages_by_type.get("heartbeat", 0)
    links(LinkModel(drop=1.0), "blackhole")(world)
    world.run_until(world.now + 3.0)
    assert world.messages_by_type["heartbeat"] > sent_before  # still sent: counted
    notes = [kind for _, _, kind, _ in world.history.notes]
    assert "election_started" in notes  # nobody heard anybody


def _traffic(link: LinkModel) -> tuple[int, int, int]:
    """(heartbeats sent, heartbeats handled, gap reports) in a busy 3-node run over `link`."""
    from p2pq.core.events import Send
    from p2pq.sim.workload import Clients, Workload
    world = World(3, 4, link=link)
    gaps, handled = [], []
    send, step = world._do[Send], world._step

    def spy_send(node, command):
        if command.message.TYPE == "append_ack" and not command.message.ok:
            gaps.append(command)
        send(node, command)

    def spy_step(node, events, kind, *due):
        handled.append(kind)
        step(node, events, kind, *due)
    world._do[Send], world._step = spy_send, spy_step
    Clients(world, Workload(rate_per_s=100, stop_s=4.0)).start()
    world.run_until(5.0)
    return world.messages_by_type["heartbeat"], handled.count("heartbeat"), len(gaps)


def test_duplicating_links_deliver_twice():
    sent, handled, _ = _traffic(LinkModel(duplicate=1.0))
    assert handled >= 2 * sent - 10  # a few may still be in flight at the end


def test_fifo_links_never_show_the_follower_a_gap_and_reordering_ones_do():
    jitter = Uniform(0.0005, 0.03)
    assert _traffic(LinkModel(latency=jitter))[2] == 0
    assert _traffic(LinkModel(latency=jitter, reorder=True))[2] > 0


def test_link_model_validates_probabilities():
    with pytest.raises(ValueError):
        LinkModel(drop=1.5)


def test_a_skewed_clock_runs_at_its_rate_and_its_step_shows_only_after_a_restart():
    from p2pq.sim.faults import clock_skew
    world = settled_world()
    node = world.ids[0]
    core = world.nodes[node].core
    undo = clock_skew(lambda w: node, rates=(1.25,), step_s=10.0)(world)
    start_true, start_local = world.now, core.now
    world.run_until(world.now + 4.0)
    assert core.now - start_local == pytest.approx(1.25 * (world.now - start_true), abs=0.25)
    undo()
    offset = world.nodes[node].clock.wall_offset_s
    assert abs(offset) == 10.0
    world.crash(node)
    world.restart(node)
    world.run_until(world.now + 0.5)
    restarted = world.nodes[node]
    assert restarted.clock.local(world.now) - world.now == pytest.approx(offset)
    assert restarted.core.now - world.now == pytest.approx(offset, abs=0.5)  # its last step, in its time

"""Real processes, real TLS, real mDNS, real kills and partitions: p2pq in network namespaces.

Every node is a host of its own (a network namespace on a private bridge)
and finds the others by mDNS alone. A recorded client load runs through the
faults; at the end the history and the cluster's final table go through the
simulator's checker (p2pq.sim.checker.check). See docs/testing.md.

Needs root, iproute2 and nftables (.ci/run installs nftables); without them
every test here skips and says which is missing.
"""

from __future__ import annotations

import contextlib
import time

import pytest

from p2pq.client import make_spec
from p2pq.testing.chaos import Run
from p2pq.testing.cluster import wait_for
from p2pq.testing.netns import NetnsCluster, term_key, unavailable_reason

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def netns() -> None:
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)


@pytest.fixture
def make_run(netns):
    runs: list[Run] = []

    def make(**options) -> Run:
        run = Run(log=print, **options)
        runs.append(run)
        return run.start()
    yield make
    for run in runs:
        run.close()


@contextlib.contextmanager
def logs_on_failure(cluster: NetnsCluster):
    try:
        yield
    except BaseException:
        print(cluster.logs())
        raise


def assert_clean(verdict, run: Run) -> None:
    """lost = 0, nothing unexpected, one leader per term, every run recorded, and it settled."""
    r = verdict.report
    print(f"attempted {r.attempted}, acknowledged {r.acknowledged}, lost {r.lost}, duplicated {r.duplicated}, "
          f"unexpected {r.unexpected}, recovered {r.recovered}, terms {r.terms}, runs {verdict.runs}")
    assert r.acknowledged > 0
    assert r.terms >= 1  # the leadership notes were read from the nodes' logs
    assert r.lost == 0, r.lost_ids[:10]
    assert r.unexpected == 0, r.unexpected_ids[:10]
    assert r.leaders_per_term_max == 1
    assert not verdict.invisible_runs
    assert verdict.ok, verdict.problems


def acked_after(run: Run, at: float, term_ok=lambda term: True) -> int:
    return sum(1 for t, _, term, _ in run.recorder.acks() if t >= at and term_ok(term))


def test_five_nodes_form_a_cluster_by_mdns_alone(netns):
    cluster = NetnsCluster(5)
    try:
        with logs_on_failure(cluster):
            t0 = time.monotonic()
            cluster.start(wait=False)
            leader, term = cluster.wait_formed(30)
            formed_s = time.monotonic() - t0
            print(f"\n5 nodes in 5 namespaces formed by mDNS alone in {formed_s:.2f} s from cold (term {term})")
            assert all("--peer" not in node.args for node in cluster.nodes)
            assert cluster.nodes[leader].node_id == "n5"  # the highest priority leads
            everyone = {f"n{i}" for i in range(1, 6)}
            for i in range(5):
                view = cluster.view(i)
                assert {m["node"] for m in view["members"] if m["alive"]} == everyone
                assert {tuple(m["address"]) for m in view["members"]} == \
                    {(cluster.host(j), 7470) for j in range(5)}
    finally:
        cluster.stop()


def test_a_partition_also_cuts_mdns(netns):
    """n3 is cut off before any node starts: n1 and n2 find each other, nobody finds n3 until the heal."""
    cluster = NetnsCluster(3)
    try:
        with logs_on_failure(cluster):
            cluster.start(wait=False, spawn=[])
            cluster.isolate(2)
            for node in cluster.nodes:
                cluster._spawn(node)
            cluster.wait_leader([0, 1], 30)
            wait_for(lambda: cluster.view(2)["role"] == "leader", 30, "n3 to lead itself alone")
            # n1 and n2 found each other by mDNS while n3's announcements were in the air too.
            for i in (0, 1):
                assert "n3" not in {m["node"] for m in cluster.view(i)["members"]}
            assert [m["node"] for m in cluster.view(2)["members"]] == ["n3"]
            cluster.heal()
            t0 = time.monotonic()
            leader, _ = cluster.wait_formed(60)
            print(f"\nafter the heal, n3 was found and the 3 agreed on {cluster.nodes[leader].node_id} "
                  f"in {time.monotonic() - t0:.2f} s")
            assert cluster.nodes[leader].node_id == "n3"
    finally:
        cluster.stop()


def test_leader_kill_9_under_load_loses_nothing(make_run):
    run = make_run(rate_per_s=20)
    with logs_on_failure(run.cluster):
        wait_for(lambda: acked_after(run, 0) >= 40, 30, "a first load to be acknowledged")
        leader, term = run.leader()
        killed_at = run.kill(leader, term)
        survivors = [i for i in range(5) if i != leader]
        new_leader, new_term = run.cluster.wait_leader(survivors, 30, newer_than=term)
        first = wait_for(lambda: run.recorder.first_ack_after(killed_at, lambda t: t != term), 30,
                         "a submit acknowledged under the new term")
        print(f"\nfailover: kill -9 of {run.cluster.nodes[leader].node_id} -> first submit acknowledged "
              f"under {new_term} after {first - killed_at:.3f} s")
        assert first - killed_at < 10
        restarted_at = run.restart(leader)
        # L2: the restarted highest node catches up first, then takes over with a higher term.
        killed = run.cluster.nodes[leader].node_id

        def leads_again():
            leaders = run.cluster.leaders_now()
            return len(leaders) == 1 and leaders[0][0] == killed and term_key(leaders[0][1]) > term_key(new_term)
        wait_for(leads_again, 60, f"the restarted {killed} to lead again")
        print(f"restarted {killed} leads again {time.time() - restarted_at:.2f} s after its restart")
        wait_for(lambda: acked_after(run, time.time() - 0.5) > 0, 30, "submits to flow again")
        verdict = run.finish()
    assert_clean(verdict, run)


def test_paused_leader_is_fenced_when_it_wakes(make_run):
    run = make_run(rate_per_s=20, via=[0, 1, 2])
    with logs_on_failure(run.cluster):
        wait_for(lambda: acked_after(run, 0) >= 40, 30, "a first load to be acknowledged")
        leader, term = run.leader()
        paused_at = run.pause(leader, term)
        others = [i for i in range(5) if i != leader]
        _, new_term = run.cluster.wait_leader(others, 30, newer_than=term)
        wait_for(lambda: acked_after(run, paused_at, lambda t: t == new_term) >= 20, 30,
                 f"submits acknowledged under {new_term}")
        assert time.time() - paused_at > 1.0  # beyond the failure timeout
        resumed_at = run.resume(leader)
        run.cluster.wait_formed(60)
        wait_for(lambda: acked_after(run, resumed_at) >= 40, 30, "submits after the leader woke up")
        verdict = run.finish()
    # The woken leader's term is fenced: nothing submitted after the pause is acknowledged under it.
    stale = [(t, task) for t, task, ack_term, invoked in run.recorder.acks()
             if ack_term == term and invoked >= paused_at]
    assert not stale, stale[:5]
    late = [task for t, task, ack_term, _ in run.recorder.acks() if t >= resumed_at and ack_term == term]
    print(f"\n{len(late)} acknowledgment(s) under the old term arrived after the wake-up "
          "(all committed before the pause)")
    # On waking it learns it was deposed and steps down from the old term ...
    woke = run.cluster.nodes[leader].node_id
    notes = run.cluster.notes()
    assert any(node == woke and kind == "stepped_down" and detail["term"] == term and at >= resumed_at - 0.01
               for at, node, kind, detail in notes), [n for n in notes if n[1] == woke]
    # ... and ends as a member, or leads again only under a term above the one that replaced it.
    for at, node, kind, detail in notes:
        if node == woke and kind == "leader_elected" and at >= resumed_at:
            assert term_key(detail["term"]) > term_key(new_term), detail
    assert_clean(verdict, run)


def test_isolated_leader_heals_into_one_leader(make_run):
    run = make_run(rate_per_s=20)
    with logs_on_failure(run.cluster):
        wait_for(lambda: acked_after(run, 0) >= 40, 30, "a first load to be acknowledged")
        leader, term = run.leader()
        node = run.cluster.nodes[leader].node_id
        cut_at = run.cut("isolate-leader", node, lambda: run.cluster.isolate(leader), leader=(node, term))
        # The cut is one nft call per namespace, in turn: links die over this window, not at cut_at.
        cut_done = time.time()
        others = [i for i in range(5) if i != leader]
        _, new_term = run.cluster.wait_leader(others, 30, newer_than=term)
        wait_for(lambda: acked_after(run, cut_at, lambda t: t == new_term) >= 20, 30,
                 f"the majority side to acknowledge under {new_term}")
        run.cluster.heal()
        run.recorder.fault("heal")
        leader_after, term_after = run.cluster.wait_formed(60)
        print(f"\nafter the heal: one leader, {run.cluster.nodes[leader_after].node_id} ({term_after})")
        verdict = run.finish()
    # Alone, the old leader had nobody to replicate to: it acknowledged nothing submitted after the cut.
    stale = [task for t, task, ack_term, invoked in run.recorder.acks() if ack_term == term and invoked > cut_done]
    assert not stale, stale[:5]
    assert_clean(verdict, run)


def test_isolated_follower_then_leader_kill_loses_nothing(make_run):
    run = make_run(rate_per_s=20)
    with logs_on_failure(run.cluster):
        wait_for(lambda: acked_after(run, 0) >= 40, 30, "a first load to be acknowledged")
        leader, term = run.leader()
        follower = run.follower(leader)
        assert follower is not None
        run.cut("isolate-follower", run.cluster.nodes[follower].node_id,
                lambda: run.cluster.isolate(follower))
        new_follower = wait_for(lambda: (f := run.follower(leader)) not in (None, follower) and f, 15,
                                "the leader to pick another follower")
        since = time.time()
        wait_for(lambda: acked_after(run, since) >= 20, 30, "submits held by the leader and its new follower")
        killed_at = run.kill(leader, term)
        rest = [i for i in range(5) if i not in (leader, follower)]
        _, new_term = run.cluster.wait_leader(rest, 30, newer_than=term)
        wait_for(lambda: acked_after(run, killed_at, lambda t: t == new_term) >= 10, 30,
                 f"submits acknowledged under {new_term}")
        print(f"\nfollower {run.cluster.nodes[follower].node_id} cut, new follower "
              f"{run.cluster.nodes[new_follower].node_id}, leader killed; {new_term} took over")
        verdict = run.finish()  # heals the cut and restarts the killed leader
    assert_clean(verdict, run)


# -- the glue between a real run and the checker (no namespaces needed) ----------------------------
def test_judge_catches_a_lost_task_and_an_unrecorded_run(tmp_path):
    """The checks above can fail: a missing acknowledged task is lost, a run without an attempt is flagged."""
    from p2pq.core.tasks import Attempt, TaskRecord, describe
    from p2pq.testing.history import Recorder, judge, record_from_view

    spec = make_spec("noop", priority=3)
    done = TaskRecord("t1", spec, (1, 1), 100.0, (Attempt("1.n5.1", "n2", 100.1, 100.2, "succeeded", {}),))
    assert record_from_view(describe(done)).state == done.state
    assert record_from_view(describe(done)).attempts == done.attempts
    recorder = Recorder()
    for task_id in ("t1", "t2"):
        recorder.invoke(task_id, 3, "c0")
        recorder.ack(task_id, {"ok": True, "term": "1@n5", "leader": "n5", "replicated": True})
    runs = tmp_path / "runs.log"
    runs.write_text("t1 n2 100.2\nt1 n3 100.3\n")  # n3 ran t1, yet no attempt says so
    notes = [(99.0, "n5", "leader_elected", {"node": "n5", "term": "1@n5", "tasks": 0})]
    verdict = judge(recorder, {"t1": done}, notes, runs)
    assert verdict.report.lost == 1 and verdict.report.lost_ids == ["t2"]
    assert verdict.invisible_runs == ["t1@n3 ran 1x, 0 attempt(s)"]
    assert not verdict.ok and verdict.report.terms == 1

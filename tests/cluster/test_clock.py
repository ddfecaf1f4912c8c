"""Wall-clock steps (NTP) on a real node: the protocol's durations must not move.

The leader runs under libfaketime (Debian's `faketime`) with its wall clock
stepped back and forward while its monotonic clock runs true, which is what
an NTP step does. Before durations ran on the monotonic clock, a step back
of 10 s froze the leader's heartbeats (the others elected a new leader) and
a step forward declared every peer dead at once.
"""

from __future__ import annotations

import glob
import time

import pytest

from p2pq.testing.cluster import LocalCluster

pytestmark = pytest.mark.slow

LIBFAKETIME = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))


def work_for(cluster: LocalCluster, index: int, seconds: float) -> int:
    """Submit and wait for tasks one by one for `seconds` (several failure timeouts); how many ran."""
    client, done = cluster.client(index, timeout_s=10), 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        task = client.result(client.submit("noop"), wait=True, timeout_s=10)
        assert task["state"] == "succeeded", task
        done += 1
    return done


@pytest.mark.skipif(not LIBFAKETIME, reason="needs libfaketime (apt-get install faketime) to step a node's clock")
def test_steps_of_the_leaders_wall_clock_change_no_leadership(tmp_path):
    offset = tmp_path / "faketime.rc"
    offset.write_text("+0\n")
    env = {"LD_PRELOAD": LIBFAKETIME[0], "FAKETIME_TIMESTAMP_FILE": str(offset), "FAKETIME_NO_CACHE": "1",
           "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
    # The leader runs no tasks: libfaketime's clock_nanosleep fails with a real monotonic clock,
    # and task processes would inherit it.
    with LocalCluster(3, slots=1, node_env={2: env}, node_args={2: ["--slots", "0"]}) as cluster:
        index, term = cluster.leader()
        assert index == 2
        for step in ("-10", "+10", "+0"):  # back 10 s, forward 20 s, back 10 s
            offset.write_text(step + "\n")
            assert work_for(cluster, 0, 4.0) > 0
            assert cluster.leader(0) == (2, term), f"leadership changed after a wall-clock step to {step} s"
        log = cluster.nodes[2].log_path.read_text()
        assert "node_dead" not in log and "stepped_down" not in log

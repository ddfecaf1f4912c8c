"""Random faults against a real cluster in network namespaces, then the checker's table.

    sudo .venv/bin/python -m p2pq.testing.chaos --minutes 10
    sudo .venv/bin/python -m p2pq.testing.chaos --measure --kills 20

A run builds a 5-node NetnsCluster (found by mDNS alone), starts a steady
recorded submit load from clients that ride over failures, and then, until
the time is up, applies one fault at a time (the nemesis), heals it, and
waits for the cluster to settle: one leader agreed by every node, and the
followers caught up (commit reached the log's end). Faults: kill -9 of the
leader or of any node (restarted later, empty-handed), SIGSTOP of the leader
for a while (it wakes up deposed), partitions (isolate the leader or a node,
two halves, a bridge), and isolating the follower and then killing the
leader. At the end everything heals, the load stops, the queue drains, and
the final table and the history go through p2pq.sim.checker.check, the same
checker the simulator uses. The exit code is 1 when the checker found a
problem (a lost or unexpected task, two leaders in one term, a run no
attempt accounts for) or the cluster did not settle after a fault.

`--measure` instead kills the leader again and again under load and reports
failover time (kill -> first submit acknowledged under another term), the
time a restarted node takes to catch up (and, being the highest, lead
again), and the time 5 nodes take to find each other and agree on a leader
from a cold start.
"""

from .measure import Measurements, measure_cold_discovery, measure_failover
from .nemesis import NEMESIS, NetnsTarget, chaos
from .run import SETTLE_S, Run

__all__ = ["NEMESIS", "Measurements", "NetnsTarget", "Run", "SETTLE_S", "chaos", "measure_cold_discovery",
           "measure_failover"]

"""`written` and `fsync` keep every write the process saw committed, across kill -9."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from p2pq.net.storage import open_store

WRITER = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[3])
    from p2pq.net.storage import open_store
    from journal_records import record
    store = open_store(sys.argv[1], sys.argv[2])
    for i in range(1_000_000):
        batch = [record(f"t{i}-{k}", seq=k) for k in range(20)]
        store.save_records(batch)           # returns once committed
        print(f"t{i}", flush=True)          # the acknowledgment
""")


@pytest.mark.parametrize("durability", ["written", "fsync"])
def test_every_acknowledged_write_survives_kill_9(tmp_path, durability):
    here = str(Path(__file__).parent)
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), durability, here],
                              stdout=subprocess.PIPE, text=True)
    acked = [writer.stdout.readline().strip() for _ in range(300)]
    writer.send_signal(signal.SIGKILL)  # mid-write, most likely
    writer.wait()
    acked += [line.strip() for line in writer.stdout if line.strip()]
    store = open_store(tmp_path, durability)
    assert store.corruption is None
    held = {r.task_id for r in store.load().records}
    store.close()
    missing = [a for a in acked if not {f"{a}-{k}" for k in range(20)} <= held]
    assert not missing, f"{len(missing)} acknowledged batches lost, e.g. {missing[:3]}"
    assert len(acked) >= 300

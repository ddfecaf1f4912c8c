"""Power cuts: a disk that loses what was not fsynced (p2pq.testing.powercut), under a journal and a cluster.

The model tests run anywhere. The rest mount the file system (root, /dev/fuse,
mfusepy over libfuse3) and skip, saying which is missing, without them.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from p2pq.net.storage import open_store
from p2pq.testing.powercut import PAGE, DiskModel, PowercutDisk, unavailable_reason
from p2pq.testing.powercut_cluster import run_cuts

needs_fuse = pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason()))


# -- the model, without FUSE ---------------------------------------------------------------
def new_file(model: DiskModel, path: str, data: bytes = b""):
    node = model.make(path, 0o644, False)
    model.write(node, data, 0)
    return node


def content(model: DiskModel, path: str) -> bytes:
    node = model.lookup(path)
    return model.read(node, node.size + 1, 0)


def test_model_an_unsynced_file_is_gone_after_a_cut(tmp_path):
    model = DiskModel(tmp_path)
    new_file(model, "/a", b"x" * 10_000)
    model.cut()
    with pytest.raises(FileNotFoundError):
        model.lookup("/a")


def test_model_fsync_keeps_content_and_the_directory_fsync_keeps_the_name(tmp_path):
    model = DiskModel(tmp_path)
    node = new_file(model, "/a", b"kept")
    model.fsync(node)
    model.cut()
    with pytest.raises(FileNotFoundError):  # the content was durable, its name was not
        model.lookup("/a")
    node = new_file(model, "/a", b"kept")
    model.fsync(node)
    model.fsyncdir(model.lookup("/"))
    model.write(node, b"LOST, and longer than before", 0)
    model.cut()
    assert content(model, "/a") == b"kept"
    assert DiskModel(tmp_path).read(DiskModel(tmp_path).lookup("/a"), 100, 0) == b"kept"  # a power cycle too


def test_model_a_name_made_durable_without_its_content_comes_back_empty(tmp_path):
    model = DiskModel(tmp_path)
    new_file(model, "/a", b"never synced")
    model.fsyncdir(model.lookup("/"))
    model.cut()
    assert content(model, "/a") == b""


def test_model_rename_is_durable_only_with_its_directory(tmp_path):
    model = DiskModel(tmp_path)
    model.fsync(new_file(model, "/a", b"one"))
    model.fsync(new_file(model, "/b", b"two"))
    model.fsyncdir(model.lookup("/"))
    model.rename("/a", "/b")  # replaces b
    assert content(model, "/b") == b"one" and sorted(model.lookup("/").entries) == ["b"]
    model.cut()
    assert content(model, "/a") == b"one" and content(model, "/b") == b"two"
    model.rename("/a", "/b")
    model.fsyncdir(model.lookup("/"))
    model.cut()
    assert sorted(model.lookup("/").entries) == ["b"] and content(model, "/b") == b"one"


def test_model_unlink_and_mkdir_revert_without_a_directory_fsync(tmp_path):
    model = DiskModel(tmp_path)
    model.fsync(new_file(model, "/a", b"synced"))
    model.fsyncdir(model.lookup("/"))
    model.unlink("/a")
    model.make("/d", 0o755, True)
    model.cut()
    assert content(model, "/a") == b"synced"
    with pytest.raises(FileNotFoundError):
        model.lookup("/d")


def _apply(model: DiskModel, node, op, current: bytearray, durable: bytearray) -> tuple[bytearray, bytearray]:
    kind, offset, size = op
    if kind == "write":
        data = bytes((offset + i) % 251 for i in range(size))
        model.write(node, data, offset)
        if offset > len(current):
            current += bytes(offset - len(current))
        current[offset:offset + size] = data
    elif kind == "truncate":
        model.truncate(node, offset)
        current = current[:offset] + bytes(max(0, offset - len(current)))
    elif kind == "fsync":
        model.fsync(node)
        durable = bytearray(current)
    else:
        model.cut()
        current = bytearray(durable)
    return current, durable


ops = st.lists(st.tuples(st.sampled_from(["write", "write", "truncate", "fsync", "cut"]),
                         st.integers(0, 5 * PAGE), st.integers(1, 2 * PAGE + 3)), max_size=30)


@settings(max_examples=60, deadline=None)
@given(ops)
def test_model_file_content_matches_a_bytes_model(tmp_path_factory, ops):
    """Writes, truncates, fsyncs and cuts of one file: the disk reads as a plain bytes model says."""
    model = DiskModel(tmp_path_factory.mktemp("disk"))
    node = new_file(model, "/f")
    model.fsync(node)
    model.fsyncdir(model.lookup("/"))
    current, durable = bytearray(), bytearray()
    for op in ops:
        current, durable = _apply(model, node, op, current, durable)
        node = model.lookup("/f")
        assert model.read(node, len(current) + PAGE, 0) == bytes(current), op


# -- the file system, mounted ------------------------------------------------------------------
@pytest.fixture
def disk(tmp_path):
    with PowercutDisk(tmp_path / "backing", tmp_path / "mnt", log_path=tmp_path / "disk.log") as disk:
        yield disk


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file(path: Path, data: bytes, sync: bool) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


@needs_fuse
def test_mounted_write_without_fsync_is_gone_and_with_fsync_kept(disk):
    mnt = disk.mount
    write_file(mnt / "kept", b"synced", sync=True)
    write_file(mnt / "gone", b"never synced", sync=False)
    fsync_dir(mnt)
    write_file(mnt / "kept", b"overwritten, not synced", sync=False)
    write_file(mnt / "new", b"not even its name", sync=False)
    assert sorted(os.listdir(mnt)) == ["gone", "kept", "new"]
    disk.cut()
    assert sorted(os.listdir(mnt)) == ["gone", "kept"]
    assert (mnt / "kept").read_bytes() == b"synced"
    assert (mnt / "gone").read_bytes() == b""  # its name was durable, its content never was
    assert disk.counters()["cuts"] == 1


@needs_fuse
def test_mounted_rename_needs_the_directory_fsync(disk):
    mnt = disk.mount
    write_file(mnt / "a.tmp", b"new", sync=True)
    os.replace(mnt / "a.tmp", mnt / "a")
    disk.cut()
    assert os.listdir(mnt) == []
    write_file(mnt / "a.tmp", b"new", sync=True)
    os.replace(mnt / "a.tmp", mnt / "a")
    fsync_dir(mnt)
    disk.cut()
    assert os.listdir(mnt) == ["a"] and (mnt / "a").read_bytes() == b"new"


WRITER = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[3])
    from p2pq.net.storage import open_store
    from journal_records import record
    store = open_store(sys.argv[1], sys.argv[2])
    for i in range(1_000_000):
        store.save_records([record(f"t{i}-{k}", seq=k) for k in range(5)])  # returns once committed
        print(f"t{i}", flush=True)                                            # the acknowledgment
""")


def acked_then_power_cut(disk: PowercutDisk, durability: str, acks: int) -> tuple[list[str], set[str]]:
    """A journal writer on the disk: `acks` acknowledged batches, kill -9, power cut; what it held."""
    here = str(Path(__file__).parents[1] / "storage")
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(disk.mount), durability, here],
                              stdout=subprocess.PIPE, text=True)
    acked = [writer.stdout.readline().strip() for _ in range(acks)]
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    acked += [line.strip() for line in writer.stdout if line.strip()]
    disk.cut()
    store = open_store(disk.mount, durability)
    try:
        assert store.corruption is None, store.corruption
        held = {r.task_id for r in store.load().records}
    finally:
        store.close()
    return acked, {a for a in acked if not {f"{a}-{k}" for k in range(5)} <= held}


@needs_fuse
def test_an_fsync_journal_keeps_every_acknowledged_write_across_a_power_cut(disk):
    acked, missing = acked_then_power_cut(disk, "fsync", 150)
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged batches lost, e.g. {sorted(missing)[:3]}"
    assert disk.counters()["fsyncs"] >= 150  # one flush per commit, at least


@needs_fuse
def test_a_written_journal_loses_acknowledged_writes_to_a_power_cut(disk):
    """The control: the disk really drops what SQLite did not fsync (synchronous=NORMAL, no checkpoint yet)."""
    acked, missing = acked_then_power_cut(disk, "written", 150)
    assert len(missing) > 0, "a power cut lost nothing that was never fsynced: the disk keeps too much"


# -- a cluster -------------------------------------------------------------------------------
def describe(run) -> str:
    report = run.verdict.report
    return (f"{run.durability}: {run.cuts} cuts, acknowledged per window {run.acked_per_cut}, lost per cut "
            f"{run.lost_per_cut}, after the last {run.lost_after}; problems: {run.verdict.problems}; "
            f"lost ids {report.lost_ids[:5]}")


@needs_fuse
@pytest.mark.slow
def test_power_cuts_of_the_whole_cluster_lose_no_task_acknowledged_with_fsync():
    """3 nodes, each data dir on its own disk, --durability fsync: 3 cuts of every node at once, mid-load."""
    run = run_cuts("fsync", 3, seed=1)
    assert all(n > 0 for n in run.acked_per_cut), describe(run)  # every cut fell in the middle of a load
    assert run.lost == 0 and not any(run.lost_per_cut) and run.lost_after == 0, describe(run)
    assert run.verdict.report.unexpected == 0, describe(run)
    assert run.acknowledged >= sum(run.acked_per_cut), describe(run)


@needs_fuse
@pytest.mark.slow
def test_the_same_cut_loses_tasks_acknowledged_with_written():
    """The control: with `written` (no fsync at commit) the same harness sees the loss."""
    run = run_cuts("written", 1, seed=1)
    assert run.lost_per_cut[0] > 0, describe(run)
    assert run.lost_after == 0, describe(run)  # what was acknowledged after the restart is kept

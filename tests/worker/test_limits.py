"""Task limits: a memory limit per task, and no process outliving its task
(setsid grandchildren included), through cgroup v2 where this machine has
one and through the fallback (RLIMIT_DATA, P2PQ_TASK marker) always."""

import asyncio
import os
import sys
import time
from pathlib import Path

import pytest

from p2pq.worker import Executor
from p2pq.worker.confine import Confinement, default_task_memory_bytes, parse_size

pytestmark = pytest.mark.timeout(60)

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)

LIMIT = 200 * 2**20
# Every test runs with cgroups (where the machine lets us make them) and without.
MODES = [pytest.param(True, id="cgroup-if-any"), pytest.param(False, id="fallback")]


def python(target, *args):
    return {"kind": "python", "target": target, "args": list(args)}


def shell(target, *args):
    return {"kind": "shell", "target": target, "args": list(args)}


def with_executor(body, **options):
    async def main():
        executor = Executor(1, **options)
        await executor.start()
        try:
            return await body(executor)
        finally:
            await executor.close()

    return asyncio.run(main())


def vanished(pid):
    """True once `pid` is gone from /proc: exited and reaped (a zombie does not count)."""
    return not os.path.exists(f"/proc/{pid}")


async def wait_for(condition, timeout_s=10.0, what="condition"):
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


# --- memory ---------------------------------------------------------------------------


@pytest.mark.parametrize("cgroups", MODES)
def test_a_python_task_past_the_limit_fails_quickly_and_the_node_goes_on(cgroups):
    async def body(ex):
        started = time.monotonic()
        outcome = await ex.run("big", python("sample_tasks:allocate", 1024), 30)
        elapsed = time.monotonic() - started
        after = await ex.run("after", python("sample_tasks:allocate", 50), 30)
        return outcome, elapsed, after

    outcome, elapsed, after = with_executor(body, task_memory_bytes=LIMIT, cgroups=cgroups)
    assert (outcome.status, outcome.error) == ("failed", "memory limit (200 MiB) exceeded")
    assert elapsed < 10
    assert (after.status, after.value) == ("succeeded", 50)  # a fresh child, same slot


def test_the_limit_bounds_what_a_task_holds():
    # The task catches its MemoryError and reports its peak RSS: the limit, not 1 GiB.
    outcome = with_executor(lambda ex: ex.run("peak", python("sample_tasks:allocate_until_refused", 1024), 30),
                            task_memory_bytes=LIMIT, cgroups=False)
    refused_at_mib, peak_kib = outcome.value
    assert refused_at_mib < 200
    assert peak_kib * 1024 < LIMIT + 20 * 2**20


def test_without_a_limit_the_same_task_succeeds():
    outcome = with_executor(lambda ex: ex.run("big", python("sample_tasks:allocate", 300), 30))
    assert (outcome.status, outcome.value) == ("succeeded", 300)


def test_a_shell_task_is_bounded_too():
    script = "b = [bytearray(2**20) for _ in range(1024)]"
    outcome = with_executor(lambda ex: ex.run("sh", shell(sys.executable, "-c", script), 30),
                            task_memory_bytes=LIMIT, cgroups=False)
    assert outcome.status == "failed"
    assert "MemoryError" in outcome.stderr


@pytest.mark.parametrize(("text", "size"), [
    ("512M", 512 * 2**20), ("2G", 2 * 2**30), ("1.5g", 3 * 2**29), ("64MiB", 64 * 2**20),
    ("0", None), ("none", None), ("NONE", None), (str(2**30), 2**30),
])
def test_parse_size(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "12X", "-1G", "G", "1M"])
def test_parse_size_refuses(text):
    with pytest.raises(ValueError):
        parse_size(text)


def test_default_is_a_share_of_ram_per_slot():
    total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert default_task_memory_bytes(4) == int(total * 0.8) // 4
    assert default_task_memory_bytes(1) > default_task_memory_bytes(2)


# --- no process outlives its task -------------------------------------------------------


@pytest.mark.parametrize("cgroups", MODES)
def test_a_setsid_grandchild_of_a_shell_task_dies_with_it(cgroups):
    async def body(ex):
        outcome = await ex.run("s", shell("sh", "-c", "setsid sleep 1000 & echo $!"), 30)
        pid = int(outcome.stdout)
        await wait_for(lambda: vanished(pid), what=f"the setsid sleep {pid} to be gone")
        return outcome

    assert with_executor(body, cgroups=cgroups).status == "succeeded"


@pytest.mark.parametrize("cgroups", MODES)
@pytest.mark.parametrize("end", ["timeout", "cancel"])
def test_a_setsid_grandchild_of_a_killed_shell_task_dies_too(cgroups, end, tmp_path):
    pidfile = tmp_path / "pid"
    script = f"setsid sleep 1000 & echo $! > {pidfile}; sleep 1000"

    async def body(ex):
        running = asyncio.create_task(ex.run("s", shell("sh", "-c", script), 1.0 if end == "timeout" else None))
        await wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), what="the pid file")
        pid = int(pidfile.read_text())
        assert not vanished(pid)
        if end == "cancel":
            assert ex.cancel("s")
        outcome = await running
        await wait_for(lambda: vanished(pid), what=f"the setsid sleep {pid} to be gone")
        return outcome

    assert with_executor(body, cgroups=cgroups).status == ("timeout" if end == "timeout" else "cancelled")


@pytest.mark.parametrize("cgroups", MODES)
@pytest.mark.parametrize("end", ["timeout", "cancel"])
def test_a_background_child_killed_with_its_shell_is_reaped(cgroups, end, tmp_path):
    # The child stays in the task's process group, so the group kill takes it
    # with its shell: a zombie re-parented to the node, which must reap it. A
    # `setsid` cancelled before it calls setsid() is in the same state.
    pidfile = tmp_path / "pid"
    script = f"sleep 1000 & echo $! > {pidfile}; sleep 1000"

    async def body(ex):
        running = asyncio.create_task(ex.run("s", shell("sh", "-c", script), 1.0 if end == "timeout" else None))
        await wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), what="the pid file")
        pid = int(pidfile.read_text())
        if end == "cancel":
            assert ex.cancel("s")
        outcome = await running
        await wait_for(lambda: vanished(pid), what=f"the background sleep {pid} to be reaped")
        return outcome

    assert with_executor(body, cgroups=cgroups).status == ("timeout" if end == "timeout" else "cancelled")


@pytest.mark.parametrize("cgroups", MODES)
def test_a_setsid_grandchild_of_a_python_task_dies_with_it(cgroups):
    async def body(ex):
        outcome = await ex.run("p", python("sample_tasks:spawn_setsid_sleeper", 1000), 30)
        await wait_for(lambda: vanished(outcome.value), what=f"the setsid sleep {outcome.value} to be gone")
        child = (await ex.run("pid", python("sample_tasks:pid"), 30)).value
        return outcome, child, vanished(child)

    outcome, child, child_vanished = with_executor(body, cgroups=cgroups)
    assert outcome.status == "succeeded"
    assert not child_vanished  # the worker child itself serves on


@pytest.mark.parametrize("cgroups", MODES)
@pytest.mark.parametrize("end", ["timeout", "cancel"])
def test_a_setsid_grandchild_of_a_killed_python_task_dies_too(cgroups, end, tmp_path):
    pidfile = tmp_path / "pid"
    spec = python("sample_tasks:spawn_setsid_sleeper_then_sleep", str(pidfile), 1000)

    async def body(ex):
        running = asyncio.create_task(ex.run("p", spec, 1.0 if end == "timeout" else None))
        await wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), what="the pid file")
        pid = int(pidfile.read_text())
        assert not vanished(pid)
        if end == "cancel":
            assert ex.cancel("p")
        outcome = await running
        await wait_for(lambda: vanished(pid), what=f"the setsid sleep {pid} to be gone")
        return outcome

    assert with_executor(body, cgroups=cgroups).status == ("timeout" if end == "timeout" else "cancelled")


def test_close_kills_a_running_tree(tmp_path):
    pidfile = tmp_path / "pid"
    spec = python("sample_tasks:spawn_setsid_sleeper_then_sleep", str(pidfile), 1000)

    async def main():
        ex = Executor(1, cgroups=False)
        await ex.start()
        running = asyncio.create_task(ex.run("p", spec, None))
        await wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), what="the pid file")
        await ex.close()
        await running
        pid = int(pidfile.read_text())
        await wait_for(lambda: vanished(pid), what=f"the setsid sleep {pid} to be gone")

    asyncio.run(main())


def test_the_fallback_is_what_cgroups_false_gives():
    confinement = Confinement(LIMIT, cgroups=False)
    confinement.setup()
    assert (confinement.tree, confinement.memory) == ("marker", "RLIMIT_DATA")
    assert "P2PQ_TASK" in confinement.describe()

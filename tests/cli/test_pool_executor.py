"""p2pq.Executor against the concurrent.futures contract, on a real 2-node cluster."""

from __future__ import annotations

import concurrent.futures
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import p2pq
from p2pq.client import InvalidRequest
from p2pq.futures import TaskFailed
from p2pq.testing.cluster import LocalCluster, wait_for

import exec_tasks
from exec_tasks import add, divide, pause, square, unusual

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(2, slots=1, extra_args=["--pythonpath", str(HERE)]) as c:
        yield c


@pytest.fixture
def executor(cluster):
    ex = p2pq.Executor(cluster.nodes[0].address, cluster_dir=cluster.cluster_dir)
    yield ex
    ex.shutdown(wait=False, cancel_futures=True)


def test_submit_returns_a_future_at_once_and_its_result(executor):
    future = executor.submit(add, 2, b=40)
    assert isinstance(future, concurrent.futures.Future) and len(future.id) == 16
    assert future.result(timeout=30) == 42 and future.done() and future.exception() is None
    assert future.status()["state"] == "succeeded"


def test_map_keeps_the_order_of_its_inputs(executor):
    assert list(executor.map(add, range(300), range(300))) == [2 * i for i in range(300)]
    assert list(executor.map(square, [])) == []


def test_map_timeout_raises_and_cancels_what_has_not_started(executor):
    results = executor.map(pause, [3, 3, 3, 3], timeout=0.5)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        next(results)
    assert time.monotonic() - started < 2.5


def test_a_task_that_raises_a_builtin_exception_raises_it_from_result(executor):
    future = executor.submit(divide, 1, 0)
    with pytest.raises(ZeroDivisionError) as err:
        future.result(timeout=30)
    cause = err.value.__cause__
    assert isinstance(cause, TaskFailed) and "in divide" in cause.remote_traceback
    assert "p2pq/worker" not in cause.remote_traceback  # the task's own frames only
    assert isinstance(future.exception(), ZeroDivisionError)


def test_any_other_exception_is_a_task_failed_with_its_line(executor):
    future = executor.submit(unusual, "odd")
    with pytest.raises(TaskFailed, match="Unusual: odd"):
        future.result(timeout=30)


def test_a_refused_task_raises_the_clusters_reason_from_result(executor):
    future = executor.submit("no_such_builtin")
    with pytest.raises(p2pq.P2PQError, match="no_such_builtin"):
        future.result(timeout=30)


def test_cancel_of_a_queued_task_and_not_of_a_running_one(executor, cluster):
    blockers = [executor.submit(pause, 2.5, i) for i in range(2)]  # both slots busy
    queued = executor.submit(square, 3)
    wait_for(lambda: all(cluster.client(0).status(b.id)["state"] == "running" for b in blockers), 15,
             "both blockers running")
    assert queued.cancel() and queued.cancelled() and queued.done()
    with pytest.raises(concurrent.futures.CancelledError):
        queued.result()
    assert not blockers[0].cancel() and blockers[0].result(timeout=30) == 0
    assert cluster.client(0).status(queued.id)["state"] == "cancelled"


def test_shutdown_cancel_futures_cancels_the_queued_and_lets_the_running_finish(cluster):
    ex = p2pq.Executor(cluster.nodes[0].address, cluster_dir=cluster.cluster_dir)
    running = [ex.submit(pause, 2, "done") for _ in range(2)]
    queued = [ex.submit(square, i) for i in range(20)]
    wait_for(lambda: all(cluster.client(0).status(f.id)["state"] == "running" for f in running), 15,
             "both slots running")
    ex.shutdown(wait=True, cancel_futures=True)
    assert [f.result() for f in running] == ["done", "done"]
    assert all(f.cancelled() for f in queued)
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(square, 1)


def test_one_executor_from_several_threads(executor):
    results: dict[int, list] = {}

    def producer(k: int) -> None:
        futures = [executor.submit(add, k * 1000, i) for i in range(100)]
        results[k] = [f.result(timeout=60) for f in futures]

    threads = [threading.Thread(target=producer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert results == {k: [k * 1000 + i for i in range(100)] for k in range(4)}


def test_wait_and_as_completed_take_task_futures(executor):
    futures = [executor.submit(square, i) for i in range(30)]
    assert sorted(f.result() for f in p2pq.as_completed(futures, timeout=60)) == [i * i for i in range(30)]
    done, not_done = p2pq.wait(futures, timeout=10)
    assert len(done) == 30 and not not_done


def test_shell_commands_give_completed_processes(executor):
    done = executor.submit(p2pq.shell(["sh", "-c"]), "echo $0 out", "hello").result(timeout=30)
    assert isinstance(done, subprocess.CompletedProcess) and done.stdout == "hello out\n"
    with pytest.raises(subprocess.CalledProcessError) as err:
        executor.submit(p2pq.shell(["sh", "-c", "exit 3"])).result(timeout=30)
    assert err.value.returncode == 3


def test_what_cannot_be_sent_by_name_is_refused_with_the_rule(executor):
    with pytest.raises(InvalidRequest, match="top level of a module"):
        executor.submit(lambda x: x, 1)

    def nested(x):
        return x
    with pytest.raises(InvalidRequest, match="top level of a module"):
        executor.map(nested, [1])
    with pytest.raises(InvalidRequest, match="JSON"):
        executor.submit(square, object())
    assert exec_tasks.square(3) == 9


def test_a_process_pool_script_runs_on_the_cluster_by_changing_one_line(cluster, tmp_path):
    script = tmp_path / "sweep.py"
    script.write_text(
        "import p2pq\n"
        "def simulate(seed):\n"
        "    return seed * 3\n"
        "if __name__ == '__main__':\n"
        "    with p2pq.Executor() as ex:  # was: concurrent.futures.ProcessPoolExecutor()\n"
        "        print(sum(ex.map(simulate, range(50))))\n")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                         env={**__import__("os").environ, "P2PQ_NODE": cluster.nodes[1].address,
                              "P2PQ_CLUSTER_DIR": str(cluster.cluster_dir)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(sum(3 * i for i in range(50)))


def test_futures_can_run_after_other_futures(executor, cluster):
    client = executor._client
    first = client.submit_future("exec_tasks:pause", 0.5, "one")
    second = client.submit_future("exec_tasks:add", 1, kwargs={"b": 2}, after=[first])
    failing = client.submit_future("exec_tasks:divide", 1, 0)
    doomed = client.submit_future("exec_tasks:square", 3, after=[failing, first])
    assert second.result(timeout=30) == 3
    assert client.status(second.id)["attempts"][0]["started_at"] >= client.status(first.id)["attempts"][0]["ended_at"]
    with pytest.raises(TaskFailed, match=f"dependency {failing.id} failed"):
        doomed.result(timeout=30)
    assert len(client.status(doomed.id)["attempts"]) == 1  # its own failure: it never ran

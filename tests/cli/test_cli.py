"""The command line: real invocations, exit codes, and one clear line for every mistake (G5)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from p2pq.testing.cluster import LocalCluster, free_ports

pytestmark = pytest.mark.slow


def p2pq(*args: str, cluster_dir=None, check_exit: int | None = 0) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if cluster_dir is not None:
        env["P2PQ_CLUSTER_DIR"] = str(cluster_dir)
    result = subprocess.run([sys.executable, "-m", "p2pq", *args], capture_output=True, text=True,
                            timeout=60, env=env)
    if check_exit is not None:
        assert result.returncode == check_exit, (result.stdout, result.stderr)
    return result


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def cluster():
    c = LocalCluster(2, slots=2)
    try:
        c.start()
        yield c
    finally:
        c.stop()


def node_args(cluster, i=0):
    return ["--node", cluster.nodes[i].address]


def test_help_teaches_every_command():
    out = p2pq("--help").stdout
    for command in ("init", "node", "submit", "status", "result", "ls", "cancel", "peers", "sim", "demo"):
        assert command in out
    assert "--" in p2pq("submit", "--help").stdout


def test_init_is_idempotent_and_a_bundle_joins_another_machine(tmp_path):
    first = p2pq("init", "--cluster-dir", str(tmp_path / "a"), "--export", str(tmp_path / "b.bundle")).stdout
    again = p2pq("init", "--cluster-dir", str(tmp_path / "a")).stdout
    fp = first.split()[3]
    assert "created" in first and f"kept the existing cluster CA {fp}" in again
    joined = p2pq("init", "--cluster-dir", str(tmp_path / "laptop"), "--join", str(tmp_path / "b.bundle")).stdout
    assert fp in joined


def test_no_node_running_is_one_clear_line(tmp_path):
    p2pq("init", "--cluster-dir", str(tmp_path))
    port = free_ports(1)[0]
    result = p2pq("peers", "--node", f"127.0.0.1:{port}", cluster_dir=tmp_path, check_exit=1)
    assert f"no p2pq node at 127.0.0.1:{port}" in one_line_error(result)


def test_no_cluster_is_one_clear_line(tmp_path):
    result = p2pq("peers", cluster_dir=tmp_path / "missing", check_exit=1)
    assert "p2pq init" in one_line_error(result)


def test_bad_arguments_are_usage_errors(tmp_path):
    result = p2pq("submit", "--priority", "urgent", "echo", check_exit=2)
    assert "Traceback" not in result.stderr and "urgent" in result.stderr
    result = p2pq("submit", "--node", "host:notaport", "echo", cluster_dir=tmp_path, check_exit=1)
    assert "bad node address" in one_line_error(result)


def test_submit_wait_and_json(cluster):
    out = p2pq("submit", *node_args(cluster), "--json", "--wait", "fibonacci", "20", cluster_dir=cluster.cluster_dir)
    doc = json.loads(out.stdout)
    assert doc["id"] and doc["replicated"] is True and doc["task"]["state"] == "succeeded"
    status = json.loads(p2pq("status", *node_args(cluster, 1), "--json", doc["id"], cluster_dir=cluster.cluster_dir).stdout)
    assert status["state"] == "succeeded" and status["result"]["value"] == 6765


def test_a_shell_command_after_double_dash(cluster):
    out = p2pq("submit", *node_args(cluster), "--wait", "--", "sh", "-c", "echo from-shell; exit 0",
               cluster_dir=cluster.cluster_dir).stdout
    assert "from-shell" in out and "succeeded" in out
    failed = p2pq("submit", *node_args(cluster), "--wait", "--", "sh", "-c", "exit 4",
                  cluster_dir=cluster.cluster_dir, check_exit=1)
    assert "exit code 4" in failed.stdout


def test_negative_numbers_are_arguments_and_name_value_a_keyword_argument(cluster):
    def run(*args, code=0):
        return p2pq("submit", *node_args(cluster), "--json", "--wait", *args, cluster_dir=cluster.cluster_dir,
                    check_exit=code)
    doc = json.loads(run("--priority", "-2", "echo", "-1", "5", "-0.5").stdout)
    assert doc["task"]["result"]["value"] == [-1, 5, -0.5]
    failed = json.loads(run("p2pq.worker.builtins:fail", "message=from a keyword", code=1).stdout)
    assert failed["task"]["state"] == "failed" and failed["task"]["result"]["error"] == "RuntimeError: from a keyword"
    failed = json.loads(run("p2pq.worker.builtins:fail", "--kwargs", '{"message": "from --kwargs"}', code=1).stdout)
    assert failed["task"]["result"]["error"] == "RuntimeError: from --kwargs"  # --json exits 1 as well
    assert "after keyword arguments" in one_line_error(run("echo", "a=1", "2", code=1))


def test_a_big_argument_comes_from_a_file_or_stdin(cluster, tmp_path):
    (tmp_path / "words.json").write_text(json.dumps(["a"] * 5000))
    (tmp_path / "text.txt").write_text("hello from a file")
    doc = json.loads(p2pq("submit", *node_args(cluster), "--json", "--wait", "echo", f"@{tmp_path / 'words.json'}",
                          f"@{tmp_path / 'text.txt'}", cluster_dir=cluster.cluster_dir).stdout)
    assert doc["task"]["result"]["value"] == [["a"] * 5000, "hello from a file"]
    piped = subprocess.run([sys.executable, "-m", "p2pq", "submit", *node_args(cluster), "--json", "--wait",
                            "echo", "-"], input="[1, 2, 3]", capture_output=True, text=True, timeout=60,
                           env={**os.environ, "P2PQ_CLUSTER_DIR": str(cluster.cluster_dir)})
    assert json.loads(piped.stdout)["task"]["result"]["value"] == [1, 2, 3]  # echo of one argument is it
    missing = p2pq("submit", *node_args(cluster), "echo", "@/no/such/file", cluster_dir=cluster.cluster_dir,
                   check_exit=1)
    assert "cannot read /no/such/file" in one_line_error(missing)


def test_an_unknown_task_id_is_one_clear_line(cluster):
    result = p2pq("status", *node_args(cluster), "nosuchtask", cluster_dir=cluster.cluster_dir, check_exit=1)
    assert "no task with id nosuchtask" in one_line_error(result)


def test_a_negative_timeout_is_a_usage_error(cluster):
    result = p2pq("submit", *node_args(cluster), "--timeout", "-3", "echo", cluster_dir=cluster.cluster_dir, check_exit=2)
    assert "Traceback" not in result.stderr and "--timeout" in result.stderr


def test_ls_cancel_and_peers(cluster):
    tid = p2pq("submit", *node_args(cluster), "--priority", "9", "sleep", "30", cluster_dir=cluster.cluster_dir).stdout.split()[0]
    out = p2pq("cancel", *node_args(cluster), tid, cluster_dir=cluster.cluster_dir).stdout
    assert f"{tid}: cancelled" in out
    listing = json.loads(p2pq("ls", *node_args(cluster), "--json", "--state", "cancelled", cluster_dir=cluster.cluster_dir).stdout)
    assert tid in [t["id"] for t in listing["tasks"]] and not {"type", "req", "ok"} & set(listing)
    p2pq("submit", *node_args(cluster), "--wait", "noop", cluster_dir=cluster.cluster_dir)  # two tasks at least
    shown = p2pq("ls", *node_args(cluster), "--limit", "1", cluster_dir=cluster.cluster_dir).stdout
    assert "the newest 1 of" in shown  # says that it shows fewer than there are
    peers = json.loads(p2pq("peers", *node_args(cluster), "--json", cluster_dir=cluster.cluster_dir).stdout)
    assert {m["node"] for m in peers["members"]} == {"node1", "node2"} and peers["leader"] == "node2"


def test_numbers_beyond_64_bits_and_bad_ids_are_usage_errors_not_tracebacks(tmp_path):
    result = p2pq("submit", "--priority", "99999999999999999999999", "noop", check_exit=2)
    assert "Traceback" not in result.stderr and "--priority" in result.stderr
    result = p2pq("submit", "--retries", "1000", "noop", check_exit=2)
    assert "Traceback" not in result.stderr and "--retries" in result.stderr
    result = p2pq("submit", "--id", "my task", "noop", check_exit=2)
    assert "Traceback" not in result.stderr and "characters of" in result.stderr
    result = p2pq("submit", "--timeout", "inf", "noop", cluster_dir=tmp_path, check_exit=2)
    assert "Traceback" not in result.stderr and "--timeout" in result.stderr


@pytest.mark.parametrize("args, words", [
    (["fibonaci", "30"], "did you mean 'fibonacci'"),
    (["fibonacci"], "missing a required argument: 'n'"),
    (["noop", "1", "2"], "too many positional arguments"),
    (["pkg.mod:"], "pkg.module:function"),
])
def test_a_task_that_can_never_run_is_refused_at_submit(cluster, args, words):
    result = p2pq("submit", *node_args(cluster), *args, cluster_dir=cluster.cluster_dir, check_exit=1)
    assert words in one_line_error(result)


def test_status_json_of_any_task_is_json(cluster):
    out = p2pq("submit", *node_args(cluster), "--json", "--wait", "echo", '{"a": [1, 2.5, null]}',
               cluster_dir=cluster.cluster_dir)
    tid = json.loads(out.stdout)["id"]
    status = json.loads(p2pq("status", *node_args(cluster), "--json", tid, cluster_dir=cluster.cluster_dir).stdout)
    assert status["args"] == [{"a": [1, 2.5, None]}]


@pytest.mark.parametrize(("size", "why"), [("12X", "not a size: '12X'"), ("1M", "below the minimum of 32M")])
def test_node_task_memory_is_checked_before_the_node_starts(tmp_path, size, why):
    result = p2pq("node", "--cluster-dir", str(tmp_path), "--task-memory", size, check_exit=2)
    assert "Invalid value for '--task-memory'" in result.stderr and why in result.stderr
    assert "Traceback" not in result.stderr


def test_one_client_shared_by_threads_opens_one_connection(cluster, monkeypatch, caplog):
    import logging
    import threading

    from p2pq.client import Client
    from p2pq.net import transport

    opened = []
    real = transport.open_client

    async def counting(*args, **kwargs):
        opened.append(args[:2])
        return await real(*args, **kwargs)
    monkeypatch.setattr(transport, "open_client", counting)
    errors: list[Exception] = []
    client = Client(cluster.nodes[0].address, cluster_dir=cluster.cluster_dir, timeout_s=15)

    def work():
        try:
            for _ in range(20):
                assert client.peers()["members"]
        except Exception as exc:  # noqa: BLE001 -- reported below
            errors.append(exc)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        threads = [threading.Thread(target=work) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        client.close()
    assert errors == [] and len(opened) == 1
    assert "destroyed but it is pending" not in caplog.text


def test_a_python_task_imports_from_the_nodes_pythonpath(tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "mylab_for_test.py").write_text("def train(data, epochs=1):\n    print('training', data)\n"
                                           "    return {'data': data, 'epochs': epochs}\n")
    with LocalCluster(2, slots=1, extra_args=["--pythonpath", str(lib)]) as c:
        doc = json.loads(p2pq("submit", *node_args(c), "--json", "--wait", "mylab_for_test:train", "data.csv",
                              "epochs=3", cluster_dir=c.cluster_dir).stdout)
    result = doc["task"]["result"]
    assert result["value"] == {"data": "data.csv", "epochs": 3} and result["stdout"] == "training data.csv\n"


def test_submit_wait_prints_the_id_at_once_and_ctrl_c_ends_cleanly(cluster):
    import signal
    proc = subprocess.Popen([sys.executable, "-m", "p2pq", "submit", *node_args(cluster), "--wait", "sleep", "30"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "P2PQ_CLUSTER_DIR": str(cluster.cluster_dir)})
    try:
        task_id = proc.stdout.readline().strip()  # printed while the task still runs
        assert task_id and proc.poll() is None
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode != 0 and "Traceback" not in err and "destroyed but it is pending" not in err, err
    p2pq("cancel", *node_args(cluster), task_id, cluster_dir=cluster.cluster_dir)


def test_a_client_whose_node_dies_goes_on_through_another_member(tmp_path):
    from p2pq.client import Client
    with LocalCluster(3, slots=1) as c:
        dead = f"127.0.0.1:{free_ports(1)[0]}"
        with Client(f"{dead},{c.nodes[0].address}", cluster_dir=c.cluster_dir, timeout_s=20) as client:
            assert client.peers()["node"] == "node1"  # the first address refused: the second answered
            task_id = client.submit("sleep", 2)
            c.kill(0)  # the node this client talks to
            task = client.result(task_id, wait=True)  # through node2 or node3, learnt from node1
        assert task["state"] == "succeeded" and "{}:{}".format(*client.address) != c.nodes[0].address
        out = p2pq("submit", "--node", f"{dead},{c.nodes[1].address}", "--wait", "noop", cluster_dir=c.cluster_dir)
        assert "succeeded" in out.stdout


def test_each_line_of_a_file_is_a_task_and_a_failing_one_fails_the_command(cluster, tmp_path):
    lines = tmp_path / "codes.txt"
    lines.write_text("0\n0\n\n3\n0\n")
    run = p2pq("submit", *node_args(cluster), "--each", str(lines), "--wait", "--", "sh", "-c", "exit {}",
               cluster_dir=cluster.cluster_dir, check_exit=1)
    assert "4 tasks: 3 succeeded, 1 failed" in run.stdout and "(line: 3)" in run.stdout
    piped = subprocess.run([sys.executable, "-m", "p2pq", "submit", *node_args(cluster), "--each", "-", "--wait",
                            "--json", "fibonacci"], input="10\n20\n", capture_output=True, text=True, timeout=60,
                           env={**os.environ, "P2PQ_CLUSTER_DIR": str(cluster.cluster_dir)})
    doc = json.loads(piped.stdout)
    assert piped.returncode == 0 and doc["succeeded"] == 2 and doc["failed"] == []
    values = [json.loads(p2pq("status", *node_args(cluster), "--json", i, cluster_dir=cluster.cluster_dir).stdout)
              ["result"]["value"] for i in doc["ids"]]
    assert values == [55, 6765]  # the line is the last argument when ARGS have no {}


def test_submit_after_blocks_a_task_until_its_dependency_succeeds_and_ls_shows_it(cluster):
    first = p2pq("submit", *node_args(cluster), "sleep", "1.5", cluster_dir=cluster.cluster_dir).stdout.split()[0]
    second = p2pq("submit", *node_args(cluster), "--after", first, "echo", "then",
                  cluster_dir=cluster.cluster_dir).stdout.split()[0]
    listed = json.loads(p2pq("ls", *node_args(cluster), "--state", "blocked", "--json",
                             cluster_dir=cluster.cluster_dir).stdout)
    assert [t["id"] for t in listed["tasks"]] == [second] and listed["tasks"][0]["after"] == [first]
    done = json.loads(p2pq("result", *node_args(cluster), second, "--wait", "--json",
                           cluster_dir=cluster.cluster_dir).stdout)
    assert done["state"] == "succeeded" and done["attempts"][0]["started_at"] >= done["submitted_at"]
    failing = p2pq("submit", *node_args(cluster), "fail", cluster_dir=cluster.cluster_dir).stdout.split()[0]
    after_failure = p2pq("submit", *node_args(cluster), "--after", failing, "--wait", "echo", "never",
                         cluster_dir=cluster.cluster_dir, check_exit=1)
    assert f"dependency {failing} failed" in after_failure.stdout + after_failure.stderr
    unknown = p2pq("submit", *node_args(cluster), "--after", "no-such-task", "echo", "x",
                   cluster_dir=cluster.cluster_dir, check_exit=1)
    assert "no-such-task: no task with that id" in unknown.stderr

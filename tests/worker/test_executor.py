"""Executor with real worker processes: outcomes, timeouts, cancel, crashes,
and the event loop staying responsive while tasks burn CPU."""

import asyncio
import gc
import json
import os
import sys
import time
from pathlib import Path

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pq.worker import Executor, Outcome

pytestmark = pytest.mark.timeout(60)

# Worker children copy the parent's sys.path, so this makes "sample_tasks:fn"
# importable there whatever pytest's import mode did.
HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)

PY = sys.executable


@pytest.fixture(autouse=True)
def _collect_garbage():
    """Collect after each test, so a leaked transport warns in the test that leaked it."""
    yield
    gc.collect()


def builtin(target, *args, **kwargs):
    return {"kind": "builtin", "target": target, "args": list(args), "kwargs": kwargs}


def python(target, *args, **kwargs):
    return {"kind": "python", "target": target, "args": list(args), "kwargs": kwargs}


def shell(target, *args, **extra):
    return {"kind": "shell", "target": target, "args": list(args), **extra}


def with_executor(body, slots=1, **options):
    """Run `await body(executor)` on a fresh loop and executor."""

    async def main():
        executor = Executor(slots, **options)
        await executor.start()
        try:
            return await body(executor)
        finally:
            await executor.close()

    return asyncio.run(main())


def run_one(spec, timeout_s=None, **options):
    return with_executor(lambda ex: ex.run("r1", spec, timeout_s), **options)


async def wait_for(condition, timeout_s=10.0, what="condition"):
    """Poll `condition()` until true; fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def process_gone(pid):
    """True once `pid` has exited (a zombie counts: it runs nothing)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


# --- builtin and python tasks ------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "value"),
    [
        (builtin("noop"), None),
        (builtin("echo", "a", 1), ["a", 1]),
        (builtin("echo", "only"), "only"),
        (builtin("fibonacci", "30"), 832040),
        (builtin("fibonacci", 100), 354224848179261915075),
        (builtin("is_prime", "97"), True),
        (builtin("reverse_string", "abc"), "cba"),
        (builtin("to_uppercase", "abc"), "ABC"),
        (builtin("sleep", "0"), None),
    ],
)
def test_builtin_succeeds(spec, value):
    outcome = run_one(spec)
    assert outcome == Outcome("succeeded", value=value, duration_s=outcome.duration_s)
    assert outcome.duration_s > 0


def test_builtin_cpu_burn_returns_its_loop_count():
    outcome = run_one(builtin("cpu_burn", "0.05"))
    assert outcome.status == "succeeded" and outcome.value > 0
    assert outcome.duration_s >= 0.05


def test_builtin_error_is_one_line_with_traceback_in_stderr():
    outcome = run_one(builtin("fibonacci", -3))
    assert outcome.status == "failed"
    assert outcome.error == "ValueError: fibonacci needs n >= 0, got -3"
    assert "Traceback" in outcome.stderr and "fibonacci" in outcome.stderr


def test_builtin_fail_reports_its_message():
    outcome = run_one(builtin("fail", message="planned"))
    assert (outcome.status, outcome.error) == ("failed", "RuntimeError: planned")


def test_unknown_builtin_fails_with_the_known_names():
    outcome = run_one(builtin("fibonaci"))
    assert outcome.status == "failed"
    assert outcome.error.startswith("UnknownTask: unknown task 'fibonaci' (did you mean")
    assert "is_prime" in outcome.error


def test_python_callable_by_import_path():
    async def body(ex):
        return [
            await ex.run("a", python("sample_tasks:add", 2, 3), None),
            await ex.run("b", python("sample_tasks:greet", "bob", punctuation="?"), None),
            await ex.run("c", python("sample_tasks:Maths.square", 7), None),
        ]

    outcomes = with_executor(body)
    assert [o.value for o in outcomes] == [5, "hello bob?", 49]
    assert {o.status for o in outcomes} == {"succeeded"}


def test_a_result_nested_deeper_than_the_wire_carries_fails_the_task_clearly():
    async def body(ex):
        return [await ex.run(str(n), python("sample_tasks:nested", n), None) for n in (32, 33)]

    ok, deep = with_executor(body)
    assert ok.status == "succeeded"
    assert (deep.status, deep.error) == ("failed", "result nests deeper than 32 levels")


def test_runs_waiting_for_a_slot_start_in_priority_order():
    """G4 at the node: an urgent task prefetched after others starts before them (issue 13)."""
    async def body(ex):
        started: list[str] = []
        done = asyncio.Event()

        def ended(name):
            def on_done(outcome):
                started.append(name)
                if len(started) == 6:
                    done.set()
            return on_done
        ex.submit("running", builtin("sleep", 0.2), None, ended("running"), priority=5)
        for i in range(4):
            ex.submit(f"later-{i}", builtin("noop"), None, ended(f"later-{i}"), priority=5)
        ex.submit("urgent", builtin("noop"), None, ended("urgent"), priority=1)
        await asyncio.wait_for(done.wait(), 30)
        return started

    order = with_executor(body, slots=1)
    assert order == ["running", "urgent", "later-0", "later-1", "later-2", "later-3"]


def test_a_child_serves_many_tasks():
    async def body(ex):
        return [(await ex.run(str(i), python("sample_tasks:pid"), None)).value for i in range(3)]

    pids = with_executor(body)
    assert len(set(pids)) == 1 and pids[0] != os.getpid()


def test_task_output_does_not_corrupt_the_pipes():
    # 300 kB on stdout is more than a pipe buffer: the child must not block.
    outcome = run_one(python("sample_tasks:chatty", 300_000))
    assert (outcome.status, outcome.value) == ("succeeded", "done")
    assert outcome.stdout.endswith("raw write to fd 1\n") and outcome.stderr == "to stderr\n"


def test_what_a_python_task_prints_is_in_its_result_even_from_its_subprocesses():
    outcome = run_one(python("sample_tasks:prints_and_returns", "hi"))
    assert (outcome.status, outcome.value) == ("succeeded", "hi")
    assert outcome.stdout == "out: hi\nfrom a child\n" and outcome.stderr == "err: hi\n"


def test_a_tasks_output_is_its_own_not_the_next_tasks():
    async def body(ex):
        first = await ex.run("1", python("sample_tasks:prints_and_returns", "one"), None)
        second = await ex.run("2", python("sample_tasks:add", 1, 2), None)
        return first, second
    first, second = with_executor(body)
    assert "one" in first.stdout and (second.stdout, second.stderr) == ("", "")


def test_output_past_the_cap_keeps_its_end():
    outcome = run_one(python("sample_tasks:chatty", 5000), output_cap_bytes=100)
    assert outcome.stdout.startswith("[... ") and outcome.stdout.endswith("raw write to fd 1\n")
    assert len(outcome.stdout) < 150


def test_a_failed_tasks_traceback_starts_at_its_own_code():
    outcome = run_one(python("sample_tasks:prints_then_fails"))
    assert (outcome.status, outcome.error) == ("failed", "KeyError: 'missing'")
    assert outcome.stdout == "working...\n"
    assert outcome.stderr.startswith("Traceback (most recent call last):\n")
    assert "prints_then_fails" in outcome.stderr and "helper_that_fails" in outcome.stderr
    assert "_child.py" not in outcome.stderr and "importlib" not in outcome.stderr


@pytest.mark.parametrize(
    ("target", "error_start"),
    [
        ("no_such_module_xyz:fn", "ModuleNotFoundError: cannot load 'no_such_module_xyz:fn': "),
        ("sample_tasks:missing", "AttributeError: cannot load 'sample_tasks:missing': "),
        ("sample_tasks:NOT_CALLABLE", "TypeError: 'sample_tasks:NOT_CALLABLE' is not callable"),
    ],
)
def test_python_import_errors_are_one_line(target, error_start):
    outcome = run_one(python(target))
    assert outcome.status == "failed"
    assert outcome.error.startswith(error_start), outcome.error
    assert "\n" not in outcome.error


def test_python_exception_message_is_flattened_to_one_line():
    outcome = run_one(python("sample_tasks:raises_multiline"))
    assert outcome.error == "ValueError: first line second line"


def test_non_json_result_fails():
    outcome = run_one(python("sample_tasks:returns_set"))
    assert (outcome.status, outcome.error) == (
        "failed", "ValueError: result is not JSON-serialisable: set")


def test_oversized_result_fails():
    outcome = run_one(builtin("echo", "x" * 500), max_result_bytes=100)
    assert outcome.status == "failed"
    assert outcome.error.startswith("result too large: 502 bytes")


def test_sys_exit_in_a_task_fails_the_task_not_the_child():
    async def body(ex):
        first = await ex.run("a", python("sample_tasks:exits", 2), None)
        return first, await ex.run("b", builtin("noop"), None)

    exited, after = with_executor(body)
    assert (exited.status, exited.error) == ("failed", "SystemExit: 2")
    assert after.status == "succeeded"


# --- bad specs ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "timeout_s", "error"),
    [
        ("fibonacci", None, "a task spec must be a dict, got str"),
        ({"kind": "java", "target": "x"}, None,
         "'kind' must be one of builtin, python, shell, got 'java'"),
        ({"kind": "builtin"}, None, "'target' must be a non-empty string, got None"),
        (builtin("noop") | {"args": "30"}, None, "'args' must be a list, got str"),
        (python("sample_tasks.add"), None,
         "a python target looks like 'pkg.mod:fn', got 'sample_tasks.add'"),
        (shell("echo", ["nested"]), None, "shell arguments must be strings, got ['nested']"),
        (builtin("noop"), -1, "timeout_s must be a positive number or None, got -1"),
        (builtin("noop"), "soon", "timeout_s must be a positive number or None, got 'soon'"),
    ],
)
def test_bad_spec_fails_without_raising(spec, timeout_s, error):
    assert run_one(spec, timeout_s) == Outcome("failed", error=f"invalid task spec: {error}")


def test_run_before_start_is_a_programming_error():
    async def main():
        with pytest.raises(RuntimeError, match="before start"):
            await Executor(1).run("r", builtin("noop"), None)

    asyncio.run(main())


def test_duplicate_run_id_is_refused():
    async def body(ex):
        first = asyncio.create_task(ex.run("same", builtin("sleep", 5), None))
        await wait_for(lambda: ex.busy == 1, what="first run to start")
        duplicate = await ex.run("same", builtin("noop"), None)
        ex.cancel("same")
        return duplicate, await first

    duplicate, first = with_executor(body, slots=2)
    assert duplicate == Outcome("failed", error="run 'same' is already running here")
    assert first.status == "cancelled"


# --- shell tasks ---------------------------------------------------------------------


def test_shell_success_captures_stdout_and_stderr():
    outcome = run_one(shell("sh", "-c", "echo hello; echo oops >&2"))
    assert (outcome.status, outcome.exit_code, outcome.error) == ("succeeded", 0, None)
    assert (outcome.stdout, outcome.stderr) == ("hello\n", "oops\n")


def test_shell_nonzero_exit_fails():
    outcome = run_one(shell("sh", "-c", "echo partial; exit 3"))
    assert (outcome.status, outcome.exit_code, outcome.error) == ("failed", 3, "exit code 3")
    assert outcome.stdout == "partial\n"


def test_shell_output_is_capped_keeping_the_tail():
    script = "import sys; sys.stdout.write('x' * 5000 + 'THE END')"
    outcome = run_one(shell(PY, "-c", script), output_cap_bytes=1000)
    assert outcome.status == "succeeded"
    assert outcome.stdout.startswith("[... 4007 bytes truncated ...]\n")
    assert outcome.stdout.endswith("x" * 993 + "THE END")


def test_shell_honours_cwd_and_env(tmp_path):
    outcome = run_one(shell("sh", "-c", 'pwd; echo "$P2PQ_TEST_VAR"; echo "$HOME"',
                            cwd=str(tmp_path), env={"P2PQ_TEST_VAR": "from-spec"}))
    assert outcome.status == "succeeded"
    # env adds to the node's environment rather than replacing it.
    assert outcome.stdout == f"{tmp_path}\nfrom-spec\n{os.environ.get('HOME', '')}\n"


def test_shell_missing_cwd_fails_clearly(tmp_path):
    missing = tmp_path / "nope"
    outcome = run_one(shell("ls", cwd=str(missing)))
    assert outcome == Outcome("failed", error=f"working directory not found: {missing}",
                              duration_s=outcome.duration_s)


def test_shell_command_not_found():
    outcome = run_one(shell("p2pq-no-such-command", "x"))
    assert (outcome.status, outcome.error) == ("failed", "command not found: p2pq-no-such-command")


def test_shell_does_not_use_a_shell():
    outcome = run_one(shell("echo", "$HOME", "a;b", "*"))
    assert outcome.stdout == "$HOME a;b *\n"


def test_shell_background_helpers_do_not_hold_the_slot():
    # sh exits at once; the sleep it left holds the pipes until we kill it.
    started = time.monotonic()
    outcome = run_one(shell("sh", "-c", "sleep 30 & echo started"), timeout_s=20)
    assert (outcome.status, outcome.stdout) == ("succeeded", "started\n")
    assert time.monotonic() - started < 10


# --- timeouts, cancel, crashes -------------------------------------------------------------


def test_shell_timeout_kills_the_whole_process_group():
    # The script prints the pid of a background sleep, then waits on it.
    script = "sleep 30 & echo $!; wait"

    async def body(ex):
        started = time.monotonic()
        outcome = await ex.run("t", shell("sh", "-c", script), 0.5)
        elapsed = time.monotonic() - started
        grandchild = int(outcome.stdout)
        await wait_for(lambda: process_gone(grandchild), what="the background sleep to die")
        return outcome, elapsed, await ex.run("after", shell("echo", "ok"), 5)

    outcome, elapsed, after = with_executor(body)
    assert (outcome.status, outcome.error) == ("timeout", "timed out after 0.5 s")
    assert 0.5 <= elapsed < 1.5
    assert (after.status, after.stdout) == ("succeeded", "ok\n")


def test_builtin_timeout_kills_the_child_and_the_slot_recovers():
    async def body(ex):
        pid_before = (await ex.run("p1", python("sample_tasks:pid"), None)).value
        started = time.monotonic()
        outcome = await ex.run("t", builtin("sleep", 30), 0.5)
        elapsed = time.monotonic() - started
        await wait_for(lambda: process_gone(pid_before), what="the old child to die")
        pid_after = (await ex.run("p2", python("sample_tasks:pid"), None)).value
        return outcome, elapsed, pid_before, pid_after

    outcome, elapsed, pid_before, pid_after = with_executor(body)
    assert (outcome.status, outcome.error) == ("timeout", "timed out after 0.5 s")
    assert 0.5 <= elapsed < 1.5
    assert 0.5 <= outcome.duration_s < 1.5
    assert pid_after != pid_before


def test_cancel_a_running_task():
    async def body(ex):
        running = asyncio.create_task(ex.run("c", builtin("sleep", 30), None))
        await wait_for(lambda: ex.busy == 1, what="the task to start")
        assert ex.cancel("c") is True
        started = time.monotonic()
        outcome = await running
        return outcome, time.monotonic() - started, ex.cancel("c"), ex.cancel("never-ran")

    outcome, elapsed, cancel_again, cancel_unknown = with_executor(body)
    assert (outcome.status, outcome.error) == ("cancelled", "cancelled")
    assert elapsed < 1.0
    assert (cancel_again, cancel_unknown) == (False, False)


def test_cancel_a_shell_task_keeps_its_partial_output(tmp_path):
    marker = tmp_path / "begun"
    script = f"echo begun; touch {marker}; exec sleep 30"

    async def body(ex):
        running = asyncio.create_task(ex.run("c", shell("sh", "-c", script), None))
        await wait_for(marker.exists, what="the script to start")
        assert ex.cancel("c") is True
        return await running

    outcome = with_executor(body)
    assert (outcome.status, outcome.stdout) == ("cancelled", "begun\n")


def test_cancel_a_task_still_waiting_for_a_slot():
    async def body(ex):
        first = asyncio.create_task(ex.run("first", builtin("sleep", 30), None))
        queued = asyncio.create_task(ex.run("queued", builtin("noop"), None))
        await wait_for(lambda: ex.busy == 1, what="the first run")
        # cancel() is True once the queued run has registered (and is then cancelled).
        await wait_for(lambda: ex.cancel("queued"), what="the queued run")
        queued_outcome = await queued
        still_busy = ex.busy
        ex.cancel("first")
        return queued_outcome, still_busy, await first

    queued, still_busy, first = with_executor(body, slots=1)
    assert (queued.status, queued.duration_s) == ("cancelled", 0.0)
    assert still_busy == 1
    assert first.status == "cancelled"


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        (python("sample_tasks:hard_exit", 3), "worker process died (exit code 3)"),
        (python("sample_tasks:kill_self"), "worker process died (killed by signal SIGKILL)"),
    ],
)
def test_child_crash_is_reported_and_the_slot_recovers(spec, error):
    async def body(ex):
        crashed = await ex.run("crash", spec, None)
        return crashed, await ex.run("after", builtin("fibonacci", 10), None)

    crashed, after = with_executor(body)
    assert (crashed.status, crashed.error) == ("failed", error)
    assert (after.status, after.value) == ("succeeded", 55)


def test_cancelling_run_itself_kills_the_task():
    async def body(ex):
        pid = (await ex.run("p", python("sample_tasks:pid"), None)).value
        running = asyncio.create_task(ex.run("c", builtin("sleep", 30), None))
        await wait_for(lambda: ex.busy == 1, what="the task to start")
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        await wait_for(lambda: process_gone(pid), what="the child to die")
        await wait_for(lambda: ex.busy == 0, what="the slot to free")
        return await ex.run("after", builtin("noop"), None)

    assert with_executor(body).status == "succeeded"


def test_close_cancels_running_tasks_and_kills_children():
    async def main():
        ex = Executor(2)
        await ex.start()
        pids = [(await ex.run(str(i), python("sample_tasks:pid"), None)).value for i in range(2)]
        running = asyncio.create_task(ex.run("long", builtin("sleep", 30), None))
        await wait_for(lambda: ex.busy == 1, what="the task to start")
        await ex.close()
        return pids, await running, await ex.run("late", builtin("noop"), None)

    pids, outcome, late = asyncio.run(main())
    assert outcome == Outcome("cancelled", error="executor closed", duration_s=outcome.duration_s)
    assert late == Outcome("cancelled", error="executor closed")
    assert all(process_gone(pid) for pid in pids)


NODE_SCRIPT = """
import asyncio, sys
sys.path[:0] = [{here!r}]
from p2pq.worker import Executor

async def main():
    ex = Executor(1)
    await ex.start()
    pid = (await ex.run("p", {{"kind": "python", "target": "sample_tasks:pid"}}, None)).value
    print(pid, flush=True)
    await ex.run("s", {{"kind": "builtin", "target": "sleep", "args": [60]}}, None)

asyncio.run(main())
"""


def test_children_die_with_a_killed_node():
    # A node killed by SIGKILL cannot clean up; its busy child must notice.
    async def main():
        node = await asyncio.create_subprocess_exec(
            PY, "-c", NODE_SCRIPT.format(here=HERE), stdout=asyncio.subprocess.PIPE)
        child_pid = int(await asyncio.wait_for(node.stdout.readline(), 30))
        node.kill()
        await node.wait()
        await wait_for(lambda: process_gone(child_pid), timeout_s=10,
                       what="the orphaned worker child to exit")

    asyncio.run(main())


# --- concurrency and the event loop ------------------------------------------------------


def test_cpu_bound_task_does_not_block_the_event_loop():
    async def body(ex):
        ticks = []

        async def ticker():
            while True:
                ticks.append(time.monotonic())
                await asyncio.sleep(0.01)

        ticking = asyncio.create_task(ticker())
        try:
            outcome = await ex.run("burn", builtin("cpu_burn", 1.0), None)
        finally:
            ticking.cancel()
        return outcome, ticks

    outcome, ticks = with_executor(body)
    assert outcome.status == "succeeded"
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    assert len(ticks) > 30
    assert max(gaps) < 0.2, f"the event loop stalled for {max(gaps):.3f} s"


def test_two_slots_run_two_sleeps_at_once():
    async def body(ex):
        started = time.monotonic()
        runs = [asyncio.create_task(ex.run(str(i), builtin("sleep", 1), None)) for i in range(2)]
        await wait_for(lambda: ex.busy == 2, what="both sleeps to run")
        assert ex.free_slots == 0
        outcomes = await asyncio.gather(*runs)
        return outcomes, time.monotonic() - started

    outcomes, elapsed = with_executor(body, slots=2)
    assert [o.status for o in outcomes] == ["succeeded", "succeeded"]
    assert elapsed < 2.0  # one after the other would take at least 2 s


def test_one_slot_runs_one_task_at_a_time():
    async def body(ex):
        started = time.monotonic()
        runs = [asyncio.create_task(ex.run(str(i), builtin("sleep", 0.3), None)) for i in range(2)]
        await wait_for(lambda: ex.busy == 1, what="the first sleep")
        assert ex.free_slots == 0
        outcomes = await asyncio.gather(*runs)
        return outcomes, time.monotonic() - started

    outcomes, elapsed = with_executor(body, slots=1)
    assert [o.status for o in outcomes] == ["succeeded", "succeeded"]
    assert elapsed >= 0.6  # the second sleep waited for the slot


def test_many_noop_tasks_all_succeed_through_a_small_pool():
    count = 2000

    async def body(ex):
        return await asyncio.gather(*(ex.run(str(i), builtin("noop"), None) for i in range(count)))

    outcomes = with_executor(body, slots=2)
    assert len(outcomes) == count and all(o.status == "succeeded" for o in outcomes)


# --- the wire form -------------------------------------------------------------------------


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(
    status=st.sampled_from(["succeeded", "failed", "timeout", "cancelled"]),
    value=json_values | st.integers(min_value=2**64, max_value=2**200),
    error=st.none() | st.text(),
    exit_code=st.none() | st.integers(-64, 255),
    stdout=st.text(),
    duration_s=st.floats(0, 1e6),
)
def test_outcome_wire_round_trip_through_msgpack(
    status, value, error, exit_code, stdout, duration_s
):
    outcome = Outcome(status, value, error, exit_code, stdout, "", duration_s)
    wire = msgpack.unpackb(msgpack.packb(outcome.to_wire()))
    assert Outcome.from_wire(wire) == outcome


def test_outcome_wire_has_the_plain_value():
    wire = Outcome("succeeded", value={"a": [1, "x"]}, duration_s=0.5).to_wire()
    assert wire == {"status": "succeeded", "value": {"a": [1, "x"]}, "error": None,
                    "exit_code": None, "stdout": "", "stderr": "", "duration_s": 0.5}


def test_outcome_wire_carries_big_ints_exactly():
    outcome = Outcome("succeeded", value={"fib": [2**100, -(2**70), 7]})
    wire = msgpack.unpackb(msgpack.packb(outcome.to_wire()))
    assert wire["value"] == {"fib": [str(2**100), str(-(2**70)), 7]}  # readable as is
    assert Outcome.from_wire(wire) == outcome  # exact through from_wire


@pytest.mark.parametrize(
    "bad",
    [None, [], {}, {"status": "exploded"}, {"status": "failed", "error": 3},
     {"status": "succeeded", "value_json": "{not json"},
     {"status": "succeeded", "duration_s": "long"}],
)
def test_outcome_from_wire_rejects_garbage(bad):
    with pytest.raises(ValueError):
        Outcome.from_wire(bad)


def submitted(executor, run_id, spec, timeout_s=None):
    """Start a run with submit(); a future for the outcome its callback gets."""
    outcome = asyncio.get_running_loop().create_future()
    executor.submit(run_id, spec, timeout_s, outcome.set_result)
    return outcome


def test_submit_calls_back_with_each_outcome():
    async def body(executor):
        ok = submitted(executor, "ok", builtin("echo", "hi"))
        bad = submitted(executor, "bad", {"kind": "builtin"})  # refused before it starts
        late = submitted(executor, "late", builtin("sleep", 5), timeout_s=0.2)
        return await asyncio.wait_for(asyncio.gather(ok, bad, late), 10)

    ok, bad, late = with_executor(body, slots=2)
    assert (ok.status, ok.value) == ("succeeded", "hi")
    assert bad.status == "failed" and "invalid task spec" in bad.error
    assert late.status == "timeout" and "timed out after 0.2 s" in late.error


def test_submit_then_cancel_calls_back_cancelled():
    async def body(executor):
        outcome = submitted(executor, "long", builtin("sleep", 30))
        await wait_for(lambda: executor.busy == 1, what="the task to start")
        assert executor.cancel("long")
        return await asyncio.wait_for(outcome, 10)

    outcome = with_executor(body)
    assert outcome.status == "cancelled"


def test_python_path_comes_first_and_an_edited_module_is_picked_up(tmp_path):
    module = tmp_path / "lab_jobs_for_test.py"
    module.write_text("def version():\n    return 1\n")

    async def body(ex):
        first = await ex.run("1", python("lab_jobs_for_test:version"), None)
        module.write_text("def version():\n    return 2\n\ndef added():\n    return 'new'\n")
        os.utime(module, ns=(time.time_ns(), time.time_ns() + 10**9))  # a later mtime, whatever the clock's grain
        second = await ex.run("2", python("lab_jobs_for_test:version"), None)
        added = await ex.run("3", python("lab_jobs_for_test:added"), None)
        module.write_text("def version(:\n")  # a broken edit: an import error, the worker lives on
        os.utime(module, ns=(time.time_ns(), time.time_ns() + 2 * 10**9))
        broken = await ex.run("4", python("lab_jobs_for_test:version"), None)
        return first, second, added, broken

    first, second, added, broken = with_executor(body, python_path=(str(tmp_path),))
    assert (first.value, second.value, added.value) == (1, 2, "new")
    assert broken.status == "failed" and broken.error.startswith("SyntaxError: cannot reload")

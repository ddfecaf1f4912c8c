"""The driver says nothing of a batch before the batch's journal write is durable."""

from __future__ import annotations

import asyncio
import concurrent.futures
from types import SimpleNamespace

from p2pq.core.events import PersistTerm, Send, Step
from p2pq.core.types import Config, Term
from p2pq.net.clock import ProtocolClock
from p2pq.net.node import Lateness, NodeRuntime, StepLoad


def released_early(waits: bool) -> tuple[bool, list]:
    """Queue two batches behind a held commit; True if anything was carried out before it."""
    async def scenario():
        carried: list = []
        held: concurrent.futures.Future = concurrent.futures.Future()
        driver = SimpleNamespace(clock=ProtocolClock(), store=SimpleNamespace(waits=waits), _outbox=asyncio.Queue(),
                                 _carry_out=carried.append, failure=None)
        driver._outbox.put_nowait((held, ["first"]))
        driver._outbox.put_nowait((None, ["second"]))  # a batch with nothing to write still waits its turn
        release = asyncio.ensure_future(NodeRuntime._release(driver))
        await asyncio.sleep(0.05)
        early = bool(carried)
        held.set_result(None)
        for _ in range(100):
            await asyncio.sleep(0.01)
            if len(carried) == 2:
                break
        release.cancel()
        return early, carried
    return asyncio.run(scenario())


def test_written_and_fsync_carry_out_a_batch_only_after_its_commit_and_in_order():
    early, carried = released_early(waits=True)
    assert not early
    assert carried == [["first"], ["second"]]


def test_memory_does_not_wait_for_the_journal():
    early, carried = released_early(waits=False)
    assert early and carried == [["first"], ["second"]]


def test_a_failed_write_stops_the_node_before_anything_of_its_batch_is_said(tmp_path):
    async def scenario():
        carried, fatal = [], []
        failed: concurrent.futures.Future = concurrent.futures.Future()
        failed.set_exception(OSError("disk full"))
        driver = SimpleNamespace(clock=ProtocolClock(), store=SimpleNamespace(waits=True, path=tmp_path / "journal.db"),
                                 _outbox=asyncio.Queue(), _carry_out=carried.append, failure=None,
                                 on_fatal=lambda: fatal.append(True))
        driver._journal_failed = lambda exc: NodeRuntime._journal_failed(driver, exc)
        driver._stop_for = lambda reason: NodeRuntime._stop_for(driver, reason)
        driver._outbox.put_nowait((failed, [Send("n2", object())]))
        await asyncio.wait_for(NodeRuntime._release(driver), 1)
        return carried, fatal, driver.failure
    carried, fatal, failure = asyncio.run(scenario())
    assert carried == [] and fatal == [True]
    assert "disk full" in str(failure) and "stops rather than acknowledge" in str(failure)


def pumped(waits: bool, held: concurrent.futures.Future | None = None) -> tuple[list, list, Exception | None]:
    """One core step through `_pump` behind a commit.

    Returns what was carried out before `held` resolved, what after, and the
    driver's failure.
    """
    async def scenario():
        carried: list = []
        nonlocal held
        held = held or concurrent.futures.Future()
        step = Step((PersistTerm(Term(1, "n1")),), (Send("n2", object()),))
        driver = SimpleNamespace(clock=ProtocolClock(), store=SimpleNamespace(waits=waits, write=lambda batch: held,
                                                       path="journal.db"),
                                 core=SimpleNamespace(handle_batch=lambda events, now: step),
                                 _outbox=asyncio.Queue(), _carry_out=carried.append, failure=None,
                                 _events=["an event"], _wake=asyncio.Event(), on_fatal=None,
                                 settings=SimpleNamespace(config=Config()), _tick_due=None,
                                 tick_lateness=Lateness())
        driver._journal_failed = lambda exc: NodeRuntime._journal_failed(driver, exc)
        driver._stop_for = lambda reason: NodeRuntime._stop_for(driver, reason)
        tasks = [asyncio.ensure_future(NodeRuntime._pump(driver)),
                 asyncio.ensure_future(NodeRuntime._release(driver))]
        driver._wake.set()
        await asyncio.sleep(0.05)
        before = list(carried)
        if not held.done():
            held.set_result(None)
        for _ in range(100):
            await asyncio.sleep(0.01)
            if carried:
                break
        for task in tasks:
            task.cancel()
        return before, carried, driver.failure
    return asyncio.run(scenario())


def test_the_pump_holds_a_step_until_its_commit_in_written_and_fsync_modes():
    before, after, _ = pumped(waits=True)
    assert before == [] and len(after) == 1 and isinstance(after[0][-1], Send)


def test_the_pump_sends_a_memory_mode_step_at_once():
    before, _, _ = pumped(waits=False)
    assert len(before) == 1


def test_the_pump_sends_a_step_at_once_when_its_commit_is_already_done():
    committed: concurrent.futures.Future = concurrent.futures.Future()
    committed.set_result(None)  # `written`: the store committed inside write()
    before, _, failure = pumped(waits=True, held=committed)
    assert failure is None
    assert len(before) == 1 and isinstance(before[0][-1], Send)


def test_the_pump_stops_the_node_and_says_nothing_when_its_commit_failed():
    failed: concurrent.futures.Future = concurrent.futures.Future()
    failed.set_exception(OSError("disk full"))
    before, after, failure = pumped(waits=True, held=failed)
    assert before == [] and after == []
    assert "disk full" in str(failure)


def test_steps_linger_only_under_load():
    load = StepLoad()
    for _ in range(100):
        load.took(1)  # a lone client: one event per step
    assert not load.busy
    for _ in range(10):
        load.took(8)  # results, dispatches and acks arriving together
    assert load.busy
    for _ in range(30):
        load.took(1)
    assert not load.busy  # the load went away: no more waiting


def test_a_step_takes_a_bounded_number_of_records_and_every_small_event():
    from p2pq.core.events import MessageReceived, TimerFired
    from p2pq.core.messages import StateOffer
    from p2pq.net.node import STEP_RECORDS, next_step
    part = StateOffer(Term(1, "n1"), tuple(range(1024)), ())  # records are only counted here
    backlog = [MessageReceived("n2", part) for _ in range(10)] + [TimerFired("tick")]
    step, rest = next_step(backlog)
    assert step[-1] == TimerFired("tick")
    assert sum(len(e.message.records) for e in step[:-1]) <= STEP_RECORDS and len(step) > 1
    assert step[:-1] + rest == backlog[:10]  # in order, nothing lost
    huge = [MessageReceived("n2", StateOffer(Term(1, "n1"), tuple(range(STEP_RECORDS * 2)), ()))]
    assert next_step(huge) == (huge, [])
    held = next_step(backlog, hold_timers=True)
    assert held[0] == step[:-1] and held[1] == rest + [TimerFired("tick")]


def test_after_a_stall_timers_wait_for_the_messages_that_queued_meanwhile():
    # The first step blocks the loop for 0.3 s (a big offer being encoded). The
    # heartbeats that arrived meanwhile reach the pump only once a reader has had
    # its turn, 50 ms after the tick timer that came due during the stall.
    import time

    from p2pq.core.events import MessageReceived, TimerFired

    async def scenario():
        seen: list = []
        driver = SimpleNamespace(clock=ProtocolClock(), store=SimpleNamespace(waits=False, write=lambda b: None),
                                 _outbox=asyncio.Queue(), _carry_out=lambda c: None, failure=None,
                                 _wake=asyncio.Event(), _events=[],
                                 settings=SimpleNamespace(config=Config()), _tick_due=None,
                                 tick_lateness=Lateness())

        def handle_batch(events, now):
            seen.extend(events)
            if events == ["big offer"]:
                time.sleep(0.3)
            return Step()

        driver.core = SimpleNamespace(handle_batch=handle_batch)
        post = lambda event: (driver._events.append(event), driver._wake.set())  # noqa: E731
        pump = asyncio.ensure_future(NodeRuntime._pump(driver))
        post("big offer")
        await asyncio.sleep(0.01)  # the stall happens here
        post(TimerFired("tick"))
        await asyncio.sleep(0.05)
        post(MessageReceived("n3", "heartbeat"))
        for _ in range(100):
            await asyncio.sleep(0.01)
            if TimerFired("tick") in seen:
                break
        pump.cancel()
        return seen

    seen = asyncio.run(scenario())
    assert seen == ["big offer", MessageReceived("n3", "heartbeat"), TimerFired("tick")]

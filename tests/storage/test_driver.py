"""The driver says nothing of a batch before the batch's journal write is durable."""

from __future__ import annotations

import asyncio
import concurrent.futures
from types import SimpleNamespace

from p2pq.core.events import Send
from p2pq.net.node import NodeRuntime


def released_early(waits: bool) -> tuple[bool, list]:
    """Queue two batches behind a held commit; True if anything was carried out before it."""
    async def scenario():
        carried: list = []
        held: concurrent.futures.Future = concurrent.futures.Future()
        driver = SimpleNamespace(store=SimpleNamespace(waits=waits), _outbox=asyncio.Queue(),
                                 _carry_out_logged=carried.append, failure=None)
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
        driver = SimpleNamespace(store=SimpleNamespace(waits=True, path=tmp_path / "journal.db"),
                                 _outbox=asyncio.Queue(), _carry_out_logged=carried.append, failure=None,
                                 on_fatal=lambda: fatal.append(True))
        driver._journal_failed = lambda exc: NodeRuntime._journal_failed(driver, exc)
        driver._outbox.put_nowait((failed, [Send("n2", object())]))
        await asyncio.wait_for(NodeRuntime._release(driver), 1)
        return carried, fatal, driver.failure
    carried, fatal, failure = asyncio.run(scenario())
    assert carried == [] and fatal == [True]
    assert "disk full" in str(failure) and "stops rather than acknowledge" in str(failure)

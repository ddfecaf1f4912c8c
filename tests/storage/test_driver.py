"""The driver writes a batch's durable state before it says anything of that batch."""

from __future__ import annotations

import asyncio
import concurrent.futures
from types import SimpleNamespace

from p2pq.core.events import ForgetRecords, PersistRecords, PersistTerm, Send
from p2pq.core.types import Term
from p2pq.net.node import NodeRuntime

from journal_records import record


class HeldStore:
    """A store whose commits finish only when the test says so."""

    def __init__(self, waits: bool) -> None:
        self.waits, self.batches = waits, []
        self.future: concurrent.futures.Future = concurrent.futures.Future()

    def write(self, batch):
        self.batches.append(batch)
        return self.future


COMMANDS = [PersistTerm(Term(2, "n1")), PersistRecords((record("a"),)), ForgetRecords(("old",)),
            Send("n2", object())]


def persist(store: HeldStore) -> bool:
    """Run _persist while the commit is held; True if it returned before the commit."""
    async def scenario() -> bool:
        task = asyncio.ensure_future(NodeRuntime._persist(SimpleNamespace(store=store), COMMANDS))
        await asyncio.sleep(0.05)
        early = task.done()
        store.future.set_result(None)
        await asyncio.wait_for(task, 1)
        return early
    return asyncio.run(scenario())


def test_written_and_fsync_wait_for_the_commit_of_the_whole_batch_in_one_write():
    store = HeldStore(waits=True)
    assert persist(store) is False
    [batch] = store.batches  # one write per core step: the group commit
    assert (batch.term, set(batch.records), batch.forgotten) == (Term(2, "n1"), {"a"}, {"old"})


def test_memory_does_not_wait_for_the_journal():
    assert persist(HeldStore(waits=False)) is True

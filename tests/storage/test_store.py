"""The journal (p2pq/net/storage.py): round trips, batches, group commit, corruption, failures."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from p2pq.core.events import ForgetRecords, PersistRecords, PersistTerm, Send
from p2pq.core.types import Term
from p2pq.net.storage import (DURABILITIES, JOURNAL_FILE, SCHEMA_VERSION, Batch, SqliteStore,
                              StorageError, _pack_row, batch_of, open_store)

from journal_records import record



def reopen(path, durability: str = "written") -> SqliteStore:
    store = open_store(path, durability)
    assert store.corruption is None
    return store


@pytest.mark.parametrize("durability", DURABILITIES)
def test_records_term_identity_and_tombstones_survive_a_reopen(tmp_path, durability):
    store = open_store(tmp_path, durability)
    assert store.load().records == []
    store.save_records([record("a"), record("b"), record("c")])
    store.save_records([record("a", ended=True)])  # a newer copy replaces the row
    store.forget(["b"])
    store.save_term(Term(4, "n2"))
    store.save_term(Term(3, "n9"))  # an older term never overwrites a newer one (G3)
    store.save_identity("n1", 7)
    store.close()
    restored = reopen(tmp_path).load()
    assert sorted(restored.records, key=lambda r: r.task_id) == [record("a", ended=True), record("c")]
    assert restored.forgotten == ["b"]
    assert restored.term == Term(4, "n2")
    assert (restored.node_id, restored.priority) == ("n1", 7)


def test_a_batch_keeps_the_later_command_about_a_task():
    later_forget = batch_of([PersistRecords((record("a"),)), ForgetRecords(("a",))])
    later_keep = batch_of([ForgetRecords(("a",)), PersistRecords((record("a"),))])
    assert (set(later_forget.records), later_forget.forgotten) == (set(), {"a"})
    assert (set(later_keep.records), later_keep.forgotten) == ({"a"}, set())


def test_batch_of_takes_the_durable_commands_only():
    batch = batch_of([Send("n2", object()), PersistTerm(Term(2, "n1")), PersistTerm(Term(1, "n3")),
                      PersistRecords((record("a"),)), ForgetRecords(("z",))])
    assert batch.term == Term(2, "n1") and set(batch.records) == {"a"} and batch.forgotten == {"z"}
    assert not batch_of([Send("n2", object())])


def test_one_batch_is_one_transaction(tmp_path):
    store = open_store(tmp_path, "fsync")
    batch = batch_of([PersistTerm(Term(1, "n1")),
                      PersistRecords(tuple(record(f"t{i}", seq=i) for i in range(500)))])
    before = store.commits
    store.write(batch).result()
    assert store.commits - before == 1 and store.rows_written == 500
    store.close()


def test_batches_queued_while_the_writer_is_busy_share_one_transaction(tmp_path):
    store = open_store(tmp_path, "fsync")
    release, entered = threading.Event(), threading.Event()
    apply = store._apply

    def slow_apply(batch):
        entered.set()
        release.wait(5)
        apply(batch)
    store._apply = slow_apply
    first = store.write(batch_of([PersistRecords((record("first"),))]))
    entered.wait(5)
    queued = [store.write(batch_of([PersistRecords((record(f"q{i}", seq=i),))])) for i in range(20)]
    release.set()
    for future in [first, *queued]:
        future.result(5)
    assert (store.commits, store.batches, store.rows_written) == (2, 21, 21)
    store.close()


def test_a_second_node_on_the_same_data_dir_is_refused(tmp_path):
    store = open_store(tmp_path, "written")
    store.save_term(Term(1, "n1"))
    with pytest.raises(StorageError, match="in use by another process"):
        open_store(tmp_path, "written")
    store.close()


def test_a_journal_from_a_newer_p2pq_is_refused_not_moved(tmp_path):
    open_store(tmp_path, "written").close()
    db = sqlite3.connect(tmp_path / JOURNAL_FILE)
    with db:
        db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?, ?)", _pack_row("schema", SCHEMA_VERSION + 1))
    db.close()
    with pytest.raises(StorageError, match="newer p2pq"):
        open_store(tmp_path, "written")
    assert (tmp_path / JOURNAL_FILE).exists()


def test_after_a_failed_write_every_later_write_fails(tmp_path):
    store = open_store(tmp_path, "written")
    store._db.close()  # the disk went away, as far as the store can tell
    with pytest.raises(sqlite3.ProgrammingError):
        store.write(Batch(term=Term(1, "n1"))).result(5)
    with pytest.raises(sqlite3.ProgrammingError):  # never written after a failure
        store.write(Batch(term=Term(2, "n1"))).result(5)
    assert store.failure is not None
    store._queue.put(None)
    store._thread.join(5)


def test_a_waiter_that_gives_up_does_not_stop_the_write_or_the_writer(tmp_path):
    store = open_store(tmp_path, "written")
    release = threading.Event()
    apply = store._apply
    store._apply = lambda batch: (release.wait(5), apply(batch))
    busy = store.write(batch_of([PersistRecords((record("busy"),))]))
    abandoned = store.write(batch_of([PersistRecords((record("abandoned"),))]))
    assert abandoned.cancel()  # e.g. the node's pump was cancelled at shutdown
    release.set()
    busy.result(5)
    store.save_records([record("after")])
    store.close()
    held = {r.task_id for r in reopen(tmp_path).load().records}
    assert held == {"busy", "abandoned", "after"}

"""The journal (p2pq/net/storage.py): round trips, batches, group commit, corruption, failures."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from p2pq.core.events import ForgetRecords, PersistRecords, PersistTerm, Send
from p2pq.core.messages import record_to_wire
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
    store.save_term(Term(3, "n9"))
    store.save_term(Term(4, "n2"))  # the latest (the core persists terms only as they grow)
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


def test_batch_of_folds_a_steps_durable_commands_and_refuses_any_other():
    batch = batch_of([PersistTerm(Term(1, "n3")), PersistTerm(Term(2, "n1")),
                      PersistRecords((record("a"),)), ForgetRecords(("z",))])
    assert batch.term == Term(2, "n1")  # the latest: the core persists terms as they grow
    assert set(batch.records) == {"a"} and batch.forgotten == {"z"}
    assert not batch_of([])
    with pytest.raises(TypeError, match="does not keep Send"):
        batch_of([PersistTerm(Term(3, "n1")), Send("n2", object())])


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


@pytest.mark.parametrize("durability", DURABILITIES)
def test_after_a_failed_write_every_later_write_fails(tmp_path, durability):
    store = open_store(tmp_path, durability)
    store._db.close()  # the disk went away, as far as the store can tell
    with pytest.raises(sqlite3.ProgrammingError):
        store.write(Batch(term=Term(1, "n1"))).result(5)
    with pytest.raises(sqlite3.ProgrammingError):  # never written after a failure
        store.write(Batch(term=Term(2, "n1"))).result(5)
    assert store.failure is not None
    if store._thread is not None:
        store._queue.put(None)
        store._thread.join(5)


def test_written_commits_before_write_returns(tmp_path):
    store = open_store(tmp_path, "written")
    done = store.write(batch_of([PersistRecords((record("a"),))]))
    assert done.done() and done.result() is None and store.commits == 1
    assert store._thread is None  # no hand-off to a thread for a commit that only reaches the OS
    store.close()


def test_rows_are_keyed_in_first_write_order_and_updated_in_place(tmp_path):
    store = open_store(tmp_path, "written")
    store.save_records([record("z"), record("a")])
    store.save_records([record("m"), record("z", ended=True)])
    store.forget(["a"])
    store.close()
    store = reopen(tmp_path)
    store.save_records([record("m", ended=True), record("b")])  # the key map survives a reopen
    rows = store._db.execute("SELECT n, task_id FROM records ORDER BY n").fetchall()
    store.close()
    assert [task_id for _, task_id in rows] == ["z", "m", "b"]
    assert rows[-1][0] > rows[-2][0]


def test_a_schema_1_journal_is_upgraded_with_its_rows(tmp_path):
    db = sqlite3.connect(tmp_path / JOURNAL_FILE)
    with db:
        db.executescript("""
            CREATE TABLE meta (key TEXT PRIMARY KEY, body BLOB NOT NULL, crc INTEGER NOT NULL);
            CREATE TABLE records (task_id TEXT PRIMARY KEY, body BLOB NOT NULL, crc INTEGER NOT NULL);
            CREATE TABLE forgotten (n INTEGER PRIMARY KEY, task_id TEXT UNIQUE NOT NULL, crc INTEGER NOT NULL);
        """)
        db.executemany("INSERT INTO meta VALUES (?, ?, ?)", [_pack_row("schema", 1), _pack_row("term", [3, "n1"])])
        db.executemany("INSERT INTO records VALUES (?, ?, ?)",
                       [_pack_row(t, record_to_wire(record(t))) for t in ("b", "a")])
    db.close()
    store = reopen(tmp_path)
    restored = store.load()
    store.save_records([record("a", ended=True), record("c")])
    store.close()
    assert restored.term == Term(3, "n1")
    assert sorted(r.task_id for r in restored.records) == ["a", "b"]
    again = reopen(tmp_path)
    assert sorted((r.task_id, r.state.value) for r in again.load().records) == [
        ("a", "succeeded"), ("b", "running"), ("c", "running")]
    assert again._db.execute("SELECT body FROM meta WHERE key = 'schema'").fetchone()[0] == _pack_row(
        "schema", SCHEMA_VERSION)[1]
    again.close()


def test_a_waiter_that_gives_up_does_not_stop_the_write_or_the_writer(tmp_path):
    store = open_store(tmp_path, "fsync")
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

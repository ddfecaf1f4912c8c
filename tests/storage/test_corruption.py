"""A damaged journal is detected at open, reported in one line, moved aside, never served."""

from __future__ import annotations

import logging
import shutil
import sqlite3

import pytest

from p2pq.core.types import Term
from p2pq.net.storage import JOURNAL_FILE, open_store

from journal_records import record


@pytest.fixture
def journal(tmp_path):
    """A closed journal holding 50 records, a term and an identity."""
    store = open_store(tmp_path, "written")
    store.save_records([record(f"task-{i:03d}", ended=i % 2 == 0, seq=i) for i in range(50)])
    store.save_term(Term(6, "n3"))
    store.save_identity("n3", 3)
    store.close()
    return tmp_path / JOURNAL_FILE


def reopen_expecting_corruption(path, reason: str, caplog):
    with caplog.at_level(logging.ERROR, logger="p2pq.storage"):
        store = open_store(path.parent, "written")
    lines = [r.getMessage() for r in caplog.records if "is corrupted" in r.getMessage()]
    assert len(lines) == 1, lines
    assert reason in lines[0] and "moved it to journal.db.corrupt-" in lines[0]
    assert "recover the cluster's tasks from its peers" in lines[0]
    assert "\n" not in lines[0]
    assert list(path.parent.glob("journal.db.corrupt-*")), "the bad journal is kept for a post-mortem"
    restored = store.load()
    assert restored.records == []  # nothing unverified is ever served
    return store, restored


def test_a_torn_header_is_reported_and_the_node_starts_empty(journal, caplog):
    data = bytearray(journal.read_bytes())
    data[:100] = b"\0" * 100  # the write of the first page was torn
    journal.write_bytes(data)
    store, restored = reopen_expecting_corruption(journal, "file is not a database", caplog)
    assert restored.term == Term(0, "")
    store.save_records([record("after")])  # the fresh journal works
    store.close()
    assert [r.task_id for r in open_store(journal.parent, "written").load().records] == ["after"]


def test_a_truncated_file_is_detected(journal, caplog):
    data = journal.read_bytes()
    journal.write_bytes(data[: len(data) // 2 + 10])
    store, _ = reopen_expecting_corruption(journal, "", caplog)
    store.close()


def test_a_flipped_byte_in_a_record_fails_its_checksum_and_keeps_term_and_identity(journal, caplog):
    data = bytearray(journal.read_bytes())
    at = data.index(b"task-017-a")  # the attempt id inside the record's body
    data[at] ^= 0x20
    journal.write_bytes(data)
    store, restored = reopen_expecting_corruption(journal, "checksum mismatch", caplog)
    assert restored.term == Term(6, "n3")  # a verified term is kept: terms only grow (G3)
    assert (restored.node_id, restored.priority) == ("n3", 3)
    store.close()


def test_a_row_rewritten_behind_the_stores_back_is_detected(journal, caplog):
    db = sqlite3.connect(journal)
    with db:
        db.execute("UPDATE records SET body = x'93a178c0c0' WHERE task_id = 'task-005'")
    db.close()
    store, _ = reopen_expecting_corruption(journal, "checksum mismatch in the row of 'task-005'", caplog)
    store.close()


def test_a_torn_tail_of_the_wal_loses_only_the_uncommitted_write(tmp_path, caplog):
    """SQLite checksums WAL frames: a torn last frame is dropped, earlier commits stay."""
    live = tmp_path / "live"
    live.mkdir()
    store = open_store(live, "written")
    store.save_records([record("committed")])
    # A copy taken while the node runs is what a kill -9 leaves behind (journal + WAL).
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    for name in (JOURNAL_FILE, JOURNAL_FILE + "-wal"):
        shutil.copy(live / name, crashed / name)
    store.close()
    with open(crashed / (JOURNAL_FILE + "-wal"), "ab") as wal:
        wal.write(b"\x37\x7f\x06\x82" + b"\xaa" * 3000)  # half a frame of a write that never finished
    with caplog.at_level(logging.ERROR, logger="p2pq.storage"):
        recovered = open_store(crashed, "written")
    assert recovered.corruption is None
    assert [r.task_id for r in recovered.load().records] == ["committed"]
    recovered.close()

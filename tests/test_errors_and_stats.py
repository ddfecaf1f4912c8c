"""One error-code catalogue and one percentile for every part of p2pq."""

from __future__ import annotations

import math

import pytest

from p2pq.client import P2PQError
from p2pq.core.errors import HTTP_STATUS, RETRYABLE, ErrorCode, acknowledged_ids, error, submit_ack
from p2pq.stats import percentile


def test_error_codes_are_plain_strings_on_the_wire_and_each_has_one_meaning():
    body = error(ErrorCode.NO_LEADER, "no leader yet")
    assert body == {"ok": False, "error": "no_leader", "message": "no leader yet"}
    assert type(body["error"]) is str  # msgpack and JSON carry it as text
    assert body["error"] in RETRYABLE and "invalid" not in RETRYABLE
    assert HTTP_STATUS["no_leader"] == 503 and HTTP_STATUS[ErrorCode.UNKNOWN_TASK] == 404
    assert all(code in ErrorCode for code in HTTP_STATUS) and all(code in HTTP_STATUS for code in RETRYABLE)
    with pytest.raises(ValueError):
        error("no_such_code", "x")


def test_a_submit_acknowledgment_is_read_by_its_shape_not_guessed():
    ack = submit_ack(["a", "b"], True, "n3", "2@n3")
    assert acknowledged_ids(ack) == ("a", "b")
    for other in (error(ErrorCode.INVALID, "bad"), {"ok": True, "task": {}}, {"ok": 1, "ids": ["a"]},
                  {"ok": True, "ids": "a"}, None, ["ids"]):
        assert acknowledged_ids(other) == ()


def test_the_client_s_codes_come_from_the_catalogue():
    exc = P2PQError(ErrorCode.TIMEOUT, "gave up")
    assert exc.code == "timeout" and exc.code in ErrorCode


@pytest.mark.parametrize("values, p, expected", [
    ([1.0, 2.0, 3.0, 4.0], 50, 2.0), ([4.0, 1.0, 3.0, 2.0], 50, 2.0), ([1.0, 2.0, 3.0, 4.0], 75, 3.0),
    ([5.0], 99, 5.0), (list(range(1, 101)), 99, 99), (list(range(1, 101)), 100, 100), ([3.0, 1.0], 0, 1.0)])
def test_percentile_is_the_nearest_rank(values, p, expected):
    assert percentile(values, p) == expected


def test_the_percentile_of_nothing_is_nan():
    assert math.isnan(percentile([], 50))

"""The simulator's edge: the wire codec in the loop, the hostile client, and the checks that judge them."""

from __future__ import annotations

import random

import pytest

import p2pq.sim.world as world_module
from p2pq.core.messages import DecodeError, FinishedAck, Query, decode_client_request
from p2pq.core.node import ON_MESSAGE
from p2pq.core.types import Role
from p2pq.net.framing import decode_body, encode_frame
from p2pq.sim.hostile import hostile_request
from p2pq.sim.runner import run
from p2pq.sim.scenarios import SCENARIOS


def test_every_hostile_request_breaks_a_rule():
    rng = random.Random(1)
    for n in range(3000):
        broken, wire = hostile_request(rng, n)
        try:
            frame = encode_frame(wire)
        except (OverflowError, TypeError, ValueError):
            continue  # msgpack cannot even carry it: the client refuses it before sending
        with pytest.raises(DecodeError):
            decode_client_request(decode_body(frame[4:]))


def test_a_run_with_the_codec_and_the_hostile_client_is_clean():
    result = run("leader-crash", SCENARIOS["leader-crash"], 3)
    r = result.report
    assert result.ok, result.problems()
    assert r.hostile_sent > 20 and r.hostile_accepted == 0
    assert r.internal_errors == 0 and r.codec_errors == 0
    assert r.acknowledged > 50 and r.lost == 0


def test_the_checker_fails_a_run_whose_edge_lets_a_hostile_request_through(monkeypatch):
    monkeypatch.setattr(world_module, "decode_client_request", lambda wire: Query("stats"))
    result = run("calm", SCENARIOS["calm"], 1)
    assert not result.ok and result.report.hostile_accepted > 0
    assert any("hostile request(s) not refused" in p for p in result.problems())


def test_the_checker_fails_a_run_in_which_the_codec_refuses_a_message(monkeypatch):
    real = world_module.from_wire

    def refuse_acks(wire):
        if wire["type"] == "finished_ack":
            raise DecodeError("finished_ack: refused on purpose")
        return real(wire)
    monkeypatch.setattr(world_module, "from_wire", refuse_acks)
    result = run("calm", SCENARIOS["calm"], 1)
    assert result.report.codec_errors > 0 and not result.ok


def test_the_checker_fails_a_run_with_an_internal_error_yet_the_cluster_goes_on(monkeypatch):
    monkeypatch.setitem(ON_MESSAGE[Role.MEMBER], FinishedAck, lambda core, sender, msg: 1 / 0)
    result = run("calm", SCENARIOS["calm"], 1)
    assert result.report.internal_errors > 0 and not result.ok
    assert result.report.lost == 0 and result.drained  # one failing handler took nothing else with it


def test_the_codec_changes_nothing_the_protocol_sees():
    with_codec = run("leader-crash", SCENARIOS["leader-crash"], 5)
    assert with_codec.ok
    original = world_module.World.__init__

    def plain(self, *args, **kwargs):
        original(self, *args, **{**kwargs, "codec": False})
    world_module.World.__init__ = plain
    try:
        without = run("leader-crash", SCENARIOS["leader-crash"], 5)
    finally:
        world_module.World.__init__ = original
    assert without.trace_hash == with_codec.trace_hash  # the codec changes nothing the protocol sees

"""The mDNS records and how a found one is judged, without any multicast (net/mdns.py)."""

from __future__ import annotations

import ipaddress

import pytest

from p2pq.net.mdns import DiscoveredPeer, Ignored, judge, normalize_fingerprint, pick_host, properties

FP = "ab" * 32
OURS = dict(fingerprint=FP, version=3, own_id="n1")


def record(**changes) -> dict:
    props = properties("n2", 7, 3, FP, "c0ffee01")
    props.update(changes)
    return {k: v for k, v in props.items() if v is not None}


def test_our_own_records_judged_by_a_peer_are_a_peer():
    peer = judge(record(), 7470, ["10.0.0.2"], **OURS)
    assert peer == DiscoveredPeer(node_id="n2", host="10.0.0.2", port=7470, priority=7, version=3)


@pytest.mark.parametrize("changes, port, key", [
    ({"fp": "cd" * 32}, 7470, f"fp:{'cd' * 32}"),       # another cluster
    ({"fp": None}, 7470, "fp:None"),
    ({"v": "x"}, 7470, "v"),                            # not a number
    ({"v": "4"}, 7470, "v:4"),                          # another protocol version
    ({"prio": "high"}, 7470, "malformed"),
    ({"id": ""}, 7470, "malformed"),
    ({}, 0, "malformed"),
    ({}, 70000, "malformed"),
    ({"id": "n1"}, 7470, "own-id"),                     # a clone of this machine, or a restart's echo
])
def test_a_record_that_is_not_a_peer_says_why(changes, port, key):
    verdict = judge(record(**changes), port, ["10.0.0.2"], **OURS)
    assert isinstance(verdict, Ignored) and verdict.key == key and verdict.why
    assert verdict.own_id is (key == "own-id")


def test_a_fingerprint_matches_whatever_its_case_and_colons():
    assert normalize_fingerprint("AB:cd:EF") == "abcdef"
    assert isinstance(judge(record(fp=":".join(["AB"] * 32)), 7470, ["10.0.0.2"], **OURS), DiscoveredPeer)


def test_a_record_without_a_usable_address_is_ignored():
    verdict = judge(record(), 7470, ["bogus", "224.0.0.251", "0.0.0.0"], **OURS)
    assert verdict == Ignored("no-address", "no usable address")


def test_pick_host_prefers_same_subnet_then_routable_then_loopback():
    nets = [ipaddress.ip_network("10.1.0.0/16")]
    assert pick_host(["127.0.0.1", "192.168.5.5", "10.1.2.3"], nets) == "10.1.2.3"
    assert pick_host(["127.0.0.1", "192.168.5.5"], nets) == "192.168.5.5"
    assert pick_host(["fe80::1%2", "169.254.1.1", "127.0.0.1"], nets) == "169.254.1.1"
    assert pick_host(["127.0.0.1"], nets) == "127.0.0.1"
    assert pick_host(["bogus"], nets) is None
    # stable whatever the order the addresses come in
    assert pick_host(["192.168.5.9", "192.168.5.5"]) == pick_host(["192.168.5.5", "192.168.5.9"])

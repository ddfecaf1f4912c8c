"""Frames: 4-byte big-endian length + msgpack map with a str "type"."""

from __future__ import annotations

import asyncio
import struct

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pq.net.framing import (
    MAX_FRAME_BYTES,
    ConnectionClosed,
    FrameDecoder,
    FrameError,
    encode_frame,
    read_frame,
)

_scalars = (
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False) | st.text(max_size=20) | st.binary(max_size=20)
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=20,
)
_messages = st.builds(
    lambda type_, body: {**body, "type": type_},
    st.text(min_size=1, max_size=12),
    st.dictionaries(st.text(max_size=8), _values, max_size=6),
)


def _read_from(data: bytes, *, eof: bool = True, max_frame_bytes: int = MAX_FRAME_BYTES):
    """read_frame over a StreamReader holding data; fails rather than hangs."""

    async def go():
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        if eof:
            reader.feed_eof()
        return await asyncio.wait_for(read_frame(reader, max_frame_bytes), timeout=2)

    return asyncio.run(go())


@settings(max_examples=200, deadline=None)
@given(_messages)
def test_round_trip(message: dict) -> None:
    frame = encode_frame(message)
    assert struct.unpack(">I", frame[:4])[0] == len(frame) - 4
    assert _read_from(frame) == message
    decoded = list(FrameDecoder().feed(frame))
    assert decoded == [(message, len(frame))]


@settings(max_examples=50, deadline=None)
@given(st.lists(_messages, min_size=1, max_size=8), st.integers(1, 7))
def test_decoder_handles_any_chunking(messages: list[dict], chunk: int) -> None:
    stream = b"".join(encode_frame(m) for m in messages)
    decoder = FrameDecoder()
    out = []
    for i in range(0, len(stream), chunk):
        out.extend(m for m, _ in decoder.feed(stream[i:i + chunk]))
    assert out == messages
    assert decoder.buffered_bytes == 0


def test_oversized_length_prefix_is_rejected_before_reading_the_body() -> None:
    one_gib = struct.pack(">I", 1 << 30)
    # No body and no EOF: reading the body would hang until wait_for fails.
    with pytest.raises(FrameError, match=f"frame of {1 << 30} bytes exceeds the limit of {MAX_FRAME_BYTES}"):
        _read_from(one_gib, eof=False)
    with pytest.raises(FrameError, match="exceeds the limit of 100"):
        _read_from(encode_frame({"type": "x", "pad": "a" * 200}), max_frame_bytes=100)
    decoder = FrameDecoder()
    with pytest.raises(FrameError, match="exceeds the limit"):
        list(decoder.feed(one_gib))


def test_zero_length_frame_is_rejected() -> None:
    with pytest.raises(FrameError, match="empty frame"):
        _read_from(struct.pack(">I", 0), eof=False)


@pytest.mark.parametrize(
    "body, reason",
    [
        (b"\xc1\xc1\xc1", "undecodable"),                 # 0xc1 is never used by msgpack
        (b"\x92\x01", "undecodable"),                     # truncated array
        (msgpack.packb({"type": "x"}) + b"\x01", "undecodable"),  # trailing bytes
        (msgpack.packb([1, 2, 3]), "not a map"),
        (msgpack.packb("hello"), "not a map"),
        (msgpack.packb({"kind": "hello"}), "no str 'type'"),
        (msgpack.packb({"type": 7}), "no str 'type'"),
        (b"\xa2\xff\xfe", "undecodable"),                 # str with invalid UTF-8
    ],
)
def test_bad_bodies_are_frame_errors(body: bytes, reason: str) -> None:
    frame = struct.pack(">I", len(body)) + body
    with pytest.raises(FrameError, match=reason):
        _read_from(frame)
    with pytest.raises(FrameError, match=reason):
        list(FrameDecoder().feed(frame))


def test_eof_is_connection_closed() -> None:
    with pytest.raises(ConnectionClosed, match="between frames"):
        _read_from(b"")
    with pytest.raises(ConnectionClosed, match="middle of a frame"):
        _read_from(b"\x00\x00")
    frame = encode_frame({"type": "x"})
    with pytest.raises(ConnectionClosed, match="middle of a frame"):
        _read_from(frame[:-1])


def test_encode_refuses_what_the_receiver_would_refuse() -> None:
    with pytest.raises(FrameError, match="exceeds the limit of 64"):
        encode_frame({"type": "x", "blob": b"\0" * 100}, max_frame_bytes=64)


def test_frames_after_a_bad_one_are_not_delivered_but_earlier_ones_are() -> None:
    good = encode_frame({"type": "a"})
    bad = struct.pack(">I", 1) + b"\xc1"
    decoder = FrameDecoder()
    seen = []
    with pytest.raises(FrameError):
        for message, _ in decoder.feed(good + bad + good):
            seen.append(message)
    assert seen == [{"type": "a"}]

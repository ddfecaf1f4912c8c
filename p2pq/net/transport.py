"""The asyncio TLS transport: framed dicts between nodes, and from clients.

Theory of operation.
- Every connection is TLS 1.3 with mutual authentication against the
  cluster CA (pki.py). The dialer's first frame is a hello naming its node
  id, kind ("node" or "client") and protocol version; the acceptor checks it
  against the certificate and replies with its own hello, or with an
  {"type": "error"} frame and a close.
- Node to node, each side sends over the one connection it dialed itself
  (a _PeerLink, redialed with backoff, whose outbox survives reconnects), and
  reads what the other side sends over the connection the other side dialed.
  Two TCP connections per pair, but no tie-breaking races.
- Clients (the CLI, the Python API) only dial; their requests reach
  on_client_message with a ClientConnection that replies on the same socket.
- Sends never block: frames go to a bounded outbox and one writer task per
  connection flushes everything pending with a single write (coalescing).
  When an outbox is full the oldest frame is dropped; the protocol above
  tolerates loss, and a stale heartbeat is worth less than a fresh one.
- G5: any bad input (no TLS, foreign CA, garbage, oversized or missing
  hello, other protocol version, silence) closes only that connection, with
  a logged reason and a count in stats.refused; the server keeps accepting.
- Silence has limits: a handshake must finish within handshake_timeout_s,
  and an established connection we read from is dropped after
  idle_timeout_s without a byte. Senders keep their connections alive with
  a "keepalive" frame after KEEPALIVE_S of quiet (nodes on their links, clients
  on their channels, nodes to their clients); keepalives never reach the layers
  above. A client that hears nothing from its node for CLIENT_SILENCE_S (a
  machine that lost power sends no reset) drops the connection and goes on
  through another node.
- Every background task is in self._tasks and is cancelled by close().
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import random
import secrets
import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Coroutine

from p2pq import PROTOCOL_VERSION
from p2pq.net.framing import (
    MAX_FRAME_BYTES,
    ConnectionClosed,
    FrameDecoder,
    FrameError,
    encode_frame,
    read_frame,
)
from p2pq.net.pki import Identity, PKIError, client_context, peer_name, server_context

log = logging.getLogger("p2pq.net")

BACKOFF_INITIAL_S = 0.05
BACKOFF_MAX_S = 2.0
# A peer unreachable for a minute is dialed every 15-30 s, not every 2 s; its own
# hello (it came back and dialed us) wakes our link at once.
LONG_OUTAGE_S = 60.0
LONG_OUTAGE_BACKOFF_S = 30.0
MAX_QUEUED_FRAMES = 100_000
# While a link is down only the newest frames wait for it: the protocol resends
# what matters, and a dead peer's heartbeats must not pile up for hours.
MAX_UNSENT_FRAMES = 1024
_YIELD_EVERY_BYTES = 256 * 1024  # a reader yields to the loop after decoding this much
# One write per wakeup, but bounded so a huge backlog does not build one
# giant bytes object; 1 MiB still amortises the syscall over many frames.
_MAX_WRITE_BYTES = 1024 * 1024
_CLOSE_GRACE_S = 1.0
_READ_CHUNK_BYTES = 256 * 1024
KEEPALIVE_S = 10.0
IDLE_TIMEOUT_S = 45.0
PING = "keepalive"
CLIENT_SILENCE_S = 3 * KEEPALIVE_S  # a client drops a node it heard nothing from for this long

Message = dict[str, Any]


class TransportError(Exception):
    """A connection problem, with a one-line message meant for the user."""


class NodeUnreachable(TransportError):
    """Nothing (or no p2pq node) answers at the address."""


class ConnectionRefused(NodeUnreachable):
    """The machine answers and nothing listens on the port: no node there now (not worth waiting on)."""


class UnknownHost(NodeUnreachable):
    """The host name does not resolve."""


class TLSFailed(TransportError):
    """The TLS handshake failed: usually a node of another cluster."""


class HandshakeRejected(TransportError):
    """The node refused our hello (for example another protocol version)."""


class DuplicateId(HandshakeRejected):
    """Another node holds this node's id; `stop` is True when this node is the newer of the two."""

    def __init__(self, message: str, stop: bool) -> None:
        super().__init__(message)
        self.stop = stop


class RequestTimeout(TransportError):
    """No answer within the deadline."""


class ChannelClosed(TransportError):
    """The connection dropped while a request was outstanding."""


class _NotNeeded(Exception):
    """A seed turned out to be this node, or a peer we already have a link to."""


class _SlowPeer(Exception):
    """The peer stopped reading: our writes stayed blocked past the write timeout."""


class _IdlePeer(Exception):
    """The peer sent nothing, not even a keepalive ping, for the idle timeout."""


class _Refused(Exception):
    """An inbound connection refused during the handshake: reason key + message."""

    def __init__(self, reason: str, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.reason = reason
        self.detail = detail  # more keys for the error frame the dialer reads


@dataclass
class TransportStats:
    """Counters for dashboards and tests; `refused` counts dropped connections by reason."""

    frames_in: int = 0
    frames_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    writes: int = 0
    frames_dropped: int = 0
    dials: int = 0
    dial_failures: int = 0
    callback_errors: int = 0
    refused: collections.Counter[str] = field(default_factory=collections.Counter)


class _Outbox:
    """Encoded frames waiting for a writer; bounded, dropping the oldest when full."""

    def __init__(self, max_frames: int, stats: TransportStats) -> None:
        self._frames: collections.deque[bytes] = collections.deque(maxlen=max_frames)
        self._stats = stats
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self._frames)

    def put(self, frame: bytes) -> None:
        if len(self._frames) == self._frames.maxlen:
            self._stats.frames_dropped += 1  # the deque evicts the oldest
        self._frames.append(frame)
        self._ready.set()

    def put_bounded(self, frame: bytes, bound: int) -> None:
        """put(), keeping at most `bound` frames (the oldest dropped)."""
        while len(self._frames) >= bound:
            self._frames.popleft()
            self._stats.frames_dropped += 1
        self.put(frame)

    def put_front(self, older: _Outbox) -> None:
        """Prepend another outbox's (older) frames, dropping the oldest beyond the bound."""
        assert self._frames.maxlen is not None
        room = self._frames.maxlen - len(self._frames)
        keep = list(older._frames)[-room:] if room > 0 else []
        self._stats.frames_dropped += len(older._frames) - len(keep)
        self._frames.extendleft(reversed(keep))
        if self._frames:
            self._ready.set()

    async def take_batch(self, max_bytes: int, idle_s: float | None = None) -> list[bytes]:
        """Wait for frames, then take them all (up to about max_bytes); [] after idle_s of nothing."""
        while not self._frames:
            self._ready.clear()
            if idle_s is None:
                await self._ready.wait()
                continue
            try:
                async with asyncio.timeout(idle_s):
                    await self._ready.wait()
            except TimeoutError:
                return []
        batch, size = [], 0
        while self._frames and size < max_bytes:
            frame = self._frames.popleft()
            batch.append(frame)
            size += len(frame)
        return batch


class _Backoff:
    """Exponential backoff with jitter: 0.05 s doubling up to 2 s."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._next_s = BACKOFF_INITIAL_S

    def reset(self) -> None:
        self._next_s = BACKOFF_INITIAL_S

    def next_delay_s(self) -> float:
        delay_s = self._next_s
        self._next_s = min(BACKOFF_MAX_S, self._next_s * 2)
        # Jitter keeps a whole room of nodes from redialing in lockstep
        # after the same leader dies.
        return delay_s * self._rng.uniform(0.5, 1.0)


class _PeerLink:
    """Our outbound connection to one node, redialed with backoff until forgotten."""

    def __init__(self, peer_id: str | None, address: tuple[str, int] | None, outbox: _Outbox):
        self.peer_id = peer_id  # None for a seed until its hello names it
        self.address = address
        self.outbox = outbox
        self.wake = asyncio.Event()  # set_address: stop waiting/backing off
        self.task: asyncio.Task[None] | None = None
        self.connected = False
        self.connections = 0  # connections served (each got through its handshake)
        self.failing = False  # log the first dial failure of an outage only
        self.down_since: float | None = None  # loop time the current outage began


class ClientConnection:
    """A client's connection to this node; send() replies on it."""

    def __init__(self, name: str, remote: Any, outbox: _Outbox, max_frame_bytes: int) -> None:
        self.name = name  # the client certificate's CN
        self.remote = remote  # (host, port) of the client socket
        self.closed = False
        self._outbox = outbox
        self._max_frame_bytes = max_frame_bytes

    def send(self, message: Message) -> None:
        """Queue a reply; dropped if the client is gone. FrameError if too big."""
        frame = encode_frame(message, self._max_frame_bytes)
        if not self.closed:
            self._outbox.put(frame)

    def __repr__(self) -> str:
        state = " closed" if self.closed else ""
        return f"<ClientConnection {self.name} from {_fmt(self.remote)}{state}>"


class Transport:
    """TLS links between nodes plus a server for clients; see the module docstring."""

    def __init__(
        self,
        *,
        node_id: str,
        identity: Identity,
        host: str,
        port: int,
        hello_extra: Message,
        on_peer_message: Callable[[str, Message], None],
        on_peer_hello: Callable[[str, Message], None],
        on_client_message: Callable[[ClientConnection, Message], None],
        on_duplicate_id: Callable[[str], None] | None = None,
        on_peer_refused: Callable[[str], None] | None = None,
        protocol_version: int = PROTOCOL_VERSION,
        max_frame_bytes: int = MAX_FRAME_BYTES,
        handshake_timeout_s: float = 5.0,
        write_timeout_s: float = 10.0,
        idle_timeout_s: float = IDLE_TIMEOUT_S,
        keepalive_s: float = KEEPALIVE_S,
        max_queued_frames: int = MAX_QUEUED_FRAMES,
        rng: random.Random | None = None,
    ) -> None:
        if identity.kind != "node" or identity.name != node_id:
            # Peers check hello node_id == certificate CN; fail here, not there.
            raise ValueError(f"a Transport needs the node identity of {node_id!r}")
        self.node_id = node_id
        self.stats = TransportStats()
        self._host, self._port = host, port
        self._hello_extra = dict(hello_extra)
        self._on_peer_message = on_peer_message
        self._on_peer_hello = on_peer_hello
        self._on_client_message = on_client_message
        self._on_duplicate_id = on_duplicate_id
        self._on_peer_refused = on_peer_refused
        # Who we are beyond our id: a node with our id but another instance is a duplicate,
        # and the one that started later is the one that must stop.
        self._instance = secrets.token_hex(8)
        self._started_at = time.time()
        self._version = protocol_version
        self._max_frame_bytes = max_frame_bytes
        self._handshake_timeout_s = handshake_timeout_s
        self._write_timeout_s = write_timeout_s
        self._idle_timeout_s = idle_timeout_s
        self._keepalive_s = keepalive_s
        self._max_queued = max_queued_frames
        self._rng = rng or random.Random()
        self._server_ctx = server_context(identity)
        self._client_ctx = client_context(identity)
        self._server: asyncio.Server | None = None
        self._links: dict[str, _PeerLink] = {}
        self._seeds: dict[tuple[str, int], _PeerLink] = {}
        self._addresses: dict[str, tuple[str, int]] = {}
        self._inbound: dict[str, asyncio.Task[Any]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    # --- public API ------------------------------------------------------

    async def start(self) -> int:
        """Start listening; return the bound port (port=0 picks a free one)."""
        # TLS is started by hand in _on_accept (not ssl= here) so that a
        # failed handshake reaches our code, to be counted and logged (G5).
        self._server = await asyncio.start_server(self._on_accept, self._host, self._port)
        self._port = self._server.sockets[0].getsockname()[1]
        log.info("node %s listening on %s:%d", self.node_id, self._host, self._port)
        return self._port

    @property
    def port(self) -> int:
        return self._port

    async def close(self) -> None:
        """Stop listening, drop every connection and cancel every task we own."""
        self._closed = True
        if self._server is not None:
            self._server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        self._links.clear()
        self._seeds.clear()
        self._inbound.clear()

    def send(self, peer_id: str, message: Message) -> None:
        """Queue message for peer_id, dialing it if needed; never blocks.

        Call from the event loop's thread. Raises FrameError (at once, to
        the caller) if message has no str "type" or exceeds the frame limit.
        """
        frame = encode_frame(message, self._max_frame_bytes)
        if self._closed or peer_id == self.node_id:
            return
        link = self._links.get(peer_id)
        if link is None:
            link = self._new_link(peer_id, self._addresses.get(peer_id))
            self._links[peer_id] = link
        if link.connected:
            link.outbox.put(frame)
        else:
            link.outbox.put_bounded(frame, MAX_UNSENT_FRAMES)

    def set_address(self, peer_id: str, host: str, port: int) -> None:
        """Where to dial peer_id from now on (used at the next (re)connect)."""
        if peer_id == self.node_id:
            return
        self._addresses[peer_id] = (host, port)
        link = self._links.get(peer_id)
        if link is not None and link.address != (host, port):
            link.address = (host, port)
            link.wake.set()

    def dial_seed(self, host: str, port: int) -> None:
        """Dial an address whose node id is unknown; its hello will name it."""
        if self._closed or (host, port) in self._seeds:
            return
        self._seeds[(host, port)] = self._new_link(None, (host, port))

    def forget_peer(self, peer_id: str) -> None:
        """Stop dialing peer_id and drop what is queued for it."""
        link = self._links.pop(peer_id, None)
        self._addresses.pop(peer_id, None)
        if link is not None and link.task is not None:
            link.task.cancel()

    def connected_peers(self) -> set[str]:
        """Node ids with a live connection in either direction."""
        outbound = {peer for peer, link in self._links.items() if link.connected}
        return outbound | set(self._inbound)

    def queued_frames(self, peer_id: str) -> int:
        """Frames waiting in peer_id's outbox (0 if none)."""
        link = self._links.get(peer_id)
        return len(link.outbox) if link is not None else 0

    # --- tasks -----------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("transport task %s crashed", task.get_name(), exc_info=task.exception())

    def _new_link(self, peer_id: str | None, address: tuple[str, int] | None) -> _PeerLink:
        link = _PeerLink(peer_id, address, _Outbox(self._max_queued, self.stats))
        link.task = self._spawn(self._run_link(link), f"p2pq-link-{peer_id or address}")
        return link

    def _hello(self) -> Message:
        # Reserved keys last, so hello_extra cannot spoof them.
        return {**self._hello_extra, "type": "hello", "version": self._version,
                "node_id": self.node_id, "kind": "node", "instance": self._instance,
                "started_at": self._started_at, "listen_port": self._port}

    def _call(self, what: str, callback: Callable[..., None], *args: Any) -> None:
        """Run a user callback; its bugs are logged, never fatal to the reader loop."""
        try:
            callback(*args)
        except Exception:
            self.stats.callback_errors += 1
            log.exception("%s callback raised", what)

    def _peer_hello(self, peer_id: str, hello: Message) -> None:
        self._call("on_peer_hello", self._on_peer_hello, peer_id, hello)

    # --- outbound --------------------------------------------------------

    async def _run_link(self, link: _PeerLink) -> None:
        """Keep one connection to link's peer up, redialing with backoff."""
        backoff = _Backoff(self._rng)
        loop = asyncio.get_running_loop()
        while True:
            served = link.connections
            try:
                if await self._link_attempt(link, backoff):
                    return
            except Exception:  # a bug must not silently kill the peer's link
                log.exception("link to %s failed", link.peer_id or link.address)
            now = loop.time()
            link.down_since = link.down_since if link.down_since is not None else now
            if link.connections != served:
                # A connection that got through its handshake just dropped: redial
                # at once, whatever the backoff says. A refusal now tells that the
                # peer's process died (on_peer_refused), in 50 ms instead of a
                # failure timeout; the backoff goes on from there. One quick dial
                # per handshake done: a peer that drops us again and again is not
                # hammered.
                delay_s = BACKOFF_INITIAL_S * self._rng.uniform(0.5, 1.0)
            else:
                delay_s = backoff.next_delay_s()
            if now - link.down_since > LONG_OUTAGE_S:
                delay_s = LONG_OUTAGE_BACKOFF_S * self._rng.uniform(0.5, 1.0)
            await self._sleep_backoff(link, delay_s)

    async def _link_attempt(self, link: _PeerLink, backoff: _Backoff) -> bool:
        """Dial once and serve the connection until it drops; True if the link is done."""
        address = await self._wait_address(link)
        conn = await self._dial_link(link, address)
        if conn is None:
            return link.peer_id is None and address not in self._seeds  # a seed that was us
        reader, writer, peer_id, hello = conn
        if link.peer_id is None and not self._adopt_seed(link, peer_id, address):
            await _close_writer(writer)
            return True
        started_s = asyncio.get_running_loop().time()
        await self._run_outbound(link, reader, writer, hello, address)
        # Only a connection that lived a while proves the peer healthy;
        # otherwise a peer that accepts then drops would be hammered.
        if asyncio.get_running_loop().time() - started_s > BACKOFF_MAX_S:
            backoff.reset()
        return False

    async def _wait_address(self, link: _PeerLink) -> tuple[str, int]:
        while link.address is None:
            link.wake.clear()
            await link.wake.wait()
        return link.address

    async def _sleep_backoff(self, link: _PeerLink, delay_s: float) -> None:
        link.wake.clear()
        try:
            async with asyncio.timeout(delay_s):
                await link.wake.wait()  # a new address cuts the wait short
        except TimeoutError:
            pass

    async def _dial_link(self, link: _PeerLink, address: tuple[str, int]) -> _Connection | None:
        """One dial attempt; the connection, or None after logging why it failed."""
        not_needed = self._seed_not_needed if link.peer_id is None else None
        try:
            conn = await _dial(address, self._client_ctx, self._hello(), self._version,
                               self._max_frame_bytes, self._handshake_timeout_s,
                               expected_id=link.peer_id, not_needed=not_needed)
        except _NotNeeded as exc:
            log.debug("seed %s:%d is %s", *address, exc)
            self._seeds.pop(address, None)
            return None
        except DuplicateId as exc:
            self.stats.dial_failures += 1
            if exc.stop and self._on_duplicate_id is not None:
                self._on_duplicate_id(str(exc))
            elif not link.failing:
                log.warning("%s", exc)
            link.failing = True
            return None
        except (OSError, TransportError, FrameError, PKIError) as exc:  # incl. timeouts
            self.stats.dial_failures += 1
            if (isinstance(exc, ConnectionRefusedError) and link.peer_id is not None
                    and self._on_peer_refused is not None):
                # Its machine answered for it: no process listens there (it died).
                self._call("on_peer_refused", self._on_peer_refused, link.peer_id)
            # Say it once per outage; a refused hello (another version) is a
            # configuration problem and deserves a warning.
            level = logging.WARNING if isinstance(exc, HandshakeRejected) else logging.INFO
            level = logging.DEBUG if link.failing else level
            log.log(level, "cannot connect to %s at %s:%d: %s",
                    link.peer_id or "seed", *address, _describe(exc))
            link.failing = True
            return None
        self.stats.dials += 1
        link.failing = False
        return conn

    def _seed_not_needed(self, peer_id: str) -> str | None:
        """Why a seed that reached peer_id should stop before its hello, if it should.

        Stopping before the hello matters: a second hello from us would make
        the peer replace our live inbound connection with the seed's.
        """
        if peer_id == self.node_id:
            return None  # ourselves, or a duplicate of our id: the hello's instance tells which
        link = self._links.get(peer_id)
        if link is not None and link.connected:
            return f"{peer_id}, already connected"
        return None

    def _adopt_seed(self, link: _PeerLink, peer_id: str, address: tuple[str, int]) -> bool:
        """A seed learned its peer's id: make it that peer's link, unless one is up."""
        self._seeds.pop(address, None)
        existing = self._links.get(peer_id)
        if existing is not None and existing.connected:
            return False
        if existing is not None:
            link.outbox.put_front(existing.outbox)  # queued before the id was known
            if existing.task is not None:
                existing.task.cancel()
        link.peer_id = peer_id
        self._links[peer_id] = link
        self._addresses.setdefault(peer_id, address)
        return True

    async def _run_outbound(self, link: _PeerLink, reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter, hello: Message,
                            address: tuple[str, int]) -> None:
        peer_id = link.peer_id
        assert peer_id is not None
        link.connected = True
        link.connections += 1
        link.down_since = None
        log.info("connected to %s at %s:%d", peer_id, *address)
        self._peer_hello(peer_id, hello)
        try:
            reason = await self._pump(reader, writer, link.outbox,
                                      lambda msg: self._on_peer_message(peer_id, msg),
                                      keepalive_s=self._keepalive_s)
        finally:
            link.connected = False
            await _close_writer(writer)
        log.info("connection to %s lost: %s", peer_id, reason)

    # --- inbound ---------------------------------------------------------

    async def _on_accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Handshake and serve one inbound connection; never raises (G5)."""
        if self._closed:
            writer.transport.abort()
            return
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._serve_inbound(reader, writer, task)
        except asyncio.CancelledError:
            # close() or a newer connection from the same node. Returning
            # (not re-raising) keeps asyncio's stream callback from logging
            # the cancellation as an error.
            writer.transport.abort()
        finally:
            self._tasks.discard(task)

    async def _serve_inbound(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                             task: asyncio.Task[Any]) -> None:
        remote = writer.get_extra_info("peername")
        try:
            cn, kind, hello = await self._accept_handshake(reader, writer)
            if kind == "node":
                await self._serve_node(cn, hello, reader, writer, task)
            else:
                await self._serve_client(cn, reader, writer, remote)
        except _Refused as refused:
            self.stats.refused[refused.reason] += 1
            # A bare connect-and-close is a port probe or our own seed
            # finding itself: worth a line, not a warning.
            level = logging.INFO if refused.reason in ("closed", "self") else logging.WARNING
            log.log(level, "refused connection from %s: %s", _fmt(remote), refused)
            await _close_writer(writer)
        except Exception:  # a bug here must not take the server down (G5)
            log.exception("inbound connection from %s failed", _fmt(remote))
            writer.transport.abort()

    async def _accept_handshake(self, reader: asyncio.StreamReader,
                                writer: asyncio.StreamWriter) -> tuple[str, str, Message]:
        """TLS, then the peer's hello, then ours; raises _Refused with the reason."""
        try:
            async with asyncio.timeout(self._handshake_timeout_s):
                cn, kind = await self._start_tls(writer)
                hello = await self._read_hello(reader, writer)
                try:
                    self._check_hello(hello, cn, kind)
                except _Refused as refused:
                    await self._tell_refused(writer, str(refused), **refused.detail)
                    raise
                writer.write(encode_frame(self._hello()))
                return cn, kind, hello
        except TimeoutError:
            message = f"no handshake within {self._handshake_timeout_s} s"
            raise _Refused("timeout", message) from None

    async def _start_tls(self, writer: asyncio.StreamWriter) -> tuple[str, str]:
        try:
            # Called before any await in _on_accept, so no byte of the TLS
            # ClientHello has been read into the plain-text stream buffer.
            await writer.start_tls(self._server_ctx)
        except ssl.SSLCertVerificationError as exc:
            raise _Refused("certificate", f"untrusted certificate: {exc.verify_message}") from None
        except (ssl.SSLError, OSError) as exc:
            raise _Refused("tls", f"TLS handshake failed: {_describe(exc)}") from None
        _set_nodelay(writer)
        try:
            return peer_name(writer.get_extra_info("ssl_object"))
        except PKIError as exc:
            raise _Refused("certificate", str(exc)) from None

    async def _read_hello(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> Message:
        try:
            return await read_frame(reader, self._max_frame_bytes)
        except FrameError as exc:
            await self._tell_refused(writer, str(exc))
            raise _Refused("frame", str(exc)) from None
        except ConnectionClosed:  # before OSError: it is a ConnectionError
            raise _Refused("closed", "closed the connection before its hello") from None
        except (ssl.SSLError, OSError) as exc:
            raise _Refused("tls", f"TLS error before the hello: {_describe(exc)}") from None

    def _check_hello(self, hello: Message, cn: str, kind: str) -> None:
        """Raise _Refused unless hello is a valid hello from the certificate's holder."""
        if hello.get("type") != "hello":
            raise _Refused("hello", f"first frame is {hello.get('type')!r}, not a hello")
        if hello.get("version") != self._version:
            raise _Refused("version", f"protocol version {hello.get('version')!r} "
                                      f"is not supported (this node speaks {self._version})")
        if hello.get("node_id") != cn or hello.get("kind") != kind:
            raise _Refused("hello", f"hello names {hello.get('kind')} {hello.get('node_id')!r} "
                                    f"but the certificate is {kind} {cn!r}")
        if kind == "node" and cn == self.node_id:
            self._refuse_own_id(hello)

    def _refuse_own_id(self, hello: Message) -> None:
        """A hello with our own id: ourselves through a seed, or a duplicate, of which the newer stops."""
        if hello.get("instance") == self._instance:
            raise _Refused("self", "this node itself", code="self")
        theirs = (hello.get("started_at"), str(hello.get("instance")))
        they_are_newer = not isinstance(theirs[0], (int, float)) or theirs > (self._started_at, self._instance)
        theirs_at, mine_at = _listen_of(hello), _listen_of(self._hello_extra)
        older, newer = (mine_at, theirs_at) if they_are_newer else (theirs_at, mine_at)
        message = (f"node id {self.node_id!r} is already taken by the node at {older}, which started "
                   f"earlier; give each node its own --node-id (the node at {newer} stops)")
        if not they_are_newer and self._on_duplicate_id is not None:
            self._on_duplicate_id(message)
        raise _Refused("duplicate_id", message, code="duplicate_id", you_stop=they_are_newer)

    async def _tell_refused(self, writer: asyncio.StreamWriter, reason: str, **detail: Any) -> None:
        """Best effort: tell the dialer why, so the user sees one clear line."""
        try:
            writer.write(encode_frame({**detail, "type": "error", "reason": reason}))
            async with asyncio.timeout(0.5):
                await writer.drain()
        except (OSError, TimeoutError, FrameError):
            pass

    async def _serve_node(self, cn: str, hello: Message, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter, task: asyncio.Task[Any]) -> None:
        previous = self._inbound.get(cn)
        self._inbound[cn] = task
        if previous is not None:
            previous.cancel()  # the peer restarted or redialed: the newest wins
        self._peer_hello(cn, hello)
        link = self._links.get(cn)
        if link is not None and not link.connected:
            link.wake.set()  # it is back: redial now, not at the end of a long backoff
        outbox = _Outbox(self._max_queued, self.stats)  # only ever holds nothing
        try:
            reason = await self._pump(reader, writer, outbox,
                                      lambda msg: self._on_peer_message(cn, msg),
                                      idle_s=self._idle_timeout_s)
            log.info("inbound connection from %s closed: %s", cn, reason)
        finally:
            if self._inbound.get(cn) is task:
                del self._inbound[cn]
        await _close_writer(writer)

    async def _serve_client(self, cn: str, reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter, remote: Any) -> None:
        conn = ClientConnection(cn, remote, _Outbox(self._max_queued, self.stats),
                                self._max_frame_bytes)
        try:
            reason = await self._pump(reader, writer, conn._outbox,
                                      lambda msg: self._on_client_message(conn, msg),
                                      idle_s=self._idle_timeout_s, keepalive_s=self._keepalive_s)
            log.debug("client %s disconnected: %s", cn, reason)
        finally:
            conn.closed = True
        await _close_writer(writer)

    # --- one established connection --------------------------------------

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    outbox: _Outbox, deliver: Callable[[Message], None], *,
                    idle_s: float | None = None, keepalive_s: float | None = None) -> str:
        """Read and write until either side fails; return why, for the log.

        idle_s: drop the connection after this long without a byte from the
        peer. keepalive_s: send a ping after this long with nothing to send.
        """
        loop = asyncio.get_running_loop()
        read_task = loop.create_task(self._read_loop(reader, deliver, idle_s))
        write_task = loop.create_task(self._write_loop(writer, outbox, keepalive_s))
        try:
            done, _ = await asyncio.wait({read_task, write_task},
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:  # these two are owned by the calling task: never leak them
            read_task.cancel()
            write_task.cancel()
            await asyncio.gather(read_task, write_task, return_exceptions=True)
        exc = next(iter(done)).exception()
        if exc is None:
            return "closed"
        if not isinstance(exc, (FrameError, _SlowPeer, _IdlePeer)):
            return _describe(exc)  # an ordinary disconnect
        kind = "frame" if isinstance(exc, FrameError) else "slow" if isinstance(exc, _SlowPeer) else "idle"
        self.stats.refused[kind] += 1  # G5
        remote = _fmt(writer.get_extra_info("peername"))
        log.warning("dropping connection from %s: %s", remote, exc)
        return str(exc)

    async def _read_loop(self, reader: asyncio.StreamReader,
                         deliver: Callable[[Message], None], idle_s: float | None = None) -> None:
        stats = self.stats
        decoder = FrameDecoder(self._max_frame_bytes)
        since_yield = 0
        while True:
            if idle_s is None:
                data = await reader.read(_READ_CHUNK_BYTES)
            else:
                try:
                    async with asyncio.timeout(idle_s):
                        data = await reader.read(_READ_CHUNK_BYTES)
                except TimeoutError:
                    raise _IdlePeer(f"nothing received for {idle_s:g} s") from None
            if not data:
                where = "in the middle of a frame" if decoder.buffered_bytes else "between frames"
                raise ConnectionClosed(f"connection closed {where}")
            for message, size in decoder.feed(data):
                stats.frames_in += 1
                stats.bytes_in += size
                if message["type"] != PING:
                    self._call("message", deliver, message)
                since_yield += size
                if since_yield >= _YIELD_EVERY_BYTES:
                    # A backlog of big frames is read without the loop waiting on the socket:
                    # let timers and other peers in between, as a heartbeat must not wait.
                    since_yield = 0
                    await asyncio.sleep(0)

    async def _write_loop(self, writer: asyncio.StreamWriter, outbox: _Outbox,
                          keepalive_s: float | None = None) -> None:
        stats = self.stats
        while True:
            batch = await outbox.take_batch(_MAX_WRITE_BYTES, keepalive_s) or [_PING_FRAME]
            data = b"".join(batch)
            writer.write(data)  # one syscall for everything pending
            stats.writes += 1
            stats.frames_out += len(batch)
            stats.bytes_out += len(data)
            try:
                async with asyncio.timeout(self._write_timeout_s):
                    await writer.drain()
            except TimeoutError:
                raise _SlowPeer(f"peer did not read for {self._write_timeout_s} s") from None


# --- dialing (shared by nodes and clients) ---------------------------------

_PING_FRAME = encode_frame({"type": PING})


_Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter, str, Message]


async def _dial(address: tuple[str, int], ctx: ssl.SSLContext, hello: Message, version: int,
                max_frame_bytes: int, timeout_s: float, *, expected_id: str | None = None,
                not_needed: Callable[[str], str | None] | None = None) -> _Connection:
    """Connect with TLS, exchange hellos; (reader, writer, peer id, peer hello)."""
    host, port = address
    async with asyncio.timeout(timeout_s):
        reader, writer = await asyncio.open_connection(host, port, ssl=ctx)
        try:
            _set_nodelay(writer)
            peer_id, kind = peer_name(writer.get_extra_info("ssl_object"))
            why_not = not_needed(peer_id) if not_needed is not None else None
            if why_not:
                raise _NotNeeded(why_not)
            if kind != "node":
                raise HandshakeRejected(f"{host}:{port} has a {kind} certificate, not a node's")
            if expected_id is not None and peer_id != expected_id:
                raise HandshakeRejected(f"{host}:{port} is now {peer_id!r}, not {expected_id!r}")
            writer.write(encode_frame(hello))
            reply = await read_frame(reader, max_frame_bytes)
            _check_reply(reply, peer_id, version, address)
        except BaseException:
            writer.transport.abort()
            raise
    return reader, writer, peer_id, reply


def _check_reply(reply: Message, peer_id: str, version: int, address: tuple[str, int]) -> None:
    where = f"{address[0]}:{address[1]}"
    if reply["type"] == "error" and reply.get("code") == "self":
        raise _NotNeeded("this node itself")
    if reply["type"] == "error" and reply.get("code") == "duplicate_id":
        raise DuplicateId(str(reply.get("reason")), stop=reply.get("you_stop") is True)
    if reply["type"] == "error":
        raise HandshakeRejected(f"node at {where} refused us: {reply.get('reason')}")
    if reply["type"] != "hello":
        raise HandshakeRejected(f"node at {where} answered {reply['type']!r}, not a hello")
    if reply.get("version") != version:
        raise HandshakeRejected(f"node at {where} speaks protocol version "
                                f"{reply.get('version')!r}, we speak {version}")
    if reply.get("node_id") != peer_id:
        raise HandshakeRejected(f"node at {where} says it is {reply.get('node_id')!r} "
                                f"but its certificate says {peer_id!r}")


def _listen_of(hello: Message) -> str:
    listen = hello.get("listen")
    if isinstance(listen, (list, tuple)) and len(listen) == 2:
        return f"{listen[0]}:{listen[1]}"
    return "an unknown address"


def _set_nodelay(writer: asyncio.StreamWriter) -> None:
    # Heartbeats are tiny and latency-critical: never let Nagle hold them.
    sock = writer.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass


async def _close_writer(writer: asyncio.StreamWriter) -> None:
    """Close politely, but give up (abort) quickly: a peer may never answer."""
    writer.close()
    try:
        async with asyncio.timeout(_CLOSE_GRACE_S):
            await writer.wait_closed()
    except (OSError, TimeoutError, ssl.SSLError):
        writer.transport.abort()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ConnectionResetError) and not exc.strerror:
        return "connection reset by peer"
    if isinstance(exc, ssl.SSLError):
        return exc.reason or str(exc)
    if isinstance(exc, TimeoutError) and not str(exc):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _fmt(remote: Any) -> str:
    return f"{remote[0]}:{remote[1]}" if remote else "?"


# --- the client side used by the CLI and the Python API --------------------


class ClientChannel:
    """A client's connection to one node: request() sends and waits for the reply."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 node_name: str, hello: Message, where: str, max_frame_bytes: int,
                 timeout_s: float) -> None:
        self.node_name = node_name  # the node's certificate CN
        self.hello = hello
        self._reader, self._writer = reader, writer
        self._where = where
        self._max_frame_bytes = max_frame_bytes
        self._timeout_s = timeout_s
        self._pending: dict[Any, asyncio.Future[Message]] = {}
        self._on_push: dict[Any, Callable[[Message], None]] = {}
        self._next_req = 0
        self._lost: str | None = None
        self._read_task = asyncio.get_running_loop().create_task(self._read_loop())
        self._keepalive_task = asyncio.get_running_loop().create_task(self._keepalive())

    async def request(self, message: Message, *, timeout_s: float | None = None,
                      on_push: Callable[[Message], None] | None = None) -> Message:
        """Send message and return the reply carrying the same "req" (set one if absent).

        A request the node answers in parts (a watch) gets each "push" frame
        before the final reply, passed to `on_push`; timeout_s=math.inf waits
        for as long as the connection lives.
        """
        if "req" not in message:
            self._next_req += 1
            message = {**message, "req": f"r{self._next_req}"}
        req = message["req"]
        if self._lost is not None:
            raise ChannelClosed(self._lost)
        try:
            frame = encode_frame(message, self._max_frame_bytes)
        except FrameError as exc:
            raise TransportError(f"request not sent: {exc}") from None
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._pending[req] = future
        if on_push is not None:
            self._on_push[req] = on_push
        timeout_s = self._timeout_s if timeout_s is None else timeout_s
        try:
            self._writer.write(frame)
            async with asyncio.timeout(None if timeout_s == math.inf else timeout_s):
                await self._writer.drain()
                return await future
        except TimeoutError:
            raise RequestTimeout(f"no reply from {self._where} within {timeout_s} s") from None
        except (OSError, ssl.SSLError) as exc:
            raise ChannelClosed(f"connection to {self._where} lost: {_describe(exc)}") from None
        finally:
            self._pending.pop(req, None)
            self._on_push.pop(req, None)

    async def close(self) -> None:
        """Close the connection and stop the reader task; pending requests fail."""
        self._read_task.cancel()
        self._keepalive_task.cancel()
        await asyncio.gather(self._read_task, self._keepalive_task, return_exceptions=True)
        self._fail_pending(f"connection to {self._where} closed")
        await _close_writer(self._writer)

    def _fail_pending(self, reason: str) -> None:
        if self._lost is None:
            self._lost = reason
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ChannelClosed(self._lost))

    async def _keepalive(self) -> None:
        """A ping every KEEPALIVE_S, so the node's idle limit never drops a client that waits."""
        try:
            while self._lost is None:
                await asyncio.sleep(KEEPALIVE_S)
                self._writer.write(_PING_FRAME)
        except (OSError, RuntimeError):  # the connection is gone: the reader says so
            pass

    async def _read_loop(self) -> None:
        try:
            while True:
                try:  # the node sends a keepalive after KEEPALIVE_S of quiet: silence this long is a dead node
                    async with asyncio.timeout(CLIENT_SILENCE_S):
                        reply = await read_frame(self._reader, self._max_frame_bytes)
                except TimeoutError:
                    self._fail_pending(f"no word from {self._where} for {CLIENT_SILENCE_S:g} s (its machine "
                                       "may be down)")
                    return
                if reply["type"] == PING:
                    continue
                req = reply.get("req")
                if reply["type"] == "push":
                    on_push = self._on_push.get(req)
                    if on_push is not None:
                        try:
                            on_push(reply)
                        except Exception:  # the request's own code: it must not end the connection
                            log.exception("a push handler failed")
                    continue
                future = self._pending.get(req)
                if future is not None and not future.done():
                    future.set_result(reply)
                else:
                    log.debug("unsolicited %s from %s", reply["type"], self._where)
        except (OSError, ssl.SSLError, FrameError, ConnectionClosed) as exc:
            self._fail_pending(f"connection to {self._where} lost: {_describe(exc)}")


async def open_client(host: str, port: int, identity: Identity, *, timeout_s: float = 5.0,
                      protocol_version: int = PROTOCOL_VERSION,
                      max_frame_bytes: int = MAX_FRAME_BYTES) -> ClientChannel:
    """Connect to the node at host:port as a client; TransportError with one line on failure."""
    if identity.kind != "client":
        raise ValueError("open_client needs a client identity (ensure_identity(kind='client'))")
    hello = {"type": "hello", "version": protocol_version,
             "node_id": identity.name, "kind": "client"}
    where = f"{host}:{port}"
    ctx = client_context(identity)  # a PKIError here is about our own files
    try:
        reader, writer, node_name, reply = await _dial(
            (host, port), ctx, hello, protocol_version, max_frame_bytes, timeout_s)
    except ConnectionRefusedError:
        raise ConnectionRefused(f"connection refused: no p2pq node at {where}") from None
    except socket.gaierror:
        raise UnknownHost(f"cannot resolve host {host!r}") from None
    except (ssl.SSLError, PKIError, ConnectionClosed, ConnectionResetError):
        # TLS 1.3 clients learn of a rejected certificate only on first read,
        # as an alert or a reset: all mean "not our cluster".
        raise TLSFailed("TLS handshake failed: is this node in the same cluster?") from None
    except TimeoutError:
        raise RequestTimeout(f"timed out after {timeout_s} s connecting to {where}") from None
    except FrameError as exc:
        raise HandshakeRejected(f"{where} is not a p2pq node ({exc})") from None
    except OSError as exc:
        raise NodeUnreachable(f"cannot connect to {where}: {_describe(exc)}") from None
    return ClientChannel(reader, writer, node_name, reply, where, max_frame_bytes, timeout_s)

"""mDNS discovery of p2pq peers on the local network (python-zeroconf, asyncio API).

Every node registers ``<node_id>._p2pq._tcp.local.`` with the TXT records
of ``net/mdns.py`` and browses for the service type; ``mdns.judge`` decides
what a record found is (peers of another cluster or protocol version are
ignored, logged once at debug level). ``net/interfaces.py`` says where to
listen and what to publish, ``net/zeroconf_log.py`` turns zeroconf's
socket errors into one line. This module does the multicast.

Robustness, beyond the browser's own listeners:

* All questions are sent as QM (multicast response requested). Several nodes
  on one host share UDP port 5353 (SO_REUSEPORT), and a unicast (QU) answer
  reaches only one of them; QM answers reach everybody.
* A periodic re-query task (every ``requery_interval_s``, backing off to
  ``requery_max_interval_s`` while nothing changes) explicitly asks for the
  service type's PTR records and resolves every instance whose details are
  not in the cache, so a late joiner finds the nodes that started earlier and
  a node that missed announcements recovers.
* On finding a new peer, a node re-announces itself once (rate-limited), so a
  peer that missed our announcements learns about us as soon as either side
  re-queries.
* Resolution runs in background tasks with bounded concurrency, time-outs and
  per-instance back-off; nothing blocks the event loop.
* Zeroconf failures (no usable interface, port 5353 taken, a socket that
  cannot send) never crash the node: one clear warning line is logged and the
  setup is retried later. The cluster still forms through ``--peer`` seeds and
  gossip.

All callbacks (``on_peer``, ``on_peer_lost``) run in the event loop and must
not block.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import socket
from collections.abc import Callable

from zeroconf import (
    BadTypeInNameException,
    DNSOutgoing,
    DNSQuestion,
    DNSQuestionType,
    InterfaceChoice,
    IPVersion,
    NonUniqueNameException,
    NotRunningException,
    ServiceStateChange,
    current_time_millis,
)
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from . import interfaces, mdns, zeroconf_log
from .mdns import SERVICE_TYPE, DiscoveredPeer, Ignored, instance_label

__all__ = ["SERVICE_TYPE", "DiscoveredPeer", "Discovery", "instance_label"]

log = logging.getLogger(__name__)


# DNS constants (RFC 1035 / 6762); zeroconf keeps its own copies private.
_TYPE_PTR = 12
_CLASS_IN = 1
_FLAGS_QR_QUERY = 0x0000

_QM = DNSQuestionType.QM


# Limits that keep a crowded (or hostile) LAN from costing us much.
_MAX_CONCURRENT_RESOLVES = 8
_MAX_PENDING_RESOLVES = 64
_MAX_REMEMBERED_NOTES = 1024
_RESOLVE_TIMEOUT_S = 3.0
_RESOLVE_MAX_BACKOFF_S = 300.0
_REGISTER_TIMEOUT_S = 10.0
_SETUP_RETRY_MAX_S = 60.0
_FOLLOWUP_S = 1.0


class Discovery:
    """Advertise this node and report the other nodes of its cluster found by mDNS.

    ``interfaces`` is ``InterfaceChoice.All`` (every IPv4 address of the host),
    ``InterfaceChoice.Default`` (the kernel's default multicast route), or a
    list of interface addresses (``"192.168.1.7"``, ``"127.0.0.1"``) and/or
    interface names (``"eth0"``, meaning that interface's IPv4 addresses).

    ``advertise_host`` is the address published in the A/AAAA records (an IP
    literal, or a host name resolved once at start). By default the host's
    addresses on the chosen interfaces are published (loopback only when
    nothing else is available) and kept up to date when they change.

    ``on_peer`` is called (in the event loop) with a :class:`DiscoveredPeer`
    whenever a peer of our cluster is seen for the first time, its
    host/port/priority/version changed, or it restarted (new incarnation);
    never for ourselves.
    ``on_peer_lost`` (optional) is called with the node id when a peer's
    service disappears (goodbye packet or expiry).
    """

    def __init__(
        self,
        *,
        node_id: str,
        port: int,
        priority: int,
        fingerprint: str,
        version: int,
        on_peer: Callable[[DiscoveredPeer], None],
        interfaces: InterfaceChoice | list[str] = InterfaceChoice.All,
        advertise_host: str | None = None,
        requery_interval_s: float = 5.0,
        requery_max_interval_s: float = 30.0,
        on_peer_lost: Callable[[str], None] | None = None,
    ) -> None:
        if not node_id:
            raise ValueError("node_id must not be empty")
        if not 0 < port < 65536:
            raise ValueError(f"port out of range: {port}")
        if requery_interval_s <= 0:
            raise ValueError("requery_interval_s must be positive")
        if not (isinstance(interfaces, InterfaceChoice) or isinstance(interfaces, list)):
            raise TypeError("interfaces must be an InterfaceChoice or a list of addresses/names")
        fp = mdns.normalize_fingerprint(fingerprint)
        if not fp or len(fp) > 200:
            raise ValueError("fingerprint must be a non-empty hex string of at most 200 chars")

        self.node_id = node_id
        self.port = port
        self.priority = int(priority)
        self.fingerprint = fp
        self.version = int(version)
        self._on_peer = on_peer
        self._on_peer_lost = on_peer_lost
        self._interfaces = interfaces
        self._advertise_host = advertise_host
        self._base_interval = float(requery_interval_s)
        self._max_interval = max(float(requery_max_interval_s), self._base_interval)

        self._label = instance_label(node_id)
        self.instance_name = f"{self._label}.{SERVICE_TYPE}"
        self._instance_key = self.instance_name.lower()

        self._aiozc: AsyncZeroconf | None = None
        self._browser: AsyncServiceBrowser | None = None
        self._info: AsyncServiceInfo | None = None
        self._registered = False
        self._published_addrs: list[str] = []
        self._local_nets: list[mdns.Network] = []
        self._resolved_advertise: list[str] | None = None

        self._incarnation = secrets.token_hex(4)
        self._peers: dict[str, DiscoveredPeer] = {}  # instance key -> last reported
        self._peer_inc: dict[str, str | None] = {}  # instance key -> its incarnation token
        self._resolving: dict[str, asyncio.Task[None]] = {}
        self._resolve_failures: dict[str, int] = {}
        self._next_resolve_at: dict[str, float] = {}
        self._notes: set[tuple[str, str]] = set()  # (instance key, reason) logged once
        self._warned: set[str] = set()
        self._tasks: set[asyncio.Task[object]] = set()
        self._sem: asyncio.Semaphore | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._changed = False
        self._reannounce_handle: asyncio.TimerHandle | None = None
        self._last_reannounce = float("-inf")
        self._setup_failures = 0
        self._started = False
        self._closed = False

    # ------------------------------------------------------------------ public

    @property
    def peers(self) -> dict[str, DiscoveredPeer]:
        """Snapshot of the peers currently known, by node id."""
        return {p.node_id: p for p in self._peers.values()}

    @property
    def running(self) -> bool:
        """True while zeroconf is up (False when mDNS is unavailable here)."""
        return self._aiozc is not None

    @property
    def advertised(self) -> bool:
        """True once our service is registered on the network."""
        return self._registered

    async def start(self) -> None:
        """Register our service and start browsing. Never raises for network trouble.

        Waits (bounded) for the registration's probing to finish; if mDNS
        cannot be used now, logs one warning and keeps retrying in the
        background.
        """
        if self._started or self._closed:
            return
        self._started = True
        self._sem = asyncio.Semaphore(_MAX_CONCURRENT_RESOLVES)
        zeroconf_log.attach(self)
        if await self._setup():
            await self._register()
        if self._closed:
            return
        self._loop_task = asyncio.get_running_loop().create_task(
            self._run(), name=f"p2pq-discovery-{self.node_id}"
        )

    async def close(self) -> None:
        """Unregister (goodbye packets), close zeroconf and cancel our tasks. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._reannounce_handle is not None:
            self._reannounce_handle.cancel()
            self._reannounce_handle = None
        tasks: list[asyncio.Task[object]] = list(self._tasks) + list(self._resolving.values())
        if self._loop_task is not None:
            tasks.append(self._loop_task)  # type: ignore[arg-type]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        self._resolving.clear()
        self._loop_task = None
        await self._teardown()
        zeroconf_log.detach(self)

    async def __aenter__(self) -> Discovery:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -------------------------------------------------------------- setup/teardown

    def _warn_once(self, key: str, msg: str, *args: object) -> None:
        if key in self._warned:
            log.debug(msg, *args)
            return
        self._warned.add(key)
        log.warning(msg, *args)

    def _zc_interfaces(self) -> InterfaceChoice | list[str]:
        return interfaces.zeroconf_interfaces(self._interfaces)

    def _host_addresses(self) -> list[str]:
        """Addresses to publish by default, and refresh our idea of the local networks."""
        addresses, self._local_nets = interfaces.host_addresses(self._interfaces)
        return addresses

    async def _addresses_to_publish(self) -> list[str]:
        if self._advertise_host is None:
            return self._host_addresses()
        self._host_addresses()  # refresh local networks
        if self._resolved_advertise is None:
            host = self._advertise_host
            if mdns.is_ip_literal(host):
                self._resolved_advertise = [host]
            else:
                try:
                    infos = await asyncio.get_running_loop().getaddrinfo(
                        host, None, type=socket.SOCK_STREAM
                    )
                    resolved = sorted({str(i[4][0]) for i in infos}, key=lambda a: (":" in a, a))
                except OSError as exc:
                    self._warn_once(
                        "advertise-host",
                        "mDNS: cannot resolve advertise host %r (%s); publishing interface addresses",
                        host,
                        exc,
                    )
                    resolved = []
                self._resolved_advertise = resolved
        return list(self._resolved_advertise) or self._host_addresses()

    async def _setup(self) -> bool:
        """Create zeroconf and the browser. False (with one warning) when it cannot."""
        choice = self._zc_interfaces()
        if isinstance(choice, list) and not choice:
            self._warn_once(
                "setup:no-interface",
                "mDNS discovery unavailable: none of the interfaces %s has an address yet; "
                "retrying in the background (--peer seeds and gossip still work)",
                self._interfaces,
            )
            return False
        aiozc: AsyncZeroconf | None = None
        try:
            aiozc = AsyncZeroconf(interfaces=choice)
            await aiozc.zeroconf.async_wait_for_start()
            engine = getattr(aiozc.zeroconf, "engine", None)
            if engine is not None and not getattr(engine, "senders", True):
                raise OSError(f"no usable multicast interface among {choice}")
            browser = AsyncServiceBrowser(
                aiozc.zeroconf,
                [SERVICE_TYPE],
                handlers=[self._on_service_state_change],
                question_type=_QM,
            )
        except asyncio.CancelledError:
            if aiozc is not None:
                with contextlib.suppress(Exception):
                    await aiozc.async_close()
            raise
        except Exception as exc:  # OSError, RuntimeError, NotRunningException, ...
            if aiozc is not None:
                with contextlib.suppress(Exception):
                    await aiozc.async_close()
            self._setup_failures += 1
            self._warn_once(
                f"setup:{type(exc).__name__}:{exc}",
                "mDNS discovery unavailable (%s: %s); retrying in the background "
                "(--peer seeds and gossip still work)",
                type(exc).__name__,
                exc,
            )
            return False
        if self._closed:  # close() ran while we were setting up
            with contextlib.suppress(Exception):
                await browser.async_cancel()
                await aiozc.async_close()
            return False
        self._aiozc = aiozc
        self._browser = browser
        self._setup_failures = 0
        log.debug("mDNS discovery up for %s on %s", self.node_id, choice)
        return True

    async def _register(self) -> None:
        """Register (or re-register) our service. Logs instead of raising."""
        aiozc = self._aiozc
        if aiozc is None or self._registered:
            return
        addrs = await self._addresses_to_publish()
        if not addrs:
            self._warn_once(
                "register:no-address",
                "mDNS: no address to publish for this node yet; will retry",
            )
            return
        info = AsyncServiceInfo(
            SERVICE_TYPE,
            self.instance_name,
            port=self.port,
            properties=mdns.properties(self.node_id, self.priority, self.version, self.fingerprint,
                                       self._incarnation),
            server=f"{self._label}.p2pq.local.",
            parsed_addresses=addrs,
        )
        try:
            announce = await asyncio.wait_for(
                aiozc.async_register_service(info, strict=False), _REGISTER_TIMEOUT_S
            )
        except asyncio.CancelledError:
            raise
        except NonUniqueNameException:
            self._warn_once(
                "register:nonunique",
                "mDNS: another node already advertises the name %r (duplicate node id?); "
                "not advertising for now, will retry",
                self.instance_name,
            )
            return
        except (BadTypeInNameException, ValueError) as exc:
            self._warn_once("register:badname", "mDNS: cannot advertise %r: %s", self.instance_name, exc)
            return
        except Exception as exc:  # TimeoutError, NotRunningException, OSError
            if self._closed:
                return
            self._warn_once(
                f"register:{type(exc).__name__}",
                "mDNS: registering our service failed (%s: %s); will retry",
                type(exc).__name__,
                exc,
            )
            return
        self._info = info
        self._registered = True
        self._published_addrs = addrs
        self._own(announce)
        log.debug("mDNS: advertising %s at %s port %d", self.instance_name, addrs, self.port)

    async def _refresh_addresses(self) -> None:
        """Follow address changes (DHCP, a cable plugged in) when publishing interface addresses."""
        aiozc, info = self._aiozc, self._info
        if aiozc is None or info is None or self._advertise_host is not None:
            return
        addrs = self._host_addresses()
        if not addrs or addrs == self._published_addrs:
            return
        log.info("mDNS: local addresses changed %s -> %s", self._published_addrs, addrs)
        if hasattr(aiozc, "async_update_interfaces"):
            choice = self._zc_interfaces()
            await aiozc.async_update_interfaces(choice if isinstance(choice, list) else None)
        new_info = AsyncServiceInfo(
            SERVICE_TYPE,
            self.instance_name,
            port=self.port,
            properties=info.properties,
            server=info.server,
            parsed_addresses=addrs,
        )
        announce = await aiozc.async_update_service(new_info)
        self._info = new_info
        self._published_addrs = addrs
        self._own(announce)

    async def _teardown(self) -> None:
        aiozc, browser = self._aiozc, self._browser
        self._aiozc = None
        self._browser = None
        self._info = None
        self._registered = False
        if browser is not None:
            with contextlib.suppress(Exception):
                await browser.async_cancel()
        if aiozc is not None:
            try:
                # Unregisters everything (goodbye packets) and closes the sockets.
                await asyncio.wait_for(aiozc.async_close(), 5.0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("mDNS: error while closing zeroconf: %r", exc)

    def _own(self, awaitable: object) -> None:
        """Keep a reference to a background future/task so close() can cancel it."""
        if not isinstance(awaitable, asyncio.Future):
            return
        self._tasks.add(awaitable)
        awaitable.add_done_callback(self._task_done)

    def _task_done(self, fut: asyncio.Future[object]) -> None:
        self._tasks.discard(fut)  # type: ignore[arg-type]
        if not fut.cancelled() and fut.exception() is not None:
            log.debug("mDNS background task failed: %r", fut.exception())

    def note_socket_error(self, exc: BaseException | None) -> None:
        """zeroconf could not send a packet (net/zeroconf_log.py): one warning per cause."""
        reason = str(exc) if exc is not None else "unknown error"
        self._warn_once(
            f"socket:{getattr(exc, 'errno', reason)}",
            "mDNS: cannot send multicast packets (%s); peers may not be found by mDNS "
            "(--peer seeds and gossip still work)",
            reason,
        )

    # ------------------------------------------------------------- periodic loop

    async def _run(self) -> None:
        """Owned background loop: (re)setup, (re)register, re-query, with back-off."""
        interval = self._base_interval
        while True:
            delay = interval
            try:
                if self._aiozc is None:
                    if await self._setup():
                        self._changed = True
                    else:
                        delay = min(self._base_interval * 2 ** min(self._setup_failures, 6), _SETUP_RETRY_MAX_S)
                if self._aiozc is not None:
                    if not self._registered:
                        await self._register()
                    await self._refresh_addresses()
                    self._requery()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._warn_once(
                    f"loop:{type(exc).__name__}",
                    "mDNS discovery error (%s: %s); continuing",
                    type(exc).__name__,
                    exc,
                )
                log.debug("mDNS discovery loop error", exc_info=True)
            if self._aiozc is not None:
                if self._changed:
                    interval = self._base_interval
                else:
                    interval = min(interval * 1.5, self._max_interval)
                self._changed = False
                delay = interval
            # A little jitter so that nodes started together do not query in lockstep.
            delay *= random.uniform(0.9, 1.1)
            if self._aiozc is not None:
                # Answers to our query arrive within ~0.1-0.6 s (responders
                # aggregate for up to 500 ms): pick up what they brought even
                # if the browser did not report it.
                followup = min(_FOLLOWUP_S, delay)
                await asyncio.sleep(followup)
                delay -= followup
                with contextlib.suppress(Exception):
                    self._consider_cached()
            await asyncio.sleep(max(delay, 0.0))

    def _requery(self) -> None:
        """Send a QM PTR query for our service type and resolve every instance we lack."""
        aiozc = self._aiozc
        if aiozc is None:
            return
        zc = aiozc.zeroconf
        now = current_time_millis()
        out = DNSOutgoing(_FLAGS_QR_QUERY)
        out.add_question(DNSQuestion(SERVICE_TYPE, _TYPE_PTR, _CLASS_IN))
        for record in self._cached_pointers(now):
            # Known-answer suppression (RFC 6762 7.1): peers we know stay quiet.
            if not record.is_stale(now):
                out.add_answer_at_time(record, now)
        zc.async_send(out)
        self._consider_cached()

    def _cached_pointers(self, now: float) -> list:
        aiozc = self._aiozc
        if aiozc is None:
            return []
        records = aiozc.zeroconf.cache.async_all_by_details(SERVICE_TYPE, _TYPE_PTR, _CLASS_IN)
        return [r for r in records if not r.is_expired(now)]

    def _consider_cached(self) -> None:
        """Report or resolve every instance of our service type in the cache."""
        for record in self._cached_pointers(current_time_millis()):
            alias = getattr(record, "alias", None)
            if alias:
                self._consider(alias, from_requery=True)

    # ---------------------------------------------------------- browse/resolve

    def _on_service_state_change(
        self,
        zeroconf: object,
        service_type: str,
        name: str,
        state_change: ServiceStateChange,
    ) -> None:
        # Called by zeroconf inside its packet processing: never raise.
        try:
            if state_change is ServiceStateChange.Removed:
                self._forget(name)
            else:
                self._consider(name, from_requery=False)
        except Exception:
            log.debug("mDNS: error handling %s for %s", state_change, name, exc_info=True)

    def _consider(self, name: str, *, from_requery: bool) -> None:
        """Report the instance from cache if complete, else resolve it in the background."""
        aiozc = self._aiozc
        key = name.lower()
        if aiozc is None or key == self._instance_key or self._closed:
            return
        info = AsyncServiceInfo(SERVICE_TYPE, name)
        if info.load_from_cache(aiozc.zeroconf):
            self._handle_info(key, info)
            return
        if key in self._resolving:
            return
        loop = asyncio.get_running_loop()
        if from_requery and loop.time() < self._next_resolve_at.get(key, 0.0):
            return
        if len(self._resolving) >= _MAX_PENDING_RESOLVES:
            log.debug("mDNS: too many pending resolutions, %s deferred", name)
            return
        task = loop.create_task(self._resolve(name, key), name=f"p2pq-mdns-resolve-{name}")
        self._resolving[key] = task

    async def _resolve(self, name: str, key: str) -> None:
        assert self._sem is not None
        try:
            async with self._sem:
                aiozc = self._aiozc
                if aiozc is None:
                    return
                info = AsyncServiceInfo(SERVICE_TYPE, name)
                ok = await info.async_request(
                    aiozc.zeroconf, _RESOLVE_TIMEOUT_S * 1000, question_type=_QM
                )
            loop = asyncio.get_running_loop()
            if ok:
                self._resolve_failures.pop(key, None)
                self._next_resolve_at.pop(key, None)
                self._handle_info(key, info)
            else:
                failures = self._resolve_failures.get(key, 0) + 1
                self._resolve_failures[key] = failures
                backoff = min(self._base_interval * 2 ** min(failures, 10), _RESOLVE_MAX_BACKOFF_S)
                self._next_resolve_at[key] = loop.time() + backoff
                log.debug("mDNS: could not resolve %s (attempt %d)", name, failures)
        except asyncio.CancelledError:
            raise
        except NotRunningException:
            pass
        except Exception:
            log.debug("mDNS: error resolving %s", name, exc_info=True)
        finally:
            if self._resolving.get(key) is asyncio.current_task():
                del self._resolving[key]

    def _note_ignored(self, key: str, reason: str, msg: str, *args: object) -> None:
        if (key, reason) in self._notes:
            return
        if len(self._notes) >= _MAX_REMEMBERED_NOTES:
            self._notes.clear()
        self._notes.add((key, reason))
        log.debug(msg, *args)

    def _handle_info(self, key: str, info: AsyncServiceInfo) -> None:
        verdict = mdns.judge(info.decoded_properties, info.port, info.parsed_scoped_addresses(IPVersion.All),
                             fingerprint=self.fingerprint, version=self.version, own_id=self.node_id,
                             local_nets=self._local_nets)
        if isinstance(verdict, Ignored):
            if verdict.own_id:
                if key != self._instance_key:
                    self._warn_once(f"dup-id:{key}", "mDNS: %s advertises our own node id %r (duplicate node "
                                    "id?); ignoring it", info.name, self.node_id)
            elif verdict.key != "no-address":
                self._note_ignored(key, verdict.key, "mDNS: ignoring %s: %s", info.name, verdict.why)
                self._drop(key)
            return
        peer, props = verdict, info.decoded_properties
        previous = self._peers.get(key)
        inc = props.get("inc")
        if previous == peer and self._peer_inc.get(key) == inc:
            return
        self._peers[key] = peer
        self._peer_inc[key] = inc
        if previous is None:
            self._want_reannounce()
        self._changed = True
        log.debug("mDNS: peer %s at %s:%d (prio %d)", peer.node_id, peer.host, peer.port, peer.priority)
        try:
            self._on_peer(peer)
        except Exception:
            log.exception("on_peer callback failed for %s", peer.node_id)

    def _want_reannounce(self) -> None:
        """Re-announce ourselves soon (one packet, at most once per re-query interval).

        A peer we just found may have missed our announcements (it was
        unreachable, or started while we were not listening); this lets it find
        us without waiting for its own, possibly backed-off, re-query.
        """
        if self._reannounce_handle is not None or self._closed:
            return
        loop = asyncio.get_running_loop()
        at = max(loop.time(), self._last_reannounce + self._base_interval)
        self._reannounce_handle = loop.call_at(at + random.uniform(0.05, 0.5), self._reannounce)

    def _reannounce(self) -> None:
        self._reannounce_handle = None
        aiozc, info = self._aiozc, self._info
        if aiozc is None or info is None or not self._registered or self._closed:
            return
        self._last_reannounce = asyncio.get_running_loop().time()
        try:
            zc = aiozc.zeroconf
            zc.async_send(zc.generate_service_broadcast(info, None))
        except Exception:
            log.debug("mDNS: re-announcement failed", exc_info=True)

    def _forget(self, name: str) -> None:
        """The instance went away (goodbye or expiry)."""
        key = name.lower()
        task = self._resolving.pop(key, None)
        if task is not None:
            task.cancel()
        self._resolve_failures.pop(key, None)
        self._next_resolve_at.pop(key, None)
        self._drop(key)

    def _drop(self, key: str) -> None:
        """Stop reporting a peer, telling on_peer_lost if we had reported it."""
        peer = self._peers.pop(key, None)
        self._peer_inc.pop(key, None)
        if peer is None:
            return
        self._changed = True
        log.debug("mDNS: peer %s left", peer.node_id)
        if self._on_peer_lost is not None:
            try:
                self._on_peer_lost(peer.node_id)
            except Exception:
                log.exception("on_peer_lost callback failed for %s", peer.node_id)

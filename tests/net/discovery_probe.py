"""Run one p2pq Discovery and print what it finds as JSON lines (test helper).

Used by tests/net/test_discovery.py inside network namespaces:

    ip netns exec NS python tests/net/discovery_probe.py --node-id n0 --port 7000 ...

Lines on stdout (each a JSON object with "event" and "t", CLOCK_MONOTONIC seconds):
    {"event": "started", "node_id": ..., "running": bool, "advertised": bool}
    {"event": "peer", "node_id": ..., "host": ..., "port": ..., "priority": ..., "version": ...}
    {"event": "lost", "node_id": ...}
    {"event": "closed"}
Stops on SIGTERM/SIGINT or when stdin is closed.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import signal
import sys
import threading
import time


def emit(event: str, **fields: object) -> None:
    print(json.dumps({"event": event, "t": time.monotonic(), **fields}), flush=True)


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--node-id", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--priority", type=int, default=0)
    parser.add_argument("--fp", required=True)
    parser.add_argument("--version", type=int, default=1)
    parser.add_argument("--interface", action="append", default=None,
                        help="interface address or name (repeatable); default: all")
    parser.add_argument("--advertise-host", default=None)
    parser.add_argument("--requery", type=float, default=5.0)
    parser.add_argument("--requery-max", type=float, default=30.0)
    parser.add_argument("--debug", action="store_true")
    args = parser.parse_args(argv)

    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )

    from zeroconf import InterfaceChoice

    from p2pq.net.discovery import Discovery

    disc = Discovery(
        node_id=args.node_id,
        port=args.port,
        priority=args.priority,
        fingerprint=args.fp,
        version=args.version,
        on_peer=lambda p: emit("peer", **dataclasses.asdict(p)),
        on_peer_lost=lambda node_id: emit("lost", node_id=node_id),
        interfaces=args.interface or InterfaceChoice.All,
        advertise_host=args.advertise_host,
        requery_interval_s=args.requery,
        requery_max_interval_s=args.requery_max,
    )
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def watch_stdin() -> None:
        try:
            while sys.stdin.buffer.read(4096):
                pass
        except (OSError, ValueError):
            pass
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=watch_stdin, daemon=True).start()
    await disc.start()
    emit("started", node_id=args.node_id, running=disc.running, advertised=disc.advertised)
    await stop.wait()
    await disc.close()
    emit("closed")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))

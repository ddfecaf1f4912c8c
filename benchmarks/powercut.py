"""Power cuts of a whole 3-node cluster, per --durability: what an acknowledgment is worth.

    sudo .venv/bin/python benchmarks/powercut.py [--cuts 20] [--modes fsync,written,memory]
                                                 [--rate 40] [--acks 20,80] [--markdown FILE]

Each node's data dir is the mount of its own FUSE disk that loses whatever was
not fsynced (p2pq/testing/powercut.py). Under a recorded load of submits,
--cuts times: SIGKILL every node, then cut the power of every disk, restart
every node on what its disk kept, and go on. At the end the checker reads the
leader's table. An acknowledged task the table lacks is lost, and is charged
to the cut that ended the window in which it was acknowledged. Needs root,
/dev/fuse and libfuse3 (mfusepy).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from p2pq.testing.powercut import unavailable_reason  # noqa: E402
from p2pq.testing.powercut_cluster import CutRun, run_cuts  # noqa: E402

HEADER = ("| `--durability` | cuts | acknowledged before a cut | lost | lost per cut: median / max "
          "| cuts that lost any | runs left without an attempt | term went back | other problems | run s |")


def row(run: CutRun) -> str:
    acked, lost = sum(run.acked_per_cut), sum(run.lost_per_cut)
    share = f" ({100 * lost / acked:.0f} %)" if acked else ""
    others = [p for p in run.verdict.problems if not p.startswith("lost ") and "not recorded as an attempt" not in p]
    others_text = "; ".join(p.split(":")[0] for p in others) or "none"
    return (f"| `{run.durability}` | {run.cuts} | {acked} | {lost}{share} | "
            f"{statistics.median(run.lost_per_cut):g} / {max(run.lost_per_cut)} | "
            f"{sum(1 for n in run.lost_per_cut if n)} | {len(run.verdict.invisible_runs)} | "
            f"{run.term_regressions} | {others_text} | "
            f"{run.seconds:.0f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cuts", type=int, default=20)
    parser.add_argument("--modes", default="fsync,written,memory")
    parser.add_argument("--rate", type=float, default=40.0, help="submits per second (4 clients)")
    parser.add_argument("--acks", default="20,80",
                        help="LO,HI: each cut comes after a random LO..HI more acknowledgments")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--markdown", type=Path, help="also write the table here")
    args = parser.parse_args()
    reason = unavailable_reason()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    runs = []
    for mode in args.modes.split(","):
        started = time.monotonic()

        def progress(k: int, acked: int) -> None:
            print(f"  {mode}: cut {k}/{args.cuts} after {acked} acknowledgments "
                  f"({time.monotonic() - started:.0f} s)", file=sys.stderr, flush=True)
        low, high = (int(n) for n in args.acks.split(","))
        runs.append(run_cuts(mode, args.cuts, rate_per_s=args.rate, acks_per_cut=(low, high), seed=args.seed,
                             on_cut=progress))
        print(f"{mode}: lost per cut {runs[-1].lost_per_cut}; problems: {runs[-1].verdict.problems}",
              file=sys.stderr, flush=True)
    table = "\n".join([HEADER, "|" + "---|" * (HEADER.count("|") - 1),
                       *(row(run) for run in runs)])
    print(table)
    if args.markdown:
        args.markdown.write_text(f"3 nodes, {args.rate:g} submits/s, {args.cuts} cuts per mode, each after "
                                 f"{args.acks.replace(',', '-')} more acknowledgments, seed {args.seed}"
                                 f"\n\n{table}\n")
    failed = any(run.durability == "fsync" and (run.lost or run.lost_after) for run in runs)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

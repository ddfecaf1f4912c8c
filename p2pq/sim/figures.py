"""The report's figures (matplotlib, the optional `report` extra).

Each function draws one PNG from sweep results or one kept run and returns
its path. Figures are small (about 7 x 4 inches at 100 dpi) so the example
set can live in git; docs/simulation.md says how to read each one.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed, works in CI
import matplotlib.pyplot as plt  # noqa: E402

DPI = 100
L1_TARGET_S = 1.5  # DESIGN.md L1: a new leader accepts submits within about 1.5 s
MODE_STYLE = {"available": "-", "quorum": "--"}


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def failover_cdf(sweeps: list, path: Path) -> Path | None:
    """The CDF of failover times, one line per fault shape (solid: available, dashed: quorum)."""
    lines = [(s.scenario, s.mode, sorted(x for r in s.results for x in r.report.failover_s)) for s in sweeps]
    lines = [line for line in lines if line[2]]
    if not lines:
        return None
    fig, ax = plt.subplots(figsize=(10, 4.8))
    colors = _colors(sorted({name for name, _, _ in lines}))
    for name, mode, xs in lines:
        ys = [(i + 1) / len(xs) for i in range(len(xs))]
        label = f"{name} ({mode}, n={len(xs)})"
        ax.step(xs, ys, where="post", color=colors[name], linestyle=MODE_STYLE.get(mode, "-"), label=label)
    ax.axvline(L1_TARGET_S, color="grey", linewidth=0.8, linestyle=":")
    ax.text(L1_TARGET_S, 0.5, " L1 target (1.5 s)", color="grey", fontsize=8)
    ax.set(xlabel="failover time: fault to first acknowledgment under a newer term (s)",
           ylabel="fraction of failovers", ylim=(0, 1.02), title="Failover time by fault shape")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(alpha=0.3)
    return _save(fig, path)


def timeline(result, path: Path, bin_s: float = 0.5) -> Path:
    """Throughput and latency of one run over time, fault windows shaded, leader changes marked."""
    history = result.world.history
    acked = sorted((op.acked_at, op.acked_at - op.invoked_at) for op in history.ops.values()
                   if op.acked_at is not None)
    end = result.sim_time_s
    bins = [0] * (int(end / bin_s) + 1)
    for at, _ in acked:
        bins[int(at / bin_s)] += 1
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 5), sharex=True)
    top.step([i * bin_s for i in range(len(bins))], [b / bin_s for b in bins], where="post", color="C0")
    fig.suptitle(f"{result.scenario} seed {result.seed} ({result.mode} mode): throughput and latency; "
                 "shaded: faults")
    top.set(ylabel="acks / s")
    bottom.scatter([a for a, _ in acked], [lat * 1000 for _, lat in acked], s=4, color="C1")
    bottom.set(yscale="log", ylabel="submit latency (ms)", xlabel="simulated time (s)")
    _shade_faults(top, bottom, history, result.duration_s)
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
        ax.set_xlim(0, max(end, result.duration_s) + 0.5)
    return _save(fig, path)


def _shade_faults(top, bottom, history, heal_s: float) -> None:
    colors = _colors(sorted({w.kind for w in history.windows}))
    labelled = set()
    for w in history.windows:
        for ax in (top, bottom):
            ax.axvspan(w.start_s, w.end_s or heal_s, color=colors[w.kind], alpha=0.18, linewidth=0)
        if w.kind not in labelled:
            labelled.add(w.kind)
            top.axvspan(0, 0, color=colors[w.kind], alpha=0.3, label=w.kind)
    elections = [at for at, _, kind, _ in history.notes if kind == "leader_elected"]
    for at in elections:
        top.axvline(at, color="black", linewidth=0.6, alpha=0.5)
    top.axvline(heal_s, color="green", linewidth=1.0, linestyle="--", label="heal")
    top.plot([], [], color="black", linewidth=0.6, alpha=0.5, label="leader elected")
    top.legend(fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.12), ncol=8, frameon=False)


def election_messages(points: list[dict], path: Path) -> Path:
    """Election traffic for one leader crash against cluster size, with the n^2 reference."""
    sizes = sorted({p["nodes"] for p in points})
    by_size = defaultdict(list)
    for p in points:
        by_size[p["nodes"]].append(p["messages"])
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for n in sizes:
        ax.scatter([n] * len(by_size[n]), by_size[n], s=8, color="C0", alpha=0.25)
    means = [sum(by_size[n]) / len(by_size[n]) for n in sizes]
    ax.plot(sizes, means, "o-", color="C0", label="mean over seeds (dots: each seed)")
    ax.plot(sizes, [max(by_size[n]) for n in sizes], "s--", color="C3", label="worst seed")
    ax.plot(sizes, [n * (n - 1) for n in sizes], "-", color="grey", linewidth=6, alpha=0.3, zorder=0,
            label="n(n-1): bully's worst case")
    ax.plot(sizes, [2 * (n - 1) for n in sizes], "-.", color="grey", label="2(n-1): its best case")
    ax.set(xlabel="cluster size n", ylabel="election + answer + coordinator messages",
           title="Messages to elect a new leader after the leader crashes")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def failover_vs_timeout(points: list[dict], path: Path) -> Path:
    """Failover time against the failure-detection timeout (median and 10-90 % band)."""
    points = sorted(points, key=lambda p: p["failure_timeout_s"])
    xs = [p["failure_timeout_s"] for p in points]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.fill_between(xs, [p["p10_s"] for p in points], [p["p90_s"] for p in points], color="C0", alpha=0.2,
                    label="10-90 % of seeds")
    ax.plot(xs, [p["p50_s"] for p in points], "o-", color="C0", label="median failover")
    ax.plot(xs, xs, ":", color="grey", label="y = timeout")
    ax.set(xlabel="failure-detection timeout (s)", ylabel="failover time (s)",
           title="Failover time against the failure-detection timeout (leader power-off)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def available_vs_quorum(summaries: list[dict], path: Path) -> Path | None:
    """Per fault shape and mode: duplicates, split-brain time, refused submits (per run)."""
    by = {(s["scenario"], s["mode"]): s for s in summaries}
    names = [n for n in dict.fromkeys(s["scenario"] for s in summaries)
             if (n, "available") in by and (n, "quorum") in by]
    if not names:
        return None
    panels = [("duplicated", "duplicated tasks / run"), ("multi_leader_s", "time with >1 leader (s / run)"),
              ("concurrent_ack_s", "two terms acknowledging (s / run)"), ("refused", "refused submits / run")]
    fig, axes = plt.subplots(1, len(panels), figsize=(12, 0.32 * len(names) + 1.6), sharey=True)
    ys = range(len(names))
    for ax, (key, label) in zip(axes, panels):
        for k, mode in enumerate(("available", "quorum")):
            values = [by[(n, mode)][key] / max(1, by[(n, mode)]["seeds"]) for n in names]
            ax.barh([y + (k - 0.5) * 0.4 for y in ys], values, height=0.4, color=f"C{k}", label=mode)
        ax.set_xlabel(label, fontsize=8)
        if key == "refused":
            ax.set_xscale("symlog", linthresh=10)
        ax.tick_params(labelsize=7)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(list(ys), names)
    axes[0].invert_yaxis()
    axes[0].legend(fontsize=7)
    fig.suptitle("Available vs quorum mode: what split brain costs, and what refusing submits buys")
    return _save(fig, path)


def _colors(keys: list[str]) -> dict[str, str]:
    cmap = plt.get_cmap("tab20" if len(keys) > 10 else "tab10")
    return {k: cmap(i % cmap.N) for i, k in enumerate(keys)}


def draw_sweep_figures(out: Path, sweeps: list) -> list[Path]:
    """The figures one `p2pq sim ... --out DIR` can draw from its own sweeps."""
    out.mkdir(parents=True, exist_ok=True)
    drawn = [failover_cdf(sweeps, out / "failover_cdf.png"),
             available_vs_quorum([s.summary() for s in sweeps], out / "available_vs_quorum.png")]
    first = sweeps[0]
    pick = (first.failures or first.results)[0]
    from .runner import run
    from .scenarios import get
    found = get(pick.source or pick.scenario)
    kept = run(found.name, found, pick.seed, nodes=pick.nodes, mode=pick.mode, end_faults_s=pick.duration_s,
               keep_world=True)
    drawn.append(timeline(kept, out / f"timeline_{kept.scenario}_seed{kept.seed}.png"))
    return [p for p in drawn if p is not None]

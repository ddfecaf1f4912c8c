"""`p2pq sim` and the report: what a student types, and what lands on disk."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from p2pq.sim.command import sim
from p2pq.sim.scenarios import SCENARIOS

REPO = Path(__file__).resolve().parents[2]


def invoke(*args: str):
    return CliRunner().invoke(sim, list(args), catch_exceptions=False)


def test_list_names_every_scenario_with_its_summary():
    result = invoke("--list")
    assert result.exit_code == 0
    assert "majorities-ring" in result.output and "Jepsen" in result.output


def test_an_unknown_scenario_is_one_clear_line_and_exit_1():
    result = invoke("no-such-shape")
    assert result.exit_code == 1
    assert "unknown scenario 'no-such-shape'" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("spelling", ["isolate_leader", "isolate-leader", "Isolate-Leader"])
def test_scenarios_are_found_with_hyphens_or_underscores(spelling):
    result = invoke(spelling, "--seeds", "2", "--jobs", "1", "--json")
    assert result.exit_code == 0
    doc = json.loads(result.output)
    assert doc["scenario"] == "isolate-leader" and doc["seeds"] == 2 and doc["lost"] == 0


def test_a_replay_prints_the_trace_hash_and_the_elections():
    result = invoke("leader-crash", "--seed", "3", "--trace")
    assert result.exit_code == 0
    assert "trace hash:" in result.output and "leader_elected" in result.output
    assert "fault crash" in result.output


LEADER_DIES_FOR_GOOD = """
from p2pq.sim.faults import crash, hold, leader_of
from p2pq.sim.scenarios import Scenario
from p2pq.sim.workload import Workload

def schedule(world):
    \"\"\"The leader dies with its disk: only its follower's copy remains.\"\"\"
    hold(world, 3.0 + world.rng.random(), crash(leader_of), None)

# More work than the 5 slots can take, so acknowledged tasks wait in the queue.
SCENARIO = Scenario("leader-dies-for-good", schedule, duration_s=6.0, restart_at_heal=False,
                    workload=Workload(rate_per_s=40.0, duration_s=(0.2, 0.5)))
"""


def test_a_failing_run_prints_its_seed_and_the_command_that_replays_it(monkeypatch, tmp_path):
    from p2pq.core import replication
    path = tmp_path / "leader_dies_for_good.py"
    path.write_text(LEADER_DIES_FOR_GOOD)
    assert invoke(str(path), "--seeds", "3", "--jobs", "1").exit_code == 0
    monkeypatch.setattr(replication, "_commit_index", lambda core: core.last_index)
    monkeypatch.setattr(replication, "replicate", lambda core: None)
    result = invoke(str(path), "--seeds", "3", "--jobs", "1")
    assert result.exit_code == 1
    assert f"replay: p2pq sim {path} --seed" in result.output


def test_a_scenario_file_runs_by_path(tmp_path):
    result = invoke(str(REPO / "simulations" / "example_custom.py"), "--seeds", "2", "--jobs", "1", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["scenario"] == "example-custom"


def test_every_simulations_file_names_a_registered_scenario():
    from p2pq.sim.scenarios import canonical, load_file
    files = {canonical(p.stem): load_file(p) for p in (REPO / "simulations").glob("*.py")}
    assert set(SCENARIOS) <= set(files)
    assert all(files[name] is SCENARIOS[name] for name in SCENARIOS)


def test_out_writes_json_csv_and_figures(tmp_path):
    pytest.importorskip("matplotlib", reason="figures need the optional `report` extra")
    result = invoke("all", "--seeds", "2", "--mode", "both", "--jobs", "2", "--duration", "6",
                    "--out", str(tmp_path))
    assert result.exit_code in (0, 1), result.output  # 1 only for a (reported) failing seed
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert len(summary["sweeps"]) == 2 * len(SCENARIOS)
    rows = list(csv.DictReader((tmp_path / "runs.csv").open()))
    assert len(rows) == 2 * len(summary["sweeps"]) and {"trace_hash", "failover_s"} <= set(rows[0])
    for name in ("failover_cdf.png", "available_vs_quorum.png"):
        assert (tmp_path / name).stat().st_size > 10_000
    assert list(tmp_path.glob("timeline_*.png"))


def test_the_report_command_draws_every_figure(tmp_path):
    pytest.importorskip("matplotlib", reason="figures need the optional `report` extra")
    from p2pq.sim.report import make_report
    summary = make_report(tmp_path, seeds=2, jobs=2, quiet=True, scenarios=["leader-crash", "bridge"],
                          sizes=(3, 5), timeouts=(0.5, 1.0), experiment_seeds=3)
    assert {s["scenario"] for s in summary["sweeps"]} == {"leader-crash", "bridge"}
    for name in ("failover_cdf", "timeline", "election_messages", "failover_vs_timeout", "available_vs_quorum"):
        assert (tmp_path / f"{name}.png").stat().st_size > 10_000, name
    assert "| leader-crash | quorum |" in (tmp_path / "README.md").read_text()
    medians = [p["p50_s"] for p in summary["failover_vs_timeout"]]
    assert medians[0] < medians[1]  # detection time dominates failover

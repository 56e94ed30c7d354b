"""``glasscam plan`` end to end: the estimate against a real measured run (``mpiexec -n
2``: marked mpi), its JSON, its windows, its table, errors. The costing's arithmetic is
checked with given rates in test_plan_costing.py.

The estimate is checked against the real ``glasscam prepare`` under ``mpiexec -n 2`` on
the same config, right after the calibration: the quantity compared is a cooling run's
CPU seconds (logs/prepare.json's ``task_cpu_seconds``), which a loaded machine does not
inflate the way it does wall seconds.
"""

from __future__ import annotations

import json
import math

import pytest

from conftest import TINY_TOML, glasscam
from glasscam_mpi.stages import STAGES

STAGE_ORDER = tuple(STAGES)  # the workflow order, from the stages' needs

# TINY_TOML with enough MD per run (~1 s at N = 400, 17,800 steps) that the run, not the
# set-up around it, is what is measured
CHECK = ["--set", "system.n_particles=400", "--set", "prepare.t_equilibrate=10.0",
         "--set", "prepare.cooling_rate=0.05"]


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    base = tmp_path_factory.mktemp("plan")
    cfg = base / "tiny.toml"
    cfg.write_text(TINY_TOML)
    profile = base / "short.toml"
    profile.write_text('partition = "local"\nnodes = 1\nntasks_per_node = 2\ntime = "00:00:03"\n')
    plan = json.loads(glasscam(["plan", "--config", str(cfg), *CHECK, "--profile", str(profile),
                                "--json"]).stdout)
    run_dir = base / "run"
    glasscam(["prepare", "--config", str(cfg), *CHECK, "--run-dir", str(run_dir)], n=2)
    log = json.loads((run_dir / "logs" / "prepare.json").read_text())
    return plan, log


@pytest.mark.mpi
def test_prepare_estimate_within_25_percent_of_a_measured_run(planned):
    plan, log = planned
    est = plan["stages"]["prepare"]
    measured = log["task_cpu_seconds"]
    assert log["tasks_run"] == 6 and not log["tasks_failed"]
    ratio = est["task_seconds"] / measured["mean"]
    assert 0.75 <= ratio <= 1.25, (est["task_seconds"], measured)
    core_ratio = est["core_hours"] * 3600 / measured["sum"]
    assert 0.75 <= core_ratio <= 1.25, (est["core_hours"], measured)


@pytest.mark.mpi
def test_json_has_every_stage_and_totals_are_the_sums(planned):
    plan, _ = planned
    keys = {"core_hours", "gpu_hours", "wall_hours", "disk_bytes", "memory_per_rank_bytes",
            "jobs", "windows", "tasks", "task_seconds", "basis"}
    assert list(plan["stages"]) == list(STAGE_ORDER)
    for name, s in plan["stages"].items():
        assert keys <= s.keys(), name
        assert s["memory_per_rank_bytes"] > 0 and s["basis"]
    for key in ("core_hours", "gpu_hours", "disk_bytes", "jobs", "windows"):
        assert plan["total"][key] == pytest.approx(sum(s[key] for s in plan["stages"].values()))
    walls = [s["wall_hours"] for s in plan["stages"].values()]
    assert plan["total"]["wall_hours"] == (None if None in walls else pytest.approx(sum(walls)))
    assert plan["total"]["memory_per_rank_bytes"] == max(
        s["memory_per_rank_bytes"] for s in plan["stages"].values())
    # the profile has no GPU: nothing on a GPU, training on the CPU ranks
    assert plan["total"]["gpu_hours"] == 0 and plan["stages"]["train"]["core_hours"] > 0
    # prepare.h5 of 6 runs of N = 400 in 2D: liquid and glass float64 dominate
    assert plan["stages"]["prepare"]["disk_bytes"] > 6 * 2 * 400 * 2 * 8


@pytest.mark.mpi
def test_windows_of_a_short_profile(planned):
    """A 3 s window on 2 ranks: each rank finishes floor(3 / t) runs per window."""
    plan, _ = planned
    s = plan["stages"]["prepare"]
    t = s["task_seconds"]
    if t > 3:
        assert s["windows"] == 0 and s["wall_hours"] is None
        assert any("longer than the profile's window" in w for w in plan["warnings"])
    else:
        assert s["windows"] == math.ceil(6 / (2 * int(3 // t)))
        assert s["jobs"] == s["windows"]
        assert s["wall_hours"] * 3600 == pytest.approx(math.ceil(6 / 2) * t)


def test_human_output_names_stages_and_what_was_measured(tmp_path):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY_TOML)
    out = glasscam(["plan", "--config", str(cfg), "--profile", "local"]).stdout
    for name in STAGE_ORDER:
        assert f"\n{name} " in out
    assert "core-h" in out and "windows" in out and "MD calibration here" in out
    assert "prepare: measured: LAMMPS set-up" in out


@pytest.mark.slow
def test_3d_training_grids_are_stated(tmp_path):
    """KA3D at 48^3: 2 x 4000 x 2 species x 48^3 float32 = 6.6 GiB of training grids."""
    res = glasscam(["plan", "--preset", "ka3d", "--set", "system.n_particles=1000",
                    "--set", "propensity.T_star=0.435", "--profile", "generic", "--json"])
    plan = json.loads(res.stdout)
    train = plan["stages"]["train"]
    grid = 2 * 4000 * 2 * 48 ** 3 * 4
    assert "training grids 6.59 GiB (8000 x 2 x 48^3 float32)" in train["memory_note"]
    assert train["memory_per_rank_bytes"] >= grid // 32  # shared by the node's 32 ranks
    assert train["gpu_hours"] > 0 and train["core_hours"] == 0  # generic has GPUs


@pytest.mark.parametrize("args, message", [
    (["--preset", "nope"], "unknown preset 'nope'; allowed: demo, study, paper-kam"),
    (["--preset", "demo", "--profile", "nope"], "Slurm profile 'nope' not found; known:"),
    (["--preset", "demo", "--rates-from", "/nonexistent/run"],
     "--rates-from '/nonexistent/run': not a directory"),
    (["--preset", "demo", "--set", "prepare.n_runs=two"], "[prepare].n_runs = 'two'"),
])
def test_bad_input_is_one_clear_error(args, message):
    res = glasscam(["plan", *args], check=False)
    assert res.returncode == 2, res.stderr
    assert res.stderr.startswith("glasscam plan: error: ") and message in res.stderr


def test_rates_from_a_run_without_a_train_log_is_refused(tmp_path):
    res = glasscam(["plan", "--preset", "demo", "--rates-from", str(tmp_path)], check=False)
    assert res.returncode == 2
    assert f"{tmp_path}/logs/train.json does not exist" in res.stderr


def test_rates_from_a_trained_run_replace_the_measured_training_rate(tiny_prepared, tmp_path):
    """A real (tiny) training run's logs/train.json prices training on the GPU profile."""
    from conftest import TINY_TRAIN_TOML, copy_prepared

    cfg = tmp_path / "c.toml"
    cfg.write_text(TINY_TOML + TINY_TRAIN_TOML + '\nbackend = "single"\n')
    rd = copy_prepared(tiny_prepared, tmp_path / "run")
    glasscam(["train", "--run-dir", str(rd), "--config", str(cfg)], n=1)
    log = json.loads((rd / "logs" / "train.json").read_text())
    plan = json.loads(glasscam(["plan", "--config", str(cfg), "--profile", "generic",
                                "--rates-from", str(rd), "--json"]).stdout)
    learning = plan["calibration"]["learning"]
    assert learning["train_samples_per_s"] == pytest.approx(log["samples_per_s"] / log["ranks"],
                                                            rel=1e-3)
    assert str(rd / "logs" / "train.json") in learning["source"]
    train = plan["stages"]["train"]
    # 3 epochs of the 3 train runs x 2 samples (TINY_TOML: 6 runs, 50 % train)
    assert train["gpu_hours"] * 3600 >= 3 * 6 / learning["train_samples_per_s"]
    assert any("--rates-from" in w for w in plan["warnings"])  # the log is a CPU run's


def test_ranks_per_task_shortens_the_wall_time_not_the_core_hours():
    """A LAMMPS task on k ranks: k times fewer tasks at a time, each k times shorter (perfect
    scaling assumed and said), the same core-hours. The rates are given, not measured, so
    the arithmetic is exact; ``ranks_per_task`` is set on the section as the key will be."""

    from glasscam_mpi import plan as plan_mod
    from glasscam_mpi.config import load_config
    from glasscam_mpi.slurm import load_profile

    from conftest import given_rates

    cfg = load_config(preset="demo")
    md, learn = given_rates(cfg)
    profile = load_profile("generic")
    one = plan_mod.make_plan(cfg, profile, md, learn)["stages"]["prepare"]
    object.__setattr__(cfg.prepare, "ranks_per_task", 4)
    four = plan_mod.make_plan(cfg, profile, md, learn)["stages"]["prepare"]
    # one run: 1 s set-up + 4000 steps at T_high (2e-4 s) + the ramp 4 -> 0.05 (mean of
    # the linear seconds per step over the ramp)
    n_eq, n_ramp = 4000, 39500
    t = 1.0 + n_eq * 2e-4 + n_ramp * (1e-4 + 2e-4) / 2
    assert one["task_seconds"] == pytest.approx(t) == four["task_seconds"]
    assert four["core_hours"] == pytest.approx(one["core_hours"]) == pytest.approx(120 * t / 3600)
    # 120 runs: 128 ranks run all at once with 1 rank per task, 32 at a time with 4
    assert one["wall_hours"] * 3600 == pytest.approx(t)
    assert four["wall_hours"] * 3600 == pytest.approx(math.ceil(120 / 32) * t / 4)
    assert "4 ranks per task" in four["basis"]


def test_a_run_longer_than_the_window_is_null_in_strict_json(tmp_path):
    """The N = 400 runs at cooling rate 0.01 take ~4 s each: a 1 s window cannot hold one."""
    profile = tmp_path / "tiny_window.toml"
    profile.write_text('partition = "local"\nnodes = 1\nntasks_per_node = 2\ntime = "00:00:01"\n')
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY_TOML)
    res = glasscam(["plan", "--config", str(cfg), *CHECK, "--set", "prepare.cooling_rate=0.01",
                    "--profile", str(profile), "--json"])
    plan = json.loads(res.stdout, parse_constant=lambda c: pytest.fail(f"non-JSON {c}"))
    assert plan["stages"]["prepare"]["wall_hours"] is None
    assert plan["total"]["wall_hours"] is None and plan["stages"]["prepare"]["windows"] == 0
    assert any("prepare: one task takes" in w for w in plan["warnings"])

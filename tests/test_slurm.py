"""Slurm job scripts: golden rendering, quoting, sbatch command building, profile errors,
``submit --dry-run``, and the real thing: jobs submitted to a single-node Slurm
(slurmctld + slurmd + munge, started by ``hpc/slurm/localcluster.sh``).

The real-Slurm tests (marked ``slurm``) need root and Debian's slurm-wlm + munge, which
``bash hpc/bootstrap.sh --dev`` installs. Where they are missing the tests FAIL, with a
message saying what is missing, so that CI cannot pass without them. To skip them on
purpose (a workstation without root, say), set ``GLASSCAM_SKIP_SLURM=1``.
"""

import dataclasses
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import ROOT, WALLTIME_PROFILE, assert_same_data, glasscam, read_stage
from glasscam_mpi.config import ConfigError
from glasscam_mpi.slurm import (Profile, Slurm, SlurmError, load_profile,
                                render, stages_with_scripts, submission_env)
from glasscam_mpi.stages import JOBS

GOLDEN = ROOT / "tests" / "golden"
EXE = "/opt/glasscam/.venv/bin/glasscam"
# A run directory name a shell would split or run: a space, ';', both quotes, $(...), and
# '%j' (which sbatch's --output would expand to the job id).
HOSTILE = """a b;touch pwned'"$(touch pwned)"%j"""


@pytest.mark.parametrize("stage, profile, run_dir, golden", [
    ("prepare", "generic", "/scratch/kam", "prepare.generic.sbatch"),
    ("prepare", "local2", "/scratch/kam", "prepare.local2.sbatch"),
    ("prepare", "local", f"/scratch/group dir/{HOSTILE}", "prepare.local.hostile.sbatch"),
    ("train", "generic", f"/scratch/group dir/{HOSTILE}", "train.generic.hostile.sbatch"),
    ("analyze", "generic", "/scratch/kam", "analyze.generic.sbatch"),
    ("report", "generic", "/scratch/kam", "report.generic.sbatch"),
])
def test_rendered_script_matches_golden_file(stage, profile, run_dir, golden):
    text = render(stage, load_profile(profile), run_dir, glasscam=EXE)
    assert text.encode() == (GOLDEN / golden).read_bytes()


def _bash_words(line: str) -> list[str]:
    """The words bash makes of one command line (bash itself prints them, NUL-separated)."""
    out = subprocess.run(["bash", "-c", "printf '%s\\0' " + line], capture_output=True,
                         check=True).stdout.decode()
    return out.split("\0")[:-1]


@pytest.mark.parametrize("stage", stages_with_scripts())
def test_every_value_is_one_shell_word(stage, tmp_path):
    """bash -n accepts the script, and bash reads the run directory, the launcher and the
    glasscam command (with a space in its path) back word for word: nothing runs that the
    user did not ask for."""
    run_dir = tmp_path / HOSTILE
    exe = ["/opt/my tools/python", "-m", "glasscam_mpi.cli"]
    text = render(stage, load_profile("local"), run_dir, glasscam=exe)
    script = tmp_path / "job.sbatch"
    script.write_text(text)
    subprocess.run(["bash", "-n", str(script)], check=True)
    lines = [x for x in text.splitlines() if x]
    assert _bash_words(next(x for x in lines if x.startswith("cd "))) == ["cd", str(run_dir)]
    launcher = [] if stage == "report" else ["srun", "--mpi=pmi2"]
    options = ["--resume"] if stage == "train" else []
    command = next(x for x in lines if x.endswith(" || status=$?"))
    assert _bash_words(command.removesuffix(" || status=$?")) == [
        *launcher, *exe, stage, *options, "--run-dir", str(run_dir)]
    resubmit = [x.strip() for x in lines if " resubmit " in x]
    if JOBS[stage].continues:   # the continuation after a walltime stop, same quoting
        assert len(resubmit) == 1 and _bash_words(resubmit[0].replace('"$SLURM_JOB_ID"', "J")) \
            == [*exe, "resubmit", stage, "--run-dir", str(run_dir), "--job", "J"]
        assert "#SBATCH --signal=USR1@300" in lines
    else:
        assert resubmit == [] and "--signal" not in text
    assert lines[-1] == 'exit "$status"'
    assert list(tmp_path.iterdir()) == [script]   # bash created nothing


def test_report_is_one_task_whatever_the_profile(tmp_path):
    big = Profile(name="big", nodes=8, ntasks_per_node=64, gpus_per_node=4)
    text = render("report", big, tmp_path)
    assert "#SBATCH --nodes=1\n#SBATCH --ntasks=1\n" in text
    assert "ntasks-per-node" not in text and "gpus" not in text and "srun" not in text
    assert "#SBATCH --nodes=8\n#SBATCH --ntasks-per-node=64\n" in render("analyze", big, tmp_path)


@pytest.mark.parametrize("bad", ["a\nb", "a\\b", "a\rb", "tab\there"])
def test_a_path_that_cannot_go_into_an_sbatch_line_is_refused(bad, tmp_path):
    with pytest.raises(ConfigError, match=r"run directory .* cannot go into a Slurm job script"):
        render("prepare", load_profile("local"), tmp_path / bad)


def test_submit_refuses_a_newline_in_the_run_dir_and_creates_nothing(tiny_config, tmp_path):
    run_dir = tmp_path / "runs" / "a\nb"
    res = glasscam(["submit", "prepare", "--dry-run", "--config", str(tiny_config),
                    "--run-dir", str(run_dir)], check=False)
    assert res.returncode == 2, res.stderr
    assert "glasscam submit: error: run directory" in res.stderr
    assert repr(str(run_dir)) in res.stderr and "newline" in res.stderr
    assert not (tmp_path / "runs").exists() and res.stdout == ""


def test_gpu_lines_only_for_gpu_stages(tmp_path):
    prof = load_profile("generic")
    assert "--gpus-per-node" not in render("propensity", prof, tmp_path)
    train = render("train", prof, tmp_path)
    assert "#SBATCH --gpus-per-node=4" in train and "train --resume --run-dir" in train
    assert "#SBATCH --gpus-per-node=4" in render("gradcam", prof, tmp_path)


def test_training_runs_one_task_per_gpu_with_the_cores_shared_out(tmp_path):
    """generic: 4 nodes x 32 cores, 4 GPUs per node. train: 4 tasks per node, one per GPU,
    8 cores (and OMP threads) each; gradcam keeps the 32 farm ranks per node sharing the
    node's 4 GPUs (a task explains 2 samples: one rank alone cannot keep a GPU busy);
    a CPU-only profile keeps its tasks for train."""
    prof = load_profile("generic")
    train = render("train", prof, tmp_path)
    for line in ("#SBATCH --nodes=4", "#SBATCH --ntasks-per-node=4", "#SBATCH --cpus-per-task=8",
                 "#SBATCH --gpus-per-node=4", "export OMP_NUM_THREADS=8"):
        assert line + "\n" in train, line
    gradcam = render("gradcam", prof, tmp_path)
    for line in ("#SBATCH --ntasks-per-node=32", "#SBATCH --cpus-per-task=1",
                 "#SBATCH --gpus-per-node=4", "export OMP_NUM_THREADS=1"):
        assert line + "\n" in gradcam, line
    cpu = dataclasses.replace(prof, gpus_per_node=0)
    train_cpu = render("train", cpu, tmp_path)
    assert "#SBATCH --ntasks-per-node=32\n" in train_cpu and "gpus" not in train_cpu
    assert "#SBATCH --cpus-per-task=1\n" in train_cpu


def test_signal_lead_zero_means_no_warning_and_no_continuation(tmp_path):
    text = render("prepare", Profile(name="x", signal_lead=0), tmp_path)
    assert "--signal" not in text and "resubmit" not in text
    assert "#SBATCH --signal=USR1@45\n" in render("prepare", Profile(name="x", signal_lead=45),
                                                  tmp_path)


def test_chain_uses_afterok_and_parses_ids():
    calls = []

    def runner(cmd, **kw):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, stdout=f"{100 + len(calls)};cluster\n", stderr="")

    jobs = Slurm(runner).submit_chain(["a.sbatch", "b.sbatch", "c.sbatch"])
    assert jobs == ["101", "102", "103"]
    assert calls[0] == ["sbatch", "--parsable", "a.sbatch"]
    assert calls[1] == ["sbatch", "--parsable", "--dependency=afterok:101", "b.sbatch"]
    assert calls[2] == ["sbatch", "--parsable", "--dependency=afterok:102", "c.sbatch"]


def test_submission_env_drops_job_bound_variables():
    env = submission_env({"PATH": "/bin", "SLURM_CONF": "/x/slurm.conf", "PMI_PORT": "h:1",
                          "PMI_FD": "5", "HYDRA_CONTROL_FD": "6", "SLURM_JOB_ID": "7",
                          "SLURM_NTASKS": "2", "OMP_NUM_THREADS": "1"})
    assert env == {"PATH": "/bin", "SLURM_CONF": "/x/slurm.conf", "OMP_NUM_THREADS": "1"}


def test_sbatch_failures_are_never_silent():
    fail = lambda cmd, **kw: subprocess.CompletedProcess(  # noqa: E731
        cmd, 1, stdout="", stderr="sbatch: error: invalid partition specified: gpu")
    with pytest.raises(SlurmError, match="invalid partition specified: gpu"):
        Slurm(fail).submit("x.sbatch")
    odd = lambda cmd, **kw: subprocess.CompletedProcess(cmd, 0, stdout="Submitted\n", stderr="")  # noqa: E731
    with pytest.raises(SlurmError, match="not a job id"):
        Slurm(odd).submit("x.sbatch")


def test_bad_profiles_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="known: generic, local"):
        load_profile("nosuch")
    bad = tmp_path / "p.toml"
    bad.write_text('nodes = 0\n')
    with pytest.raises(ConfigError, match="nodes = 0: must be an integer >= 1"):
        load_profile(str(bad))
    bad.write_text('time = "1 day"\n')
    with pytest.raises(ConfigError, match=r"time = '1 day': use \[D-\]HH:MM:SS"):
        load_profile(str(bad))
    bad.write_text('queue = "x"\n')
    with pytest.raises(ConfigError, match="unknown key 'queue'"):
        load_profile(str(bad))
    with pytest.raises(ConfigError, match="no job script for stage 'nosuch'; stages with "
                       "scripts: analyze, gradcam, indicators, prepare, propensity, report, train"):
        render("nosuch", load_profile("local"), tmp_path)
    with pytest.raises(ConfigError, match="no job script for stage '../base'"):
        render("../base", load_profile("local"), tmp_path)


@pytest.mark.parametrize("toml, message", [
    ('partition = "local\\n#SBATCH --wrap=x"', r"partition = 'local\\n#SBATCH --wrap=x': allowed: "
                                               r"letters, digits, '_', '.', '\+', '-' and ','"),
    ('partition = "a b"', r"partition = 'a b': allowed: .* a space, '#', a quote or a newline"),
    ('partition = "gpu,cpu"', None),
    ('account = "proj#1"', r"account = 'proj#1': allowed: letters, digits, '_', '.', '\+', '-', "),
    ('account = "p;q"', r"account = 'p;q'"),
    ('time = "01:00:00\\n"', r"time = '01:00:00\\n': use \[D-\]HH:MM:SS"),
    ('time = 3600', r"time = 3600: use \[D-\]HH:MM:SS"),
    ('sbatch_extra = ["--mem=4G\\necho pwned"]', r"sbatch_extra = '--mem=4G\\necho pwned': each "
                                                 r"entry .* starts with '-' and holds no control"),
    ('sbatch_extra = ["--comment=run#1"]', r"sbatch_extra = '--comment=run#1'.* no '#'"),
    ('sbatch_extra = ["mem=4G"]', r"sbatch_extra = 'mem=4G'.* starts with '-'"),
    ('sbatch_extra = "--mem=4G"', r"sbatch_extra = '--mem=4G': must be a list of strings"),
    ('sbatch_extra = ["--mem=4G", "--constraint=ib&v100"]', None),
    ('launcher = "srun --mpi=pmi2\\nrm -rf x"',
     r"launcher = 'srun --mpi=pmi2\\nrm -rf x': one line"),
    ("launcher = \"srun 'oops\"", r"launcher = \"srun 'oops\": cannot be split into words"),
    ('gpus_per_node = -1', r"gpus_per_node = -1: must be an integer >= 0"),
    ('setup = "module load x"', r"setup = 'module load x': must be a list of strings"),
    ('signal_lead = -1', r"signal_lead = -1: seconds before the time limit .* an integer from 0 "
                         r"\(no warning\) to 65535"),
    ('signal_lead = "60"', r"signal_lead = '60': seconds before the time limit"),
    ('signal_lead = 70000', r"signal_lead = 70000: seconds"),
    ('signal_lead = 0', None),
])
def test_profile_fields_that_would_end_a_directive_are_refused(toml, message, tmp_path):
    path = tmp_path / "site.toml"
    path.write_text(toml + "\n")
    if message is None:
        load_profile(str(path))
        return
    with pytest.raises(ConfigError, match=f"^profile {path}: {message}"):
        load_profile(str(path))


def test_profiles_made_in_code_are_checked_at_render_time(tmp_path):
    with pytest.raises(ConfigError, match=r"profile 'x': partition = 'a b'"):
        render("prepare", Profile(name="x", partition="a b"), tmp_path)
    with pytest.raises(ConfigError, match=r"profile 'x\\ny': name = 'x\\ny'"):
        render("prepare", Profile(name="x\ny"), tmp_path)


def test_dry_run_refuses_a_bad_config(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[system]\nn_particles = 10\n")
    res = glasscam(["submit", "prepare", "--dry-run", "--config", str(bad),
                    "--run-dir", str(tmp_path / "r")], check=False)
    assert res.returncode == 2 and "n_particles" in res.stderr and res.stdout == ""
    assert not (tmp_path / "r" / "jobs").exists()


@pytest.fixture(scope="module")
def local_slurm(tmp_path_factory):
    """A real single-node Slurm for this file's tests (hpc/slurm/localcluster.sh); module
    scope, so that test_multinode.py's 2-node cluster (the same ports: one Slurm per
    machine) can start after it in the same session.

    Fails, saying what is missing, where it cannot start; GLASSCAM_SKIP_SLURM=1 skips."""
    if os.environ.get("GLASSCAM_SKIP_SLURM", "") not in ("", "0"):
        pytest.skip("GLASSCAM_SKIP_SLURM is set: real-Slurm tests skipped on request")
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    missing = [exe for exe in ("sbatch", "scontrol", "squeue", "sinfo", "munged", "slurmctld",
                               "slurmd") if shutil.which(exe, path=path) is None]
    if missing:
        pytest.fail(f"the real-Slurm tests need slurm-wlm and munge; missing: {', '.join(missing)}. "
                    "Run 'bash hpc/bootstrap.sh --dev' (it installs them), or set "
                    "GLASSCAM_SKIP_SLURM=1 to skip these tests on purpose.", pytrace=False)
    if os.geteuid() != 0:
        pytest.fail("the real-Slurm tests need root (slurmd runs jobs as their user); run them "
                    "as root, or set GLASSCAM_SKIP_SLURM=1 to skip them on purpose.", pytrace=False)
    state = tmp_path_factory.mktemp("slurm")
    script = ROOT / "hpc/slurm/localcluster.sh"
    res = subprocess.run(["bash", str(script), "start", str(state)], timeout=120,
                         capture_output=True, text=True)
    if res.returncode != 0:
        subprocess.run(["bash", str(script), "stop", str(state)], timeout=60)
        pytest.fail(f"{script} start {state} failed ({res.returncode}):\n{res.stdout}{res.stderr}"
                    "\n(set GLASSCAM_SKIP_SLURM=1 to skip the real-Slurm tests on purpose)",
                    pytrace=False)
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(state / "slurm.conf")
    yield state
    subprocess.run(["bash", str(script), "stop", str(state)], timeout=60)
    if old is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = old


def _jobs_known_to_slurm() -> set[str]:
    """Every job slurmctld knows: queued, running, or ended less than MinJobAge ago."""
    out = subprocess.run(["squeue", "-h", "-t", "all", "-o", "%i"], capture_output=True,
                         text=True, check=True).stdout
    return set(out.split())


def _wait_for(job: str, timeout: float = 240) -> str:
    t0 = time.time()
    while time.time() - t0 < timeout:
        out = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True).stdout
        state = next((w.split("=")[1] for w in out.split() if w.startswith("JobState=")), "")
        if state in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"):
            return state
        time.sleep(0.5)
    raise AssertionError(f"job {job} did not finish in {timeout} s:\n{out}")


@pytest.mark.mpi  # its reference run (or fixture) is an mpiexec run
@pytest.mark.slurm
def test_prepare_job_on_real_slurm_equals_mpiexec(local_slurm, tiny_config, tiny_prepared, tmp_path):
    """The stage runs on Slurm in a run directory whose name has a space, ';', quotes,
    $(...) and '%j'; the log lands in its logs/, and nothing is made outside it."""
    run_dir = tmp_path / HOSTILE
    before = set(tmp_path.iterdir())
    res = glasscam(["submit", "prepare", "--profile", "local", "--config", str(tiny_config),
                    "--run-dir", str(run_dir)])
    job = res.stdout.split("job ")[1].split()[0]
    subprocess.run(["bash", "-n", str(run_dir / "jobs" / "prepare.sbatch")], check=True)
    assert _wait_for(job) == "COMPLETED"
    log = (run_dir / "logs" / f"slurm-prepare-{job}.out").read_text()
    assert "2 rank(s)" in log and "wrote" in log
    # srun with 2 ranks under Slurm gives the very data mpiexec gave
    assert_same_data(read_stage(tiny_prepared / "prepare.h5"), read_stage(run_dir / "prepare.h5"))
    # nothing was made outside the run directory, and no 'pwned' anywhere: not in it, not
    # where sbatch was called (the job's first working directory), not in $HOME
    assert set(tmp_path.iterdir()) == before | {run_dir}
    assert [p for p in tmp_path.rglob("*pwned*") if p.name.startswith("pwned")] == []
    assert {"pwned", "pwned%j"}.isdisjoint(os.listdir(run_dir))
    for where in (ROOT, Path.home(), Path("/tmp")):
        assert not (where / "pwned").exists()


@pytest.mark.slurm
def test_dry_run_prints_and_writes_the_scripts_and_submits_nothing(local_slurm, tiny_config,
                                                                    tmp_path):
    run_dir = tmp_path / "dry run"
    stages = ["prepare", "indicators", "analyze", "report"]
    known = _jobs_known_to_slurm()
    res = glasscam(["submit", *stages, "--dry-run", "--profile", "local", "--config",
                    str(tiny_config), "--run-dir", str(run_dir)])
    assert _jobs_known_to_slurm() == known   # sbatch was never called
    expected = ""
    for stage in stages:
        path = run_dir / "jobs" / f"{stage}.sbatch"
        assert path.read_text() == render(stage, load_profile("local"), run_dir)
        expected += f"# ---- {path}\n{path.read_text()}\n"
    assert res.stdout == expected
    assert (run_dir / "config.toml").exists() and (run_dir / "logs").is_dir()
    assert not (run_dir / "prepare.h5").exists()


@pytest.mark.slurm
def test_bad_config_is_refused_at_submission(local_slurm, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[system]\nn_particles = 10\n")
    res = glasscam(["submit", "prepare", "--config", str(bad), "--run-dir", str(tmp_path / "r")],
                   check=False)
    assert res.returncode == 2 and "n_particles" in res.stderr
    assert not Path(tmp_path / "r" / "jobs").exists()


@pytest.mark.slurm
def test_stage_chain_runs_in_order_on_real_slurm(local_slurm, tmp_path):
    from test_mpi_indicators_propensity import PROPENSITY_TOML

    from conftest import TINY_TOML

    cfg = tmp_path / "c.toml"
    cfg.write_text(TINY_TOML + PROPENSITY_TOML)
    run_dir = tmp_path / "chain"
    res = glasscam(["submit", "prepare", "indicators", "propensity", "--profile", "local",
                    "--config", str(cfg), "--run-dir", str(run_dir)])
    jobs = [line.split("job ")[1] for line in res.stdout.splitlines() if ": job " in line]
    assert len(jobs) == 3
    # without afterok, indicators and propensity would start at once and fail on the missing
    # prepare.h5 (a FAILED job): all three COMPLETED means they ran in order
    assert [_wait_for(j) for j in jobs] == ["COMPLETED"] * 3
    for stage in ("prepare", "indicators", "propensity"):
        assert (run_dir / f"{stage}.h5").exists()
    info = json.loads(glasscam(["info", str(run_dir)]).stdout)
    assert info["complete"] == ["prepare", "indicators", "propensity"]


@pytest.mark.mpi  # its reference run (or fixture) is an mpiexec run
@pytest.mark.slurm
def test_train_job_resubmitted_after_a_crash_resumes_then_gradcam_runs(local_slurm, tiny_prepared,
                                                                       tmp_path):
    """The train job script (srun, Horovod) crashes in epoch 3; the same stage submitted
    again continues from the checkpoint and gives the loss curve of an uninterrupted
    mpiexec run, bit for bit; the gradcam job then runs after it (afterok)."""
    import shutil

    import h5py
    import numpy as np
    from test_mpi_train_gradcam import TRAIN_TOML

    from conftest import TINY_TOML

    cfg = tmp_path / "c.toml"
    cfg.write_text(TINY_TOML + TRAIN_TOML.format(backend="horovod", epochs=4))
    runs = {}
    for name in ("ref", "slurm"):
        runs[name] = tmp_path / name
        runs[name].mkdir()
        for f in ("prepare.h5", "config.toml"):
            shutil.copy(tiny_prepared / f, runs[name] / f)
    glasscam(["train", "--config", str(cfg), "--run-dir", str(runs["ref"])], n=2)

    rd = runs["slurm"]
    res = glasscam(["submit", "train", "--profile", "local", "--config", str(cfg),
                    "--run-dir", str(rd)], env={"GLASSCAM_INJECT_CRASH": "train:2"})
    job = res.stdout.split("job ")[1].split()[0]
    assert _wait_for(job) == "FAILED"
    assert "injected crash in train epoch 2" in (rd / "logs" / f"slurm-train-{job}.out").read_text()
    assert not (rd / "train.h5").exists() and (rd / "train" / "checkpoint.pt").exists()

    res = glasscam(["submit", "train", "gradcam", "--profile", "local", "--run-dir", str(rd)])
    jobs = [line.split("job ")[1] for line in res.stdout.splitlines() if ": job " in line]
    assert [_wait_for(j) for j in jobs] == ["COMPLETED"] * 2
    out = (rd / "logs" / f"slurm-train-{jobs[0]}.out").read_text()
    assert "backend horovod on 2 rank(s)" in out and "epochs 3..4" in out
    with h5py.File(runs["ref"] / "train.h5", "r") as a, h5py.File(rd / "train.h5", "r") as b:
        for key in ("train_loss", "val_loss", "val_accuracy"):
            np.testing.assert_array_equal(a[key][:], b[key][:], err_msg=key)
    with h5py.File(rd / "gradcam.h5", "r") as fh:
        assert fh["gamma"].shape == (len(fh["runs"]), 2, 64) and (fh["gamma"][:] >= 0).all()


# A prepare of 40 runs of ~4.7 s each: ~94 s of work for 2 ranks, under a 1-minute limit
# with the warning 50 s before it. Slurm checks limits periodically (measured on 22.05: the
# warning came 15-25 s into the job, with a lead of 30 s or 50 s), so a job works at most
# ~40 s plus the runs in flight: the stage takes at least three jobs even on a quiet
# machine (24 runs once fitted into two jobs).
SHORT_PROFILE = WALLTIME_PROFILE


def _job_field(job: str, key: str) -> str:
    out = subprocess.run(["scontrol", "show", "job", "--oneliner", job], capture_output=True,
                         text=True, check=True).stdout
    return next(w.split("=", 1)[1] for w in out.split() if w.startswith(f"{key}="))


def run_dir_progress(run_dir: Path) -> tuple:
    """What changes while a run directory's jobs make progress: its task shards (every
    stage), the jobs recorded in jobs.json, and the size of its Slurm logs."""
    folder = run_dir / "shards"
    shards = sum(1 for _ in folder.rglob("*.npz")) if folder.is_dir() else 0
    logs = sum(p.stat().st_size for p in (run_dir / "logs").glob("slurm-*.out")) \
        if (run_dir / "logs").is_dir() else 0
    jobs = len(json.loads((run_dir / "jobs.json").read_text())) \
        if (run_dir / "jobs.json").exists() else 0
    return shards, jobs, logs


def _wait_for_chain(run_dir: Path, stall: float = 240) -> list[dict]:
    """Wait until every job recorded in run_dir/jobs.json has ended (continuations
    included); returns the record. Bounded by progress, not by the wall clock: it fails
    when the chain is broken (a job waits for one that failed) or when nothing moved
    (no new shard, job or log line) for ``stall`` seconds, however slow the machine."""
    from glasscam_mpi.jobs import ENDED, read_jobs, slurm_state

    last, t_last = None, time.time()
    while True:
        jobs = read_jobs(run_dir)
        found = [slurm_state(j["job"]) for j in jobs]
        states = [f["state"] for f in found]
        stuck = [j["job"] for j, f in zip(jobs, found) if f["reason"] == "DependencyNeverSatisfied"]
        assert not stuck, f"jobs {stuck} wait for a job that failed: the chain is broken"
        if jobs and all(s in ENDED for s in states) and read_jobs(run_dir) == jobs:
            return jobs
        now = (run_dir_progress(run_dir), tuple(states))
        if now != last:
            last, t_last = now, time.time()
        elif time.time() - t_last > stall:
            raise AssertionError(f"the chain in {run_dir} made no progress (no new shard, job, "
                                 f"state or log line) for {stall} s: "
                                 f"{list(zip([j['job'] for j in jobs], states))}")
        time.sleep(1)


@pytest.mark.mpi  # its reference run (or fixture) is an mpiexec run
@pytest.mark.slurm
@pytest.mark.slow
def test_prepare_outliving_its_walltime_continues_unattended_and_equals_mpiexec(local_slurm,
                                                                                tmp_path):
    """A 1-minute limit and a prepare that needs 3+ such jobs: each job stops on the
    warning, exits 75 and submits its continuation; the indicators job queued after it
    waits for the last one; prepare.h5 equals an uninterrupted mpiexec run.

    Slurm's warning came 15-35 s into a 1-minute job however long the lead (its limit
    checks are periodic), so a job does up to ~35 s of work: 100 runs of ~2 s on 2 ranks
    (a quiet machine; 40 runs sometimes fitted in 2 jobs there) need 3 jobs or more."""
    from conftest import TINY_TOML

    cfg = tmp_path / "c.toml"
    cfg.write_text(TINY_TOML.replace("n_runs = 6", "n_runs = 100")
                   .replace("cooling_rate = 0.2", "cooling_rate = 0.005"))
    profile = tmp_path / "short.toml"
    profile.write_text(SHORT_PROFILE)
    ref = tmp_path / "ref"   # the uninterrupted run (first: the two share 2 cores)
    glasscam(["prepare", "--config", str(cfg), "--run-dir", str(ref)], n=2)
    rd = tmp_path / "slurm run"
    res = glasscam(["submit", "prepare", "indicators", "--profile", str(profile), "--config",
                    str(cfg), "--run-dir", str(rd)])
    first = [line.split("job ")[1] for line in res.stdout.splitlines() if ": job " in line]
    assert len(first) == 2
    jobs = _wait_for_chain(rd)

    prepare = [j for j in jobs if j["stage"] == "prepare"]
    assert len(prepare) >= 3, prepare
    assert prepare[0]["job"] == first[0] and prepare[0]["continues"] is None
    for before, after in zip(prepare, prepare[1:]):
        assert after["continues"] == before["job"] and after["after"] == [before["job"]]
        log = (rd / "logs" / f"slurm-prepare-{before['job']}.out").read_text()
        assert "walltime warning (SIGUSR1)" in log
        assert f"prepare: not finished in job {before['job']}; continues as job {after['job']}" in log
        assert (_job_field(before["job"], "JobState"), _job_field(before["job"], "ExitCode")) \
            == ("FAILED", "75:0")
    last = prepare[-1]["job"]
    assert _job_field(last, "JobState") == "COMPLETED"
    assert "prepare: wrote" in (rd / "logs" / f"slurm-prepare-{last}.out").read_text()
    # the later stage waited for the whole prepare: it ran once, after the last job ended
    indicators = [j for j in jobs if j["stage"] == "indicators"]
    assert indicators[0]["job"] == first[1]
    assert _job_field(indicators[-1]["job"], "JobState") == "COMPLETED"
    assert _job_field(first[1], "StartTime") >= _job_field(last, "EndTime")
    assert (rd / "indicators.h5").exists()

    assert_same_data(read_stage(ref / "prepare.h5"), read_stage(rd / "prepare.h5"))
    st = json.loads(glasscam(["status", str(rd), "--json"]).stdout)
    assert [(j["job"], j["state"]) for j in st["jobs"] if j["stage"] == "prepare"] == \
        [(j["job"], "FAILED") for j in prepare[:-1]] + [(last, "COMPLETED")]
    assert st["jobs"][0]["note"] == f"not finished (exit 75): continued as job {prepare[1]['job']}"
    assert st["stages"]["prepare"] == {"complete": True, "total": 100, "done": 100, "failed": 0,
                                       "missing": 0}
    table = glasscam(["status", str(rd)]).stdout
    assert f"prepare     {first[0]:>8}  FAILED        75  not finished" in table


@pytest.mark.slurm
def test_cancel_ends_the_whole_chain_and_status_shows_it(local_slurm, tmp_path):
    from conftest import TINY_TOML

    cfg = tmp_path / "c.toml"
    cfg.write_text(TINY_TOML.replace("n_runs = 6", "n_runs = 200"))   # minutes of work
    rd = tmp_path / "run"
    res = glasscam(["submit", "prepare", "indicators", "analyze", "--profile", "local",
                    "--config", str(cfg), "--run-dir", str(rd)])
    jobs = [line.split("job ")[1] for line in res.stdout.splitlines() if ": job " in line]
    t0 = time.time()
    while _job_field(jobs[0], "JobState") != "RUNNING":
        assert time.time() - t0 < 60, _job_field(jobs[0], "JobState")
        time.sleep(0.5)
    st = json.loads(glasscam(["status", str(rd), "--json"]).stdout)
    assert [j["state"] for j in st["jobs"]] == ["RUNNING", "PENDING", "PENDING"]
    assert [j["reason"] for j in st["jobs"]][1:] == ["Dependency", "Dependency"]

    res = glasscam(["cancel", str(rd)])
    assert res.stdout == f"cancelled 3 job(s): {' '.join(jobs)}\n"
    assert [_wait_for(j, timeout=60) for j in jobs] == ["CANCELLED"] * 3
    assert glasscam(["cancel", str(rd)]).stdout == f"no job of {rd} is queued or running\n"
    st = json.loads(glasscam(["status", str(rd), "--json"]).stdout)
    assert [j["state"] for j in st["jobs"]] == ["CANCELLED"] * 3
    assert not st["stages"]["prepare"]["complete"]


def test_status_and_cancel_refuse_what_is_not_a_run_directory(tmp_path):
    for command in ("status", "cancel"):
        res = glasscam([command, str(tmp_path / "nowhere")], check=False)
        assert res.returncode == 2 and res.stdout == ""
        assert f"glasscam {command}: error: {tmp_path / 'nowhere'} is not a run directory" \
            in res.stderr


def test_submit_refuses_ranks_per_task_that_do_not_divide_the_job(tiny_config, tmp_path):
    """The local profile runs 1 x 2 ranks: 3 ranks per LAMMPS task cannot split it; the
    refusal comes at submission (the stage would refuse it only once the job runs)."""
    run_dir = tmp_path / "rd"
    res = glasscam(["submit", "prepare", "--dry-run", "--config", str(tiny_config),
                    "--set", "prepare.ranks_per_task=3", "--run-dir", str(run_dir)],
                   check=False)
    assert res.returncode == 2, res.stderr
    assert ("[prepare].ranks_per_task = 3: profile 'local' runs 1 node(s) x 2 = 2 rank(s) "
            "per job, not a multiple of 3") in res.stderr
    assert not run_dir.exists()  # nothing made: the config can still be corrected
    ok = glasscam(["submit", "prepare", "--dry-run", "--config", str(tiny_config),
                   "--set", "prepare.ranks_per_task=2", "--run-dir", str(tmp_path / "ok")])
    assert "prepare --run-dir" in ok.stdout


# -- glasscam sweep's job script (a command with its own arguments, not a chain stage) --------
def test_sweep_script_matches_golden_file():
    text = render("sweep", load_profile("generic"), "/scratch/kam", glasscam=EXE,
                  extra={"variants": "/scratch/kam/variants.toml", "seeds": 3})
    assert text.encode() == (GOLDEN / "sweep.generic.sbatch").read_bytes()
    assert "#SBATCH --gpus-per-node=4" in text  # the sub-runs train and explain on the GPUs
    assert "--signal" not in text                # resumed by resubmitting, not continued


def test_sweep_script_quotes_its_variants_file_and_run_dir(tmp_path):
    run_dir, variants = tmp_path / HOSTILE, tmp_path / f"v {HOSTILE}.toml"
    exe = ["/opt/my tools/python", "-m", "glasscam_mpi.cli"]
    text = render("sweep", load_profile("local"), run_dir, glasscam=exe,
                  extra={"variants": variants, "seeds": None})
    script = tmp_path / "job.sbatch"
    script.write_text(text)
    subprocess.run(["bash", "-n", str(script)], check=True)
    command = next(x for x in text.splitlines() if x.endswith(" || status=$?"))
    assert _bash_words(command.removesuffix(" || status=$?")) == [
        "srun", "--mpi=pmi2", *exe, "sweep", "--run-dir", str(run_dir), "--variants",
        str(variants)]  # no --seeds: the variants file's (or 3)
    assert list(tmp_path.iterdir()) == [script]


def test_sweep_is_not_a_chain_stage_and_needs_its_variants_file():
    assert "sweep" not in stages_with_scripts()
    with pytest.raises(ConfigError, match="glasscam sweep --run-dir DIR --variants FILE"):
        render("sweep", load_profile("local"), "/scratch/kam")

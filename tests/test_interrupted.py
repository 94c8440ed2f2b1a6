"""Interrupted `python -m mlpflow.train` runs, with real processes and real signals: the same
command resumes them into their MLflow run, to the uninterrupted result, and no run is left
RUNNING."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient
from omegaconf import DictConfig

from conftest import copy_project, subprocess_env

pytestmark = pytest.mark.slow
EPOCHS = 30
CONFIG = (
    "data=synthetic",
    "data.n_samples=10000",
    f"trainer.max_epochs={EPOCHS}",
    "model.dropout=0.2",  # resume must restore the RNG too
    "callbacks.early_stopping=null",
    "callbacks.progress_bar=null",
    # A write (metrics + last.ckpt) every few epochs of ~0.1 s: kills land between writes and
    # the waits below see progress long before the run could end.
    "callbacks.last_checkpoint.every_seconds=0.25",
)
PER_EPOCH = ("val/loss", "val/roc_auc", "train/loss", "epoch")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project of its own: its outputs/checkpoints hold this test's runs only."""
    return copy_project(tmp_path / "project")


def store(project: Path, name: str) -> str:
    return f"sqlite:///{project / name}"


def start(project: Path, uri: str, *overrides: str) -> subprocess.Popen:
    return subprocess.Popen(
        ["python", "-m", "mlpflow.train", *CONFIG, *overrides],
        cwd=project,
        env=subprocess_env(MLFLOW_TRACKING_URI=uri),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def run_to_end(project: Path, uri: str, *overrides: str) -> str:
    process = start(project, uri, *overrides)
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err[-3000:]
    return out + err


def epoch_of(models: Path) -> int:
    """The epoch of a run's last.ckpt (-1: none yet)."""
    try:
        return torch.load(models / "last.ckpt", weights_only=True)["epoch"]
    except (OSError, RuntimeError, EOFError):
        return -1


def last_epoch(project: Path) -> int:
    """The epoch of the last.ckpt of the run in progress (-1: none yet)."""
    for state in project.glob("outputs/checkpoints/*/resume.json"):
        return epoch_of(state.parent)
    return -1


def owner(project: Path) -> str | None:
    """The process that last began training (resume.json's owner), if any."""
    for state in project.glob("outputs/checkpoints/*/resume.json"):
        try:
            return json.loads(state.read_text())["owner"]
        except (OSError, ValueError, KeyError):
            return None
    return None


def wait_for_epoch(project: Path, process: subprocess.Popen, epoch: int) -> None:
    deadline = time.monotonic() + 300
    while last_epoch(project) < epoch and time.monotonic() < deadline:
        assert process.poll() is None, "training ended before it could be interrupted"
        time.sleep(0.02)
    assert process.poll() is None, "training ended before it could be interrupted"


def only_run(uri: str):
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("mlpflow").experiment_id])
    assert len(runs) == 1, [(r.info.run_id, r.info.status) for r in runs]
    return client, runs[0]


def history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def assert_every_epoch_once(client: MlflowClient, run_id: str, epochs: int = EPOCHS) -> None:
    for key in PER_EPOCH:
        steps = [step for step, _ in history(client, run_id, key)]
        assert len(steps) == len(set(steps)) == epochs, (key, steps)
    logged = [value for _, value in history(client, run_id, "epoch")]
    assert logged == list(range(epochs))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    project = copy_project(tmp_path_factory.mktemp("uninterrupted") / "project")
    uri = store(project, "whole.db")
    run_to_end(project, uri)
    client, run = only_run(uri)
    return {key: history(client, run.info.run_id, key) for key in PER_EPOCH} | {
        "test": {k: v for k, v in run.data.metrics.items() if k.startswith("test/")}
    }


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])  # SIGINT: test_cross_validation
def test_interrupted_run_resumes_to_the_uninterrupted_result(project, uninterrupted, sig):
    uri = store(project, f"{sig.name}.db")
    process = start(project, uri)
    wait_for_epoch(project, process, 3)
    time.sleep(random.uniform(0, 0.2))  # mid-epoch, somewhere
    process.send_signal(sig)
    _, err = process.communicate(timeout=120)
    client, run = only_run(uri)
    if sig == signal.SIGKILL:
        assert run.info.status == "RUNNING"  # what a lost node leaves behind
    else:
        assert process.returncode == 128 + sig  # 143, 130: a scheduler sees the kill
        assert run.info.status == "KILLED"
        assert f"stopped by {sig.name}" in run.data.tags["run.end"]
        lines = [line for line in err.splitlines() if line.startswith("error:")]
        assert len(lines) == 1 and "run the same command again to resume" in lines[0]
        assert "Traceback" not in err

    out = run_to_end(project, uri)
    assert f"resuming MLflow run {run.info.run_id}" in out
    client, resumed = only_run(uri)
    assert resumed.info.run_id == run.info.run_id
    assert resumed.info.status == "FINISHED"
    assert "run.end" not in resumed.data.tags and resumed.data.tags["run.resumes"] == "1"
    assert_every_epoch_once(client, run.info.run_id)
    for key in PER_EPOCH:
        assert history(client, run.info.run_id, key) == uninterrupted[key], key
    test = {k: v for k, v in resumed.data.metrics.items() if k.startswith("test/")}
    assert test == uninterrupted["test"]


def test_a_stale_run_is_listed_marked_killed_and_resumed(project: Path):
    uri = store(project, "stale.db")
    process = start(project, uri)
    wait_for_epoch(project, process, 2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    _, run = only_run(uri)

    def runs_command(*flags: str) -> str:
        done = subprocess.run(
            ["mlpflow", "runs", "--stale", *flags, "--uri", uri],
            cwd=project,
            env=subprocess_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert run.info.run_id in runs_command()
    assert "marked 1 runs KILLED" in runs_command("--mark-killed")
    client, killed = only_run(uri)
    assert killed.info.status == "KILLED"
    assert runs_command().strip() == "no stale runs"
    run_to_end(project, uri)
    client, resumed = only_run(uri)
    assert resumed.info.status == "FINISHED" and resumed.info.run_id == run.info.run_id
    assert_every_epoch_once(client, run.info.run_id)


def test_the_same_config_running_elsewhere_is_not_taken_over(project: Path):
    uri = store(project, "twice.db")
    first = start(project, uri, "trainer.max_epochs=400")
    wait_for_epoch(project, first, 1)
    second = start(project, uri, "trainer.max_epochs=400")
    _, err = second.communicate(timeout=300)
    first.send_signal(signal.SIGTERM)
    first.communicate(timeout=120)
    assert second.returncode == 2
    assert "this config is training now" in err


def test_kills_at_random_instants_lose_and_duplicate_no_metric_point(project: Path):
    """8 kills (SIGKILL or SIGTERM) anywhere in training, across epoch boundaries."""
    uri = store(project, "random.db")
    epochs = 80  # ~0.1 s each: a kill lands in every phase of an epoch
    rng = random.Random(0)
    kills, finished = 0, False
    while kills < 8 and not finished:
        before = owner(project)
        process = start(project, uri, f"trainer.max_epochs={epochs}")
        while owner(project) == before and process.poll() is None:
            time.sleep(0.01)  # until this process is about to train
        time.sleep(rng.uniform(0, 0.8))
        if process.poll() is not None:
            break  # finished before this kill
        process.send_signal(rng.choice([signal.SIGKILL, signal.SIGTERM]))
        process.communicate(timeout=120)
        kills += 1
        finished = only_run(uri)[1].info.status == "FINISHED"  # the kill came after training
    assert kills >= 6, "too few kills landed in training"
    if not finished:
        run_to_end(project, uri, f"trainer.max_epochs={epochs}")
    client, run = only_run(uri)
    assert run.info.status == "FINISHED"
    assert_every_epoch_once(client, run.info.run_id, epochs)


def sweep(
    project: Path, uri: str, *overrides: str, env: dict[str, str] | None = None, **popen: object
) -> subprocess.Popen:
    return subprocess.Popen(
        ["python", "-m", "mlpflow.train", "-m", *CONFIG, *overrides],
        cwd=project,
        env=subprocess_env(MLFLOW_TRACKING_URI=uri, **(env or {})),
        text=True,
        start_new_session=True,
        **popen,
    )


def test_a_killed_grid_sweep_restarts_where_it_stopped(project: Path):
    """Trial 1 finished is not trained again; trial 2, killed, resumes into its child run."""
    uri = store(project, "grid.db")
    launcher = ("hydra/launcher=joblib", "hydra.launcher.n_jobs=1", "optimizer.lr=1e-3,2e-3")
    first = sweep(project, uri, *launcher, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # trial 1 finished, trial 2 at epoch 3 or later
        assert first.poll() is None, "the sweep ended before it was killed"
        dirs = list(project.glob("outputs/checkpoints/*"))
        running = [d for d in dirs if (d / "resume.json").exists()]
        finished = [d for d in dirs if (d / "best.ckpt").exists() and d not in running]
        if finished and running and epoch_of(running[0]) >= 3:
            break
        time.sleep(0.02)
    os.killpg(first.pid, signal.SIGKILL)  # the whole sweep: main process and joblib worker
    first.wait()
    client = MlflowClient(uri)
    before = {r.data.tags["sweep.job"]: r for r in client.search_runs(
        [client.get_experiment_by_name("mlpflow").experiment_id],
        "tags.mlflow.parentRunId != ''",
    )}  # fmt: skip
    assert before["0"].info.status == "FINISHED" and before["1"].info.status == "RUNNING"

    second = sweep(project, uri, *launcher, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, err = second.communicate(timeout=600)
    assert second.returncode == 0, err[-3000:]
    runs = client.search_runs([client.get_experiment_by_name("mlpflow").experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = {r.data.tags["sweep.job"]: r for r in runs if r not in parents}
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == 2 and all(r.info.status == "FINISHED" for r in children.values())
    assert children["0"].info.end_time == before["0"].info.end_time  # not trained again
    assert children["1"].info.run_id == before["1"].info.run_id  # continued
    assert_every_epoch_once(client, children["1"].info.run_id)


def test_submitit_requeues_a_timed_out_trial_and_it_resumes(project: Path):
    """submitit_local signals a job 30 s before its 1-minute limit; the job checkpoints through
    submitit, is requeued, and the requeued job resumes the trial's run to the end. The first
    attempt's epochs are paced to at least 0.6 s (tests/pacing.py), so its training (70 epochs,
    42 s) outlasts its 30 s on any machine; the resumed attempt goes at full speed and finishes
    well inside submitit_local's six attempts, however loaded the machine."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    uri = store(project, "submitit.db")
    process = sweep(
        project,
        uri,
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=1",
        "+hydra.launcher.max_num_timeout=10",
        "optimizer.lr=0.003",
        "data.n_samples=2000",
        "trainer.max_epochs=70",
        "+callbacks.pace._target_=pacing.EpochPace",
        "+callbacks.pace.seconds=0.6",
        env={"PYTHONPATH": str(project / "tests")},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    _, err = process.communicate(timeout=600)
    assert process.returncode == 0, err[-3000:]
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("mlpflow").experiment_id])
    child = next(r for r in runs if "mlflow.parentRunId" in r.data.tags)
    assert len(runs) == 2 and child.info.status == "FINISHED"
    assert int(child.data.tags["run.resumes"]) >= 1  # requeued at least once, same run
    steps = [m.step for m in client.get_metric_history(child.info.run_id, "val/loss")]
    assert len(steps) == len(set(steps)) == 70


def interrupted(tmp_path: Path, *overrides: str, data: str | None = None) -> tuple[DictConfig, str]:
    """A config whose models dir holds an interrupted run's state (of this config, on `data`:
    by default the prepared data's fingerprint) next to a last.ckpt that cannot be resumed."""
    from mlpflow.config.compose import resolve_data_defaults
    from mlpflow.data.prepared import load_meta
    from mlpflow.stages import prepare, resume
    from mlpflow.tracking.lineage import config_digest
    from mlpflow.tracking.store import ensure_store

    from conftest import make_cfg

    cfg = make_cfg(tmp_path, "trainer.max_epochs=2", *overrides)
    prepare.run(cfg)
    meta = load_meta(cfg.paths.prepared)
    resolve_data_defaults(cfg, meta.task, meta.rows["train"])
    models = Path(cfg.paths.models)
    models.mkdir(parents=True)
    (models / "last.ckpt").write_bytes(b"not a checkpoint: resuming from it would fail")
    experiment = ensure_store(str(cfg.tracking.uri), cfg.tracking.experiment)
    killed = MlflowClient(str(cfg.tracking.uri)).create_run(experiment).info.run_id
    uri, fingerprint = str(cfg.tracking.uri), data or meta.fingerprint
    resume.begin(models, resume.RunIdentity(config_digest(cfg), uri, fingerprint), killed)
    return cfg, killed


def test_resume_false_starts_afresh(tmp_path: Path):
    """tracking.resume=false: an interrupted run's state is set aside, training starts over."""
    from mlpflow.stages import train

    cfg, killed = interrupted(tmp_path, "tracking.resume=false")
    report = train.run(cfg)
    assert report["run_id"] != killed and report["epochs_run"] == 2
    assert not (Path(cfg.paths.models) / "resume.json").exists()


def test_an_interrupted_run_on_other_data_is_not_resumed(tmp_path: Path):
    """The same config on an edited table (another data fingerprint) trains afresh: resuming
    would continue weights and an MLflow run that saw other rows."""
    from mlpflow.stages import train

    cfg, killed = interrupted(tmp_path, data="0" * 64)
    report = train.run(cfg)
    assert report["run_id"] != killed and report["epochs_run"] == 2


def test_a_job_whose_evaluate_did_not_finish_evaluates_again_without_training(project: Path):
    """A requeued (submitit) or restarted job in the same run dir whose train finished but whose
    evaluate did not (no metrics.json): it evaluates the trained run, and trains no new one."""
    uri = store(project, "evaluate.db")
    run_dir = project / "job"
    overrides = ("trainer.max_epochs=3", f"hydra.run.dir={run_dir}")
    run_to_end(project, uri, *overrides)
    (run_dir / "reports" / "metrics.json").unlink()  # as if stopped during evaluate
    out = run_to_end(project, uri, *overrides)
    assert "train finished before" in out
    client, run = only_run(uri)  # still the one run: nothing trained again
    assert run.info.status == "FINISHED"
    assert len(client.get_metric_history(run.info.run_id, "val/loss")) == 3
    assert (run_dir / "reports" / "metrics.json").exists()
    assert any(key.startswith("test/") for key in run.data.metrics)


def test_a_run_dir_reused_by_another_config_trains_that_config_anew(project: Path):
    """A run dir holding another config's train.json (and no metrics.json) is not an unfinished
    evaluate of this config, even when this config's models dir has a best.ckpt from before:
    this config trains a run of its own, and the other config's run gets nothing of it."""
    uri = store(project, "reused.db")
    other = ("trainer.max_epochs=2", "optimizer.lr=0.003")
    run_to_end(project, uri, *other, f"hydra.run.dir={project / 'first'}")
    run_dir = project / "job"
    run_to_end(project, uri, "trainer.max_epochs=2", f"hydra.run.dir={run_dir}")
    first_report = json.loads((run_dir / "reports" / "train.json").read_text())
    (run_dir / "reports" / "metrics.json").unlink()
    out = run_to_end(project, uri, *other, f"hydra.run.dir={run_dir}")
    assert "train finished before" not in out
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("mlpflow").experiment_id])
    assert len(runs) == 3
    new_run = json.loads((run_dir / "reports" / "train.json").read_text())["run_id"]
    assert new_run != first_report["run_id"]
    assert "test/roc_auc" in client.get_run(new_run).data.metrics
    assert len(client.get_metric_history(first_report["run_id"], "test/roc_auc")) == 1

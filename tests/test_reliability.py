"""Validate first, one line for user errors, nothing stale after a kill, one model per cache key.

docs/reliability.md tabulates these cases. The jobs run as a user runs them: `python run.py`
in a subprocess, in an empty folder, with real files.
"""
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from helpers import REPO, run_cli, tiny
from mtl_attack import floats, records
from mtl_attack.config import compose
from mtl_attack.data import formats
from mtl_attack.models.build import build_model
from mtl_attack.models.layout import layout_by_index
from mtl_attack.data.registry import config_tasks
from mtl_attack.training import model_key, checkpoint_path, train_or_load

RUN = str(REPO / "run.py")


def _files(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def _bad_run(work, *overrides):
    """Run one job in the empty folder `work`; returns the finished process."""
    work.mkdir(exist_ok=True)
    base = tiny(cache_dir=work / "cache")
    if any(o.startswith("dataset=") for o in overrides):  # real data: no renderer settings
        base = [o for o in base if not o.startswith("dataset.synthetic.")]
    return run_cli([RUN, *base, "logger=wandb", *overrides], work, timeout=120)


def _one_line_error(proc):
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("run.py: error: ")
    assert "Traceback" not in proc.stdout + proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def real_nyuv2(tmp_path_factory):
    """A real-format NYUv2 folder (AdaShare's layout) with 3 train and 2 test samples."""
    root = tmp_path_factory.mktemp("nyuv2")
    rng = np.random.default_rng(0)
    splits = {}
    for split, n in (("train", 3), ("test", 2)):
        entries = []
        for i in range(n):
            stem = f"{split}{i}"
            normal = rng.normal(size=(24, 32, 3))
            normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
            entries.append(formats.write_nyuv2_sample(
                str(root), stem, rgb=rng.integers(0, 256, (24, 32, 3), dtype=np.uint8),
                seg=rng.integers(0, 40, (24, 32)).astype(np.uint8), normal=normal.astype(np.float32),
                normal_valid=np.ones((24, 32), bool), depth=rng.uniform(0.5, 5, (24, 32)).astype(np.float32)))
        splits[split] = entries
    formats.write_split_json(str(root), "nyuv2", splits)
    return root, splits


def _other_checkpoint(path):
    """A valid mtl-attack checkpoint of another layout (independent), whose shapes do not fit AS."""
    tasks = config_tasks("nyuv2")
    model = build_model("resnet34", layout_by_index(3, 2), tasks, 4, 0, path.parent / "c", width=0.25)
    torch.save({"state_dict": model.state_dict()}, path)
    return path


CASES = {
    "negative eps": (["eps=-1"], "eps=-1"),
    "zero steps": (["attack.steps=0"], "attack.steps=0"),
    "layout index out of range": (["layout.index=999"], "layout.index"),
    "invalid layout spec": (["layout.spec='[[{{0,1}}]]'"], "layout.spec"),
    "missing checkpoint": (["model.checkpoint=/no/such/model.pt"], "does not exist"),
    "text file as checkpoint": (["model.checkpoint={text}"], "not a readable torch checkpoint"),
    "checkpoint of another model": (["model.checkpoint={other}"], "does not fit the configured model"),
    "task not in the dataset": (["attack=single_keypoints2d_pgd"], "attack.target_task=keypoints2d"),
    "zero batch size": (["train.batch_size=0"], "train.batch_size=0"),
    "cache_dir under a file": (["cache_dir={text}/cache"], "is a file, not a folder"),
    "input size below the backbone's": (["dataset.input_size=7"], "dataset.input_size=7"),
    "real data without a root": (["dataset=nyuv2"], "dataset.root"),
    "real data, a test file missing": (["dataset=nyuv2", "dataset.root={broken}", "dataset.input_size=16"],
                                       "does not exist"),
}
if not torch.cuda.is_available():
    CASES["no GPU"] = (["device=cuda"], "device=cuda")


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_stops_first_with_one_line_and_writes_nothing(case, tmp_path, real_nyuv2):
    overrides, expected = CASES[case]
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint\n")
    other = _other_checkpoint(tmp_path / "other.pt")
    broken = tmp_path / "broken"
    subprocess.run(["cp", "-r", str(real_nyuv2[0]), str(broken)], check=True)
    (broken / real_nyuv2[1]["test"][1][0].lstrip("/")).unlink()  # listed in the test split only
    work = tmp_path / "work"
    proc = _bad_run(work, *[o.format(text=text, other=other, broken=broken) for o in overrides])
    line = _one_line_error(proc)
    assert expected in line
    assert _files(work) == []  # no output folder, no cache, no W&B run


def test_in_a_sweep_a_bad_job_is_recorded_failed_and_the_others_go_on(tmp_path):
    proc = run_cli([RUN, "-m", *tiny(cache_dir=tmp_path / "cache"), "logger=none", "eps=4,-1", "name=mixed"],
                   tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    sweep = tmp_path / "multirun" / "mixed"
    states = {r["config"]["eps"]: r for r in map(records.read_record, sweep.rglob(records.RECORD_NAME))}
    assert {k: r["status"] for k, r in states.items()} == {4: "done", -1: "failed"}
    assert states[-1]["error"].startswith("UserError: eps=-1")
    assert f"results in {sweep / records.TABLE_NAME}" in proc.stdout  # the sweep says where its table is


def test_cli_subcommands_stop_with_one_line(tmp_path):
    proc = run_cli(["-m", "mtl_attack.cli", "data", "dataset.input_size=7", f"cache_dir={tmp_path}/c"], tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "dataset.input_size=7" in proc.stderr
    assert not (tmp_path / "c").exists()


# ------------------------------------------------------------------ one key, one set of weights

def test_training_weights_do_not_depend_on_the_callers_thread_count(tmp_path):
    """Training runs with train.threads whatever the caller set, so two jobs launched with
    different thread counts (serial vs the joblib launcher) train identical weights; another
    train.threads is another cache key."""
    states = []
    for outer in (1, 2):
        torch.set_num_threads(outer)
        cfg = compose(tiny(f"cache_dir={tmp_path / f'c{outer}'}", "train.threads=2"))
        from mtl_attack.parts import prepare

        parts = prepare(cfg, progress=False, with_model=False)
        model = build_model("resnet34", parts.layout, parts.tasks, 4, 0, tmp_path / f"c{outer}", width=0.25)
        info = train_or_load(model, cfg, parts.layout, parts.tasks, parts.train, torch.device("cpu"), progress=False)
        assert info["train"]["env"] == {"device": "cpu", "threads": 2, **floats.key_entry(), "torch": str(torch.__version__),
                                    "machine": records.machine_label(torch.device("cpu"))}
        assert torch.get_num_threads() == outer  # restored after training
        states.append(model.state_dict())
    torch.set_num_threads(1)
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    one = compose(tiny("train.threads=1"))
    two = compose(tiny("train.threads=2"))
    layout = layout_by_index(3, 0)
    assert model_key(one, layout)["env"] == {"device": "cpu", "threads": 1, **floats.key_entry()}
    assert checkpoint_path(tmp_path, model_key(one, layout)) != checkpoint_path(tmp_path, model_key(two, layout))


def test_concurrent_checks_of_one_new_folder_all_pass_and_leave_no_file(tmp_path):
    # Jobs started together check one not yet existing cache_dir: each makes, probes and removes
    # it, so one job's folder appears or vanishes under another's check.
    import threading
    from mtl_attack.preflight import check_writable

    for trial in range(20):
        target = tmp_path / f"t{trial}" / "cache"
        start, errors = threading.Barrier(8), []

        def check():
            start.wait()
            try:
                check_writable("cache_dir", target)
            except Exception as err:  # noqa: BLE001  (collected to assert below)
                errors.append(err)

        threads = [threading.Thread(target=check) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        # Probe files are gone; a folder one check made inside another's may stay, as the jobs make it anyway.
        assert [p for p in tmp_path.joinpath(f"t{trial}").rglob("*") if not p.is_dir()] == []


def test_two_jobs_needing_one_model_train_it_once(tmp_path):
    cache = tmp_path / "cache"
    args = [RUN, *tiny(cache_dir=cache), "logger=none", "train.iterations=30"]
    env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true", OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, *args, f"hydra.run.dir={tmp_path / f'job{i}'}"], cwd=tmp_path,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    for p in procs:
        p.communicate(timeout=300)
        assert p.returncode == 0
    recs = [records.read_record(tmp_path / f"job{i}" / records.RECORD_NAME) for i in range(2)]
    assert sorted(r["model"]["source"] for r in recs) == ["cache", "trained"]
    assert recs[0]["model"]["path"] == recs[1]["model"]["path"]
    assert recs[0]["metrics"] == recs[1]["metrics"]
    assert len(list((cache / "models").glob("*.pt"))) == 1


# ------------------------------------------------------------------ kills

# Runs run.py in this process after arranging a SIGKILL at one point of the job.
_KILLER = textwrap.dedent("""
    import os, signal, sys, runpy
    phase = sys.argv.pop(1)
    die = lambda: os.kill(os.getpid(), signal.SIGKILL)
    if phase == "render":
        from mtl_attack.data import synth
        real = synth._collect
        def collect(results, *a):
            def some():
                for i, r in enumerate(results):
                    if i == 4:
                        die()  # the rendering parent, a few images in
                    yield r
            return real(some(), *a)
        synth._collect = collect
    elif phase == "train":
        from mtl_attack import training
        real = training.train_model
        def train(*a, **k):
            k["step_hook"] = lambda it, parts: die() if it == 2 else None
            return real(*a, **k)
        training.train_model = train
    elif phase == "checkpoint":
        import torch
        real = torch.save
        def save(obj, f, *a, **k):
            if "state_dict" in obj and str(f).endswith(tuple("0123456789abcdef")):
                with open(f, "wb") as out:
                    out.write(b"half a checkpoint")
                die()
            return real(obj, f, *a, **k)
        torch.save = save
    elif phase == "attack":
        from mtl_attack import pipeline
        real, count = pipeline.evaluate, [0]
        def evaluate(*a, **k):
            if k.get("attack") is not None:
                count[0] += 1
                if count[0] == 2:
                    die()
            return real(*a, **k)
        pipeline.evaluate = evaluate
    sys.argv[0] = {run!r}
    runpy.run_path({run!r}, run_name="__main__")
""").format(run=RUN)


def _sweep(tmp_path, cache, phase=None):
    args = [*tiny(cache_dir=cache), "logger=wandb", "eps=2,4", "name=kill", "train.iterations=6",
            f"hydra.sweep.dir={tmp_path / 'multirun'}"]
    if phase is None:
        return run_cli([RUN, "-m", *args], tmp_path)
    return run_cli(["-c", _KILLER, phase, "-m", *args], tmp_path)


def _results(sweep):
    """eps -> (status, metrics, ARP) of every job of the sweep."""
    out = {}
    for path in sorted(sweep.rglob(records.RECORD_NAME)):
        rec = records.read_record(path)
        out[rec["config"]["eps"]] = (rec["status"], rec["metrics"], rec["arp"])
    return out


def _job_dirs(sweep):
    return [p.parent for p in sweep.rglob(records.RECORD_NAME)]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("whole")
    proc = _sweep(tmp, tmp / "cache")
    assert proc.returncode == 0, proc.stderr
    return _results(tmp / "multirun")


@pytest.mark.parametrize("phase", ["render", "train", "checkpoint", "attack"])
def test_a_killed_sweep_reruns_to_the_same_results_with_nothing_stale(phase, tmp_path, uninterrupted):
    cache = tmp_path / "cache"
    killed = _sweep(tmp_path, cache, phase)
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    again = _sweep(tmp_path, cache)
    assert again.returncode == 0, again.stderr
    sweep = tmp_path / "multirun"
    assert _results(sweep) == uninterrupted
    # No temp files, locks held by nobody, one finished W&B run per job and no other.
    assert not [p for p in tmp_path.rglob("*.tmp-*")]
    assert len(_job_dirs(sweep)) == 2
    for job in _job_dirs(sweep):
        runs = list((job / "wandb").glob("offline-run-*"))
        assert len(runs) == 1, runs
    assert len(list((cache / "models").glob("*.pt"))) == 1
    if phase == "attack":
        assert "removed the unfinished W&B run" in again.stdout
    if phase == "checkpoint":
        assert "damaged cached model" not in again.stdout  # the half file never took the final name


def test_a_damaged_record_is_named_and_rerun(tmp_path, uninterrupted):
    cache = tmp_path / "cache"
    assert _sweep(tmp_path, cache).returncode == 0
    record = next(p / records.RECORD_NAME for p in _job_dirs(tmp_path / "multirun")
                  if records.read_record(p / records.RECORD_NAME)["config"]["eps"] == 4)
    record.write_text(record.read_text()[:40])
    again = _sweep(tmp_path, cache)
    assert f"record.json in {record.parent} is damaged; rerunning" in again.stdout
    assert _results(tmp_path / "multirun") == uninterrupted
    assert oct(record.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_preflight_accepts_what_the_job_completes_later(tmp_path):
    """WeightedTotal without weights is grid-searched by the job, so the checks let it through."""
    from mtl_attack.preflight import preflight

    checked = preflight(compose(tiny("attack=weightedtotal_pgd", cache_dir=tmp_path / "c")))
    assert checked.task_names == ["segment_semantic", "normal", "depth_zbuffer"]
    assert not (tmp_path / "c").exists()

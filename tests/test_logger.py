"""The W&B logger: real wandb in offline mode (conftest keeps it off the network), read back with `wandb leet inspect`."""
import json
import os
import signal
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from mtl_attack.config import LoggerConfig, LoggerName
from mtl_attack.logger import (
    FINISHED_MARKER,
    TABLE_COLUMNS,
    NullLogger,
    WandbLogger,
    example_panel,
    make_logger,
    metric_rows,
    perturbation_image,
    plain,
    read_offline_run,
    read_offline_summary,
    relative_change,
    remove_unfinished_runs,
    run_finished,
    summary_items,
)

RECORD = {
    "schema": 1,
    "status": "done",
    "error": None,
    "job": {"name": "attack=dgba_apgd,eps=4", "group": "default", "overrides": ["attack=dgba_apgd", "eps=4"]},
    "config": {
        "dataset": {"name": "synth_nyuv2", "kind": "nyuv2", "input_size": 64},
        "attack": {"optimizer": "apgd", "objective": "dgba", "steps": 10},
        "eps": 4.0,
        "seed": 0,
    },
    "metrics": {
        "clean": {
            "segment_semantic": {"miou": 40.0, "pixel_acc": 70.0},
            "normal": {"angle_mean": 20.0, "angle_median": 15.0, "within_11_25": 30.0, "within_22_5": 60.0, "within_30": 70.0},
            "depth_zbuffer": {"abs_err": 0.5, "rel_err": 0.2, "delta_1": 70.0, "delta_2": 90.0, "delta_3": 97.0},
        },
        "attacked": {
            "segment_semantic": {"miou": 10.0, "pixel_acc": 30.0},
            "normal": {"angle_mean": 40.0, "angle_median": 35.0, "within_11_25": 10.0, "within_22_5": 20.0, "within_30": 35.0},
            "depth_zbuffer": {"abs_err": 1.0, "rel_err": 0.4, "delta_1": 40.0, "delta_2": 60.0, "delta_3": 80.0},
        },
    },
    "arp": {"overall": 80.0, "per_task": {"segment_semantic": 64.3, "normal": 90.1, "depth_zbuffer": 85.6}},
    "timings": {"data_s": 1.0, "train_s": 0.0, "attack_s": 30.0, "total_s": 35.0},
}
DIRECTIONS = {
    "segment_semantic": {"miou": True, "pixel_acc": True},
    "normal": {"angle_mean": False, "angle_median": False, "within_11_25": True, "within_22_5": True, "within_30": True},
    "depth_zbuffer": {"abs_err": False, "rel_err": False, "delta_1": True, "delta_2": True, "delta_3": True},
}
EPS = 4 / 255


def wandb_cfg(**kw):
    """The logger config as the job sees it: a typed DictConfig (enum name)."""
    return OmegaConf.structured(LoggerConfig(name=LoggerName.wandb, **kw))


# ----------------------------------------------------------------------------- pure parts


def test_summary_items_flat_keys_and_values():
    items = summary_items(RECORD)
    assert items["arp"] == 80.0
    assert items["arp/normal"] == 90.1
    assert items["clean/segment_semantic/miou"] == 40.0
    assert items["attacked/normal/angle_mean"] == 40.0
    assert items["timings/total_s"] == 35.0
    assert items["status"] == "done"
    # 1 overall + 3 per-task ARP, 12 metrics per split, 4 timings, status, error
    assert len(items) == 1 + 3 + 2 * 12 + 4 + 2
    # A failed job's partial record gives only what it has.
    assert summary_items({"status": "failed", "error": "boom"}) == {"status": "failed", "error": "boom"}


def test_metric_rows_known_values():
    rows = metric_rows(RECORD, DIRECTIONS)
    assert len(rows) == 12 and all(len(r) == len(TABLE_COLUMNS) for r in rows)
    assert rows[0] == ["segment_semantic", "miou", True, 40.0, 10.0, -0.75]
    by_key = {(r[0], r[1]): r for r in rows}
    assert by_key[("normal", "angle_mean")][2:] == [False, 20.0, 40.0, 1.0]
    assert by_key[("depth_zbuffer", "rel_err")][5] == pytest.approx(1.0)
    assert metric_rows(RECORD)[0][2] is None  # direction unknown without tasks_directions
    assert relative_change(0.0, 1.0) is None and relative_change(2.0, None) is None
    assert relative_change(-2.0, -1.0) == 0.5


def test_perturbation_image_maps_budget_to_black_and_white():
    clean = torch.full((3, 1, 4), 0.5)
    delta = torch.tensor([-EPS, 0.0, EPS / 2, 3 * EPS]).view(1, 1, 4).expand(3, 1, 4)
    img = perturbation_image(clean, clean + delta, EPS)
    assert torch.allclose(img[0, 0], torch.tensor([0.0, 0.5, 0.75, 1.0]), atol=1e-6)
    with pytest.raises(ValueError, match="eps"):
        perturbation_image(clean, clean, 4.0)  # pixel units by mistake


def test_example_panel_layout_and_bad_input():
    clean, adv = torch.zeros(3, 5, 6), torch.full((3, 5, 6), EPS)
    panel = example_panel(clean, adv, EPS)
    assert panel.shape == (3, 5, 3 * 6 + 4)
    assert torch.equal(panel[:, :, :6], clean)
    assert torch.allclose(panel[:, :, 8:14], adv)
    assert torch.allclose(panel[:, :, 16:], torch.ones(3, 5, 6))  # +eps everywhere shows white
    with pytest.raises(ValueError, match="differ in shape"):
        example_panel(clean, torch.zeros(3, 5, 7), EPS)
    with pytest.raises(ValueError, match=r"\[3, H, W\]"):
        example_panel(torch.zeros(1, 5, 6), torch.zeros(1, 5, 6), EPS)


def test_plain_resolves_dictconfig_and_enums():
    assert plain({"logger": wandb_cfg(), "n": [1, LoggerName.none]}) == {
        "logger": {"name": "wandb", "mode": "offline", "project": "mtl-attack", "entity": None, "group": None},
        "n": [1, "none"],
    }


# ----------------------------------------------------------------------------- loggers


def test_none_and_disabled_log_nothing(tmp_path):
    for cfg in (OmegaConf.structured(LoggerConfig(name=LoggerName.none)), wandb_cfg(mode="disabled")):
        with make_logger(cfg, tmp_path / "job", "default", "g", RECORD["config"]) as log:
            assert isinstance(log, NullLogger) and log.run_dir is None
            log.log_record(RECORD, DIRECTIONS)
            log.log_examples([(torch.zeros(3, 4, 4), torch.zeros(3, 4, 4))], EPS)
    assert list(tmp_path.iterdir()) == []


def test_bad_config_stops_with_message(tmp_path):
    with pytest.raises(ValueError, match="logger.name"):
        make_logger(SimpleNamespace(name="tensorboard"), tmp_path, "n", "g", {})
    with pytest.raises(ValueError, match="logger.mode"):
        make_logger(SimpleNamespace(name="wandb", mode="cloud"), tmp_path, "n", "g", {})


def test_offline_run_round_trip(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE")  # the logger itself must keep an offline run off the network
    job = tmp_path / "multirun" / "attack=dgba_apgd,eps=4"
    config = dict(RECORD["config"], logger=wandb_cfg())
    with make_logger(wandb_cfg(), job, "attack=dgba_apgd,eps=4", "multirun", config) as log:
        assert isinstance(log, WandbLogger)
        assert os.environ["WANDB_MODE"] == "offline"
        log.log_record(RECORD, DIRECTIONS)
        torch.manual_seed(0)
        clean = torch.rand(3, 8, 10)
        log.log_examples([(clean, (clean + EPS).clamp(0, 1)), (clean, clean)], EPS)
    run_dir = log.run_dir
    assert run_dir.parent == job.resolve() / "wandb" and run_dir.name.startswith("offline-run-")

    info = read_offline_run(run_dir)
    assert info["state"] == "finished" and info["exit_code"] == 0
    assert info["name"] == "attack=dgba_apgd,eps=4"
    assert info["group"] == "multirun" and info["job_type"] == "attack" and info["project"] == "mtl-attack"
    assert info["config"] == plain(config)
    summary = info["summary"]
    assert summary["arp"] == RECORD["arp"]["overall"]
    for key, value in summary_items(RECORD).items():
        if value is not None:  # W&B drops None values from the summary
            assert summary[key] == pytest.approx(value), key
    assert summary["status"] == "done" and "error" not in summary

    # The table and the image panels are files of the run.
    table = json.loads((run_dir / "files" / summary["per_task_metrics"]["path"]).read_text())
    assert table["columns"] == TABLE_COLUMNS
    assert table["data"][0] == ["segment_semantic", "miou", True, 40.0, 10.0, -0.75]
    assert summary["examples"]["count"] == 2 and "(2 eps)" in summary["examples"]["captions"][0]
    with Image.open(run_dir / "files" / summary["examples"]["filenames"][0]) as img:
        assert img.size == (3 * 10 + 4, 8)


def test_failed_job_still_finishes_run(tmp_path):
    with pytest.raises(RuntimeError, match="boom"):
        with make_logger(wandb_cfg(group="override"), tmp_path / "job", "", "sweep", {}) as log:
            raise RuntimeError("boom")
    info = read_offline_run(log.run_dir)
    assert info["state"] == "failed" and info["exit_code"] == 1
    assert info["summary"]["status"] == "failed"
    assert info["summary"]["error"] == "RuntimeError: boom"
    assert info["name"] == "default" and info["group"] == "override"
    log.finish()  # already finished: a second call does nothing


def test_read_offline_summary_rejects_non_run_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a W&B run folder"):
        read_offline_summary(tmp_path)


# ----------------------------------------------------------------------------- unfinished runs

# A job killed (SIGKILL) right after its run started: W&B's files stay as such a job leaves them.
_KILLED_JOB = """
import os, signal, sys
from omegaconf import OmegaConf
from mtl_attack.config import LoggerConfig, LoggerName
from mtl_attack.logger import make_logger

log = make_logger(OmegaConf.structured(LoggerConfig(name=LoggerName.wandb)), sys.argv[1], "killed", "g", {"a": 1})
log._run.summary["arp"] = 1.0
log._run.log({"x": 2})
print(log.run_dir, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_remove_unfinished_runs_keeps_finished_ones(tmp_path):
    job = tmp_path / "job"
    assert remove_unfinished_runs(job) == []  # no wandb folder yet
    with make_logger(wandb_cfg(), job, "done", "g", {}) as log:
        log.log_record(RECORD, DIRECTIONS)
    done = log.run_dir
    assert run_finished(done)
    assert json.loads((done / FINISHED_MARKER).read_text())["status"] == "done"
    with pytest.raises(RuntimeError):
        with make_logger(wandb_cfg(), job, "failed", "g", {}) as log:
            raise RuntimeError("boom")
    failed = log.run_dir
    assert json.loads((failed / FINISHED_MARKER).read_text())["exit_code"] == 1
    # A run finished before the marker existed: W&B's log holds its exit, so it is kept.
    (failed / FINISHED_MARKER).unlink()

    # Its own W&B service, as a separately started job has (not this process's).
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    proc = subprocess.run([sys.executable, "-c", _KILLED_JOB, str(job)], capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    killed = job.resolve() / "wandb" / os.path.basename(proc.stdout.strip())
    assert killed.is_dir() and not run_finished(killed)
    latest = job / "wandb" / "latest-run"
    assert latest.is_symlink() and latest.resolve() == killed

    assert remove_unfinished_runs(job) == [killed]
    assert not killed.exists() and not latest.is_symlink()
    assert sorted((job / "wandb").glob("offline-run-*")) == sorted([done.resolve(), failed.resolve()])
    assert all(link.exists() for link in (job / "wandb").iterdir())  # no dangling symlink left
    assert read_offline_summary(done)["status"] == "done"
    assert read_offline_summary(failed)["status"] == "failed"
    assert remove_unfinished_runs(job) == []

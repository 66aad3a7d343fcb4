"""The real CLI end to end, in subprocesses, on a tiny config: run, sweep, resume, failure, report, W&B."""
import json

import pandas as pd
import pytest
from PIL import Image

from helpers import REPO, run_cli, tiny
from mtl_attack import floats, records
from mtl_attack.scores import arp
from mtl_attack.tasks import SCORERS, summed_stats
from mtl_attack.data.registry import config_tasks


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def _ok(proc):
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_single_run_writes_a_consistent_record(cache, tmp_path):
    out = tmp_path / "run"
    proc = _ok(run_cli(["run.py", *tiny(cache_dir=cache), "logger=wandb", f"hydra.run.dir={out}"], REPO))
    assert "overall ARP" in proc.stdout
    record = json.loads((out / "record.json").read_text())
    assert record["status"] == "done"
    assert record["config"]["eps"] == 4.0 and record["attack"]["eps_01"] == pytest.approx(4 / 255)
    # ARP in the record equals an independent computation from its metrics.
    overall, per_task = arp(record["metrics"]["clean"], record["metrics"]["attacked"], config_tasks("nyuv2"))
    assert record["arp"]["overall"] == pytest.approx(overall)
    assert record["arp"]["per_task"] == pytest.approx(per_task)
    for key in ("code", "packages", "device", "started", "finished"):
        assert record["provenance"][key]
    # the machine that ran the job and the one that trained the model, CPU model included
    assert record["provenance"]["device"].startswith("cpu: ") and "torch threads" in record["provenance"]["device"]
    assert record["model"]["train"]["env"]["machine"].startswith("cpu: ")
    # run.py flushes denormal floats from its start, as the tests do (on CPUs with the mode); the key says so
    assert record["model"]["train"]["env"].get("flush_denormal", False) == floats.flushing()
    # the default miniature: ResNet34 at a quarter of its channels (the paper's AS: 21.28M)
    assert record["model"]["label"] == "AS" and record["model"]["params_paper_M"] == 1.33
    assert record["model"]["width"] == 0.25
    # The per-image statistics score back to the record's metrics; the interval holds the ARP.
    saved = records.read_image_stats(out / record["stats"]["file"])
    assert saved["kinds"] == {"segment_semantic": "segmentation", "normal": "normal", "depth_zbuffer": "depth"}
    for which in ("clean", "attacked"):
        for task, per_image in saved[which].items():
            assert len(per_image["count" if task != "segment_semantic" else "conf"]) == record["stats"]["images"]
            got = SCORERS[saved["kinds"][task]](summed_stats(per_image))
            assert got == pytest.approx(record["metrics"][which][task], rel=1e-12, abs=1e-12)
    # One source: ARP rebuilt from stats.npz alone is the record's, to 1e-9.
    scored = {which: {t: SCORERS[saved["kinds"][t]](summed_stats(s)) for t, s in saved[which].items()}
              for which in ("clean", "attacked")}
    rebuilt, rebuilt_tasks = arp(scored["clean"], scored["attacked"], config_tasks("nyuv2"))
    assert rebuilt == pytest.approx(record["arp"]["overall"], rel=0, abs=1e-9)
    assert rebuilt_tasks == pytest.approx(record["arp"]["per_task"], rel=0, abs=1e-9)
    value, lo, hi = record["stats"]["arp"]["overall"]
    assert value == record["arp"]["overall"] and lo <= hi  # a percentile interval need not hold the point
    assert "95% CI over" in proc.stdout

    # The offline W&B run mirrors the record.
    from mtl_attack.logger import read_offline_summary

    run_dirs = list((out / "wandb").glob("offline-run-*"))
    assert len(run_dirs) == 1
    summary = read_offline_summary(run_dirs[0])
    assert summary["arp"] == pytest.approx(record["arp"]["overall"])
    assert summary["arp/normal"] == pytest.approx(record["arp"]["per_task"]["normal"])
    assert summary["clean/depth_zbuffer/abs_err"] == pytest.approx(record["metrics"]["clean"]["depth_zbuffer"]["abs_err"])
    assert summary["status"] == "done"
    assert summary["arp_lo"] == pytest.approx(record["stats"]["arp"]["overall"][1])
    # A few test images' truth, clean and attacked predictions: a PNG beside the record, and in W&B.
    assert record["predictions"] == "predictions.png"
    with Image.open(out / "predictions.png") as img:
        assert img.format == "PNG" and img.width > img.height > 100
    assert summary["predictions"]["_type"] == "image-file"


def test_sweep_resumes_records_failures_and_reports(cache, tmp_path):
    sweep = tmp_path / "sweep"
    args = ["run.py", "-m", *tiny(cache_dir=cache), "logger=none", f"hydra.sweep.dir={sweep}",
            "attack=dgba_fgsm,single_keypoints2d_fgsm", "eps=2,8"]
    proc = _ok(run_cli(args, REPO))
    table = pd.read_csv(sweep / "results.csv")
    assert len(table) == 4
    done = table[table.status == "done"].sort_values("eps")
    assert list(done.eps) == [2.0, 8.0] and set(done.attack) == {"dgba_fgsm"}
    failed = table[table.status == "failed"]
    # keypoints2d is no NYUv2 task: those jobs fail with the reason, the others go on.
    assert len(failed) == 2 and failed.error.str.contains("keypoints2d").all()
    assert proc.stdout.count("skip") == 0

    again = _ok(run_cli(args, REPO))
    assert again.stdout.count("skip") == 2  # finished jobs skipped, failed ones retried
    forced = _ok(run_cli(args + ["force=true"], REPO))
    assert forced.stdout.count("skip") == 0

    rep = _ok(run_cli(["-m", "mtl_attack.cli", "report", str(sweep), "--out", str(tmp_path / "rep")], REPO))
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "failed" in md
    assert (tmp_path / "rep" / "arp_vs_eps.png").stat().st_size > 1000
    # One model per point: each gets its interval over the test images (drawn as a band).
    curve = pd.read_csv(tmp_path / "rep" / "arp_vs_eps.csv")
    assert list(curve.eps) == [2.0, 8.0] and (curve.lo <= curve.hi).all() and curve.lo.notna().all()
    assert "shaded: the 95% interval" in md
    assert "rep" in rep.stdout


@pytest.mark.parametrize("launcher", ["joblib", "submitit_local"])
def test_other_launchers(cache, tmp_path, launcher):
    sweep = tmp_path / "sweep"
    extra = ["hydra.launcher.n_jobs=2"] if launcher == "joblib" else ["hydra.launcher.timeout_min=10"]
    _ok(run_cli(["run.py", "-m", *tiny(cache_dir=cache), "logger=none", "attack=total_fgsm", "eps=1,4",
                 f"hydra/launcher={launcher}", *extra, f"hydra.sweep.dir={sweep}"], REPO, timeout=900))
    records = sorted(sweep.rglob("record.json"))
    assert len(records) == 2
    assert all(json.loads(p.read_text())["status"] == "done" for p in records)
    assert len(pd.read_csv(sweep / "results.csv")) == 2


def test_config_changes_known_answers():
    from mtl_attack import records

    old = {"eps": 4.0, "attack": {"steps": 10, "fused": True}, "device": "cpu", "logger": {"name": "none"}}
    new = {"eps": 4.0, "attack": {"steps": 20, "fused": True}, "device": "cuda", "logger": {"name": "wandb"},
           "seed": 1}
    assert records.config_changes(old, new) == ["attack.steps", "seed"]  # device, logger: neutral
    assert records.config_changes(old, old) == []
    assert records.config_changes({"a": {"b": 1}}, {"a": 2}) == ["a"]
    assert records.config_changes({"x": {"device": 1}}, {"x": {"device": 2}}) == ["x.device"]  # top level only


def test_resume_skips_only_records_made_with_the_same_settings(cache, tmp_path, capsys):
    """A finished job is skipped when its settings are unchanged (neutral ones aside) and rerun
    when they differ, e.g. after an experiment file was edited (the folder name stays)."""
    from mtl_attack import pipeline
    from mtl_attack.config import compose

    job = pipeline.Job(dir=tmp_path / "job", name="j", group="g", multirun=True)
    first = pipeline.run(compose(tiny("logger=none", cache_dir=cache)), job, progress=False)
    assert first["status"] == "done"
    again = pipeline.run(compose(tiny("logger=none", "device=cpu", cache_dir=cache)), job, progress=False)
    assert "skip j: finished record" in capsys.readouterr().out
    assert again["provenance"]["started"] == first["provenance"]["started"]
    edited = pipeline.run(compose(tiny("logger=none", "attack.steps=1", cache_dir=cache)), job, progress=False)
    assert "rerun j: its finished record was made with other settings (attack.steps)" in capsys.readouterr().out
    assert edited["config"]["attack"]["steps"] == 1
    assert json.loads((job.dir / "record.json").read_text())["config"]["attack"]["steps"] == 1


def test_machine_label_names_the_cpu_model_its_instruction_set_and_threads():
    import torch

    cpuinfo = ("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\n"
               "flags\t\t: fpu sse avx avx2\nprocessor\t: 1\nmodel name\t: AMD EPYC 7B13\n")
    assert records.cpu_model_from(cpuinfo, "x86_64") == "AMD EPYC 7B13"
    assert records.cpu_model_from("processor\t: 0\n", "x86_64") == "x86_64"
    assert records.instruction_set("AVX2", {"avx2"}) == "AVX2"
    assert records.instruction_set("AVX512", {"avx512f"}) == "AVX-512"
    assert records.instruction_set("AVX512", {"avx512f", "amx_tile"}) == "AVX-512+AMX"
    assert records.instruction_set("AVX2", {"avx512f", "amx_tile"}, "AVX2") == "AVX2, oneDNN up to AVX2"
    assert records.instruction_set("DEFAULT", set()) == "no AVX2"
    label = records.machine_label(torch.device("cpu"), 3)
    assert label.startswith("cpu: ") and label.endswith("), 3 torch threads")
    assert records.machine_label(torch.device("cpu")) == label.removesuffix(", 3 torch threads")


def test_results_rows_carry_their_provenance():
    from mtl_attack import records

    record = {"status": "done", "config": {"eps": 4.0},
              "provenance": {"code": {"package": "0.1.0", "git_commit": "abc123", "git_dirty": False},
                             "finished": "2026-12-01T20:00:00+00:00"}}
    row = records.flatten(record)
    assert (row["git_commit"], row["git_dirty"], row["finished"]) == ("abc123", False, "2026-12-01T20:00:00+00:00")
    assert records.flatten({"status": "failed"})["git_commit"] is None  # old or partial records still flatten


def test_results_rows_name_apgds_start_from_the_config():
    from mtl_attack import records

    def row(optimizer, start):
        return records.flatten({"status": "done", "attack": {"optimizer": optimizer},
                                "config": {"attack": {"apgd_start": start}}})["apgd_start"]

    assert row("apgd", "reference") == "reference" and row("apgd", "authors") == "authors"
    assert row("ensemble", "reference") == "reference"
    assert row("pgd", "reference") is None  # the start is APGD's alone

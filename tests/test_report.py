"""Report tables and figures from fake job records with hand-set ARP (known answers)."""
import copy

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from mtl_attack import atomic, records, report

TASKS = ("segment_semantic", "normal", "depth_zbuffer")
MODELS = {  # label -> (layout_index, params_paper_M)
    "IND": (None, 63.83),
    "#9": (9, 63.6),
    "AS": (0, 21.28),
}

TEMPLATE = {
    "schema": 1, "status": "done", "error": None,
    "job": {"name": "", "dir": "", "sweep_dir": "", "group": "default", "overrides": []},
    "config": {"dataset": {"name": "synth_nyuv2", "kind": "nyuv2", "input_size": 64},
               "backbone": {"name": "resnet34", "head_width": 64},
               "layout": {"preset": "all_shared", "index": None, "spec": None},
               "attack": {"optimizer": "apgd", "objective": "dgba", "steps": 10},
               "eps": 4.0, "seed": 0, "logger": {"name": "none"}},
    "provenance": {"device": "cpu"},
    "seed": 0,
    "model": {"backbone": "resnet34", "layout": "[[{0, 1, 2}]]", "layout_index": 0, "label": "AS",
              "params_paper_M": 21.28},
    "attack": {"name": "dgba_apgd", "optimizer": "apgd", "objective": "dgba", "eps": 4.0, "steps": 10},
    "metrics": {"clean": {"segment_semantic": {"miou": 40.0}}, "attacked": {"segment_semantic": {"miou": 10.0}}},
    "arp": {"overall": 80.0, "per_task": {}},
    "timings": {"attack_s": 1.0, "total_s": 2.0},
}

# (model, optimizer, objective, eps, seed, overall ARP, per-task ARP for segm/norm/depth, status)
JOBS = [
    ("IND", "pgd", "total", 4, 0, 50.0, (90, 30, 30), "done"),
    ("IND", "pgd", "dgba", 4, 0, 70.0, (60, 70, 80), "done"),
    ("IND", "apgd", "dgba", 4, 0, 80.0, (80, 80, 80), "done"),
    ("IND", "apgd", "dgba", 4, 1, 90.0, (90, 90, 90), "done"),  # second seed: cell mean 85
    ("AS", "pgd", "total", 4, 0, 60.0, (100, 40, 40), "done"),
    ("AS", "pgd", "dgba", 4, 0, 60.0, (50, 60, 70), "done"),  # tie with Total
    ("AS", "apgd", "single_normal", 4, 0, 40.0, (10, 100, 10), "done"),
    ("AS", "apgd", "dgba", 4, 0, 30.0, (30, 30, 30), "done"),
    ("#9", "pgd", "dgba", 4, 0, 75.0, (70, 75, 80), "done"),
    ("IND", "pgd", "total", 4, 1, None, None, "failed"),  # excluded everywhere
    ("IND", "pgd", "dgba", 8, 0, 100.0, (100, 100, 100), "done"),
    ("AS", "pgd", "dgba", 8, 0, 120.0, (120, 120, 120), "done"),
]


def make_record(model, optimizer, objective, eps, seed, arp, per_task, status):
    rec = copy.deepcopy(TEMPLATE)
    index, params = MODELS[model]
    name = (f"single_{objective[len('single_'):]}_{optimizer}" if objective.startswith("single_")
            else f"{objective}_{optimizer}")
    job = f"model={model},attack={name},eps={eps},seed={seed}"
    rec["status"] = status
    rec["error"] = "boom" if status != "done" else None
    rec["job"]["name"] = job
    rec["job"]["dir"] = f"/sweep/{job}"
    rec["config"]["eps"] = float(eps)
    rec["config"]["seed"] = seed
    rec["model"].update(label=model, layout_index=index, params_paper_M=params)
    # the job record names Single-x by objective "single" plus the preset name
    rec["attack"] = {"name": name, "optimizer": optimizer,
                     "objective": "single" if objective.startswith("single_") else objective,
                     "eps": float(eps), "steps": 10}
    rec["arp"] = (None if arp is None else
                  {"overall": arp, "per_task": dict(zip(TASKS, map(float, per_task)))})
    return rec, job


@pytest.fixture
def sweep(tmp_path):
    root = tmp_path / "sweep"
    for i, job in enumerate(JOBS):
        rec, _ = make_record(*job)
        atomic.write_json(root / f"{i}" / records.RECORD_NAME, rec)
    return root


@pytest.fixture
def results(sweep):
    return report.load_results([sweep])


def test_load_counts_failed_rows(results):
    assert len(results) == 12
    assert len(report.done_rows(results)) == 11
    note = report.status_note(results)
    assert "11 done" in note and "1 failed" in note and "eps=4,seed=1" in note
    assert "\n" not in note


def test_arp_table_values_and_order(results):
    table = report.arp_table(results, eps=4)
    assert list(table.index) == ["IND", "#9", "AS"]  # most parameters first
    assert list(table.columns) == [("pgd", "total"), ("pgd", "dgba"),
                                   ("apgd", "single_normal"), ("apgd", "dgba")]
    expected = pd.DataFrame([[50, 70, np.nan, 85], [np.nan, 75, np.nan, np.nan], [60, 60, 40, 30]],
                            index=table.index, columns=table.columns, dtype=float)
    pd.testing.assert_frame_equal(table, expected, check_names=False)
    assert table.attrs["params_paper_M"] == {"IND": 63.83, "#9": 63.6, "AS": 21.28}
    per_task = report.arp_table(results, eps=4, value="arp_normal")
    assert per_task.loc["AS", ("apgd", "single_normal")] == 100.0


def test_arp_table_model_subset_in_given_order(results):
    table = report.arp_table(results, eps=4, models=["AS", "IND"])
    assert list(table.index) == ["AS", "IND"]
    with pytest.raises(ValueError, match="not in the results"):
        report.arp_table(results, eps=4, models=["#99"])


def test_mixed_eps_needs_a_choice(results):
    with pytest.raises(ValueError, match=r"several eps \(4, 8\)"):
        report.arp_table(results)
    with pytest.raises(ValueError, match="eps 4, 8"):
        report.arp_table(results, eps=2)


def test_best_per_row_per_optimizer_with_ties(results):
    table = report.arp_table(results, eps=4)
    marks = report.best_per_row(table)
    best = {m: [c for c in table.columns if marks.at[m, c]] for m in table.index}
    assert best["IND"] == [("pgd", "dgba"), ("apgd", "dgba")]
    assert best["#9"] == [("pgd", "dgba")]
    assert best["AS"] == [("pgd", "total"), ("pgd", "dgba"), ("apgd", "single_normal")]  # tie in PGD
    overall = report.best_per_row(table, within="row")
    assert [c for c in table.columns if overall.at["AS", c]] == [("pgd", "total"), ("pgd", "dgba")]
    assert [c for c in table.columns if overall.at["IND", c]] == [("apgd", "dgba")]
    counts = report.first_place_counts(marks)
    assert counts.to_dict() == {"single_normal": 1, "total": 1, "dgba": 4}


def test_markdown_bolds_best(results):
    table = report.arp_table(results, eps=4)
    text = report.to_markdown(table, report.best_per_row(table))
    lines = text.strip().splitlines()
    assert lines[0] == ("| model | #Params (M) | PGD Total | PGD DGBA | APGD Single-Norm | APGD DGBA |")
    assert lines[2] == "| IND | 63.83 | 50.00 | **70.00** | - | **85.00** |"
    assert lines[3] == "| #9 | 63.60 | - | **75.00** | - | - |"
    assert lines[4] == "| AS | 21.28 | **60.00** | **60.00** | **40.00** | 30.00 |"
    assert len(lines) == 5


def test_arp_vs_eps_means_over_models(results):
    data = report.arp_vs_eps(results)
    got = {(r.optimizer, r.objective, r.eps): (r.arp, r.n_models) for r in data.itertuples()}
    assert got[("pgd", "dgba", 4.0)] == (pytest.approx((70 + 75 + 60) / 3), 3)
    assert got[("pgd", "dgba", 8.0)] == (pytest.approx(110.0), 2)
    assert got[("apgd", "dgba", 4.0)] == (pytest.approx((85 + 30) / 2), 2)  # IND's two seeds first averaged
    assert got[("pgd", "total", 4.0)] == (pytest.approx(55.0), 2)  # failed row left out
    assert list(data[["optimizer", "objective"]].drop_duplicates().itertuples(index=False, name=None)) == [
        ("pgd", "total"), ("pgd", "dgba"), ("apgd", "single_normal"), ("apgd", "dgba")]


def test_per_task_bars_means(results):
    bars = report.per_task_bars(results, eps=4)
    assert list(bars.columns) == list(TASKS)
    assert bars.loc[("pgd", "dgba"), "normal"] == pytest.approx((70 + 75 + 60) / 3)
    assert bars.loc[("apgd", "dgba"), "segment_semantic"] == pytest.approx((85 + 30) / 2)
    only = report.per_task_bars(results, eps=4, objectives=["dgba"], optimizers=["pgd"])
    assert list(only.index) == [("pgd", "dgba")]


def test_weighted_table_skipped_without_weights(results):
    assert report.weighted_grid_table(results, eps=4) is None


def test_weighted_table_with_weights(results):
    df = report.done_rows(results).copy()
    extra = df[(df["objective"] == "total") & (df["model"] == "AS")].copy()
    extra["objective"], extra["attack"], extra["arp"] = "weightedtotal", "weightedtotal_pgd", 55.0
    extra["weights"] = "0.1:0.1:0.8"
    table = report.weighted_grid_table(pd.concat([df, extra], ignore_index=True), eps=4)
    assert list(table.index) == ["AS"]
    assert table.loc["AS", ("pgd", "weights")] == "0.1:0.1:0.8"
    assert table.loc["AS", ("pgd", "weightedtotal")] == 55.0
    assert table.loc["AS", ("pgd", "dgba")] == 60.0


def test_write_report_files(results, tmp_path):
    out = tmp_path / "report"
    paths = report.write_report(results, out)
    names = sorted(p.name for p in paths)
    assert names == sorted([
        "table_arp_eps4.md", "table_arp_eps4.csv", "per_task_arp_eps4.png", "per_task_arp_eps4.csv",
        "table_arp_eps8.md", "table_arp_eps8.csv", "per_task_arp_eps8.png", "per_task_arp_eps8.csv",
        "arp_vs_eps.png", "arp_vs_eps.csv", "results.csv", "report.md"])
    assert all(p.is_file() for p in paths)
    assert not list(out.glob(".*tmp"))  # no temp files left
    for png in out.glob("*.png"):
        with Image.open(png) as im:
            im.verify()
        with Image.open(png) as im:
            assert im.format == "PNG" and im.width > 300 and im.height > 200
    index = (out / "report.md").read_text()
    assert "1 failed" in index and "(table_arp_eps4.md)" in index and "(arp_vs_eps.png)" in index
    # These results carry no per-image statistics: no first place, the bests marked unchecked.
    assert "counted only where" in index and "): none." in index and "unchecked (no per-image statistics" in index
    table = (out / "table_arp_eps4.md").read_text()
    assert "**" not in table and "| 70.00? | - | 85.00 |" in table  # APGD DGBA alone on IND: no contest, no mark
    assert "| *60.00* | *60.00* | 40.00? | 30.00 |" in table  # equal means tie; the unchecked best gets ?
    assert "without a contest (one attack in the group, no first place): 2" in index
    assert "Only bold cells count as first places" in index
    csv = pd.read_csv(out / "table_arp_eps4.csv", index_col="model")
    assert csv.loc["IND", "apgd/dgba"] == 85.0 and csv.loc["AS", "params_paper_M"] == 21.28


def test_write_report_one_eps(results, tmp_path):
    paths = report.write_report(results, tmp_path / "r", eps=8)
    names = sorted(p.name for p in paths)
    assert names == ["per_task_arp_eps8.csv", "per_task_arp_eps8.png", "report.md", "results.csv",
                     "table_arp_eps8.csv", "table_arp_eps8.md"]


def test_results_table_gives_same_table(results, sweep, tmp_path):
    path = records.write_table(results, tmp_path / "results.csv")
    from_table = report.load_results([path])
    pd.testing.assert_frame_equal(report.arp_table(from_table, eps=4), report.arp_table(results, eps=4))
    pd.testing.assert_frame_equal(report.arp_vs_eps(from_table), report.arp_vs_eps(results))
    both = report.load_results([path, sweep])  # the same jobs twice count once
    assert len(both) == 12
    pd.testing.assert_frame_equal(report.arp_vs_eps(both), report.arp_vs_eps(results))
    paths = report.main_report([path], tmp_path / "out", eps=4)
    assert (tmp_path / "out" / "table_arp_eps4.md").read_text() == \
        (report.write_report(results, tmp_path / "out2", eps=4)[0]).read_text()
    assert len(paths) == 6


def test_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        report.load_results([tmp_path / "nope"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no record.json"):
        report.load_results([tmp_path / "empty"])
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(ValueError, match="results table"):
        report.load_results([tmp_path / "x.txt"])
    rec, _ = make_record("AS", "pgd", "dgba", 4, 0, None, None, "failed")
    atomic.write_json(tmp_path / "f" / records.RECORD_NAME, rec)
    with pytest.raises(ValueError, match="no finished"):
        report.arp_table(report.load_results([tmp_path / "f"]))


def test_several_settings_are_split(results, tmp_path):
    other = results.assign(dataset="synth_taskonomy")
    both = pd.concat([results, other], ignore_index=True)
    with pytest.raises(ValueError, match="several dataset/backbone"):
        report.arp_table(both, eps=4)
    names = {p.name for p in report.write_report(both, tmp_path / "r", eps=4)}
    assert {"synth_nyuv2_resnet34_table_arp_eps4.md", "synth_taskonomy_resnet34_table_arp_eps4.md"} <= names


# ---------------------------------------------------------------- first places from per-image statistics

def _stats_record(root, attack, seed, clean_losses, attacked_losses, model="AS", surrogate=None, loss=None,
                  train_attack=None):
    """A job on a one-task dataset scored by its loss, with its per-image statistics file
    (black-box from ``surrogate`` when given; maximising the harder task loss ``loss`` when given;
    on a model adversarially trained with ``train_attack`` when given)."""
    opt, obj = attack.split("_")[1], attack.split("_")[0]
    job = root / ",".join(x for x in (model, train_attack, attack, loss, f"seed={seed}") if x)
    ones = np.ones(len(clean_losses))
    records.write_image_stats(job / records.STATS_NAME, {
        "clean": {"t": {"loss": np.asarray(clean_losses, float), "count": ones}},
        "attacked": {"t": {"loss": np.asarray(attacked_losses, float), "count": ones}}}, {"t": "loss"})
    value = 100 * (np.mean(attacked_losses) - np.mean(clean_losses)) / np.mean(clean_losses)
    rec = {"status": "done", "job": {"name": job.name, "dir": str(job)},
           "config": {"dataset": {"name": "mine"}, "backbone": {"name": "mine"}, "eps": 4.0, "seed": seed},
           "model": {"label": model, "train_attack": train_attack},
           "attack": {"name": attack, "optimizer": opt, "objective": obj, "eps": 4.0,
                                                  "losses": {"t": loss or "plain"}},
           "threat": "black-box" if surrogate else "white-box",
           "surrogate": {"label": surrogate} if surrogate else None,
           "directions": {"t": {"loss": False}},
           "metrics": {"clean": {"t": {"loss": float(np.mean(clean_losses))}},
                       "attacked": {"t": {"loss": float(np.mean(attacked_losses))}}},
           "arp": {"overall": value, "per_task": {"t": value}},
           "stats": {"file": records.STATS_NAME, "images": len(clean_losses),
                     "arp": {"overall": [value, value - 1, value + 1], "per_task": {"t": [value, value - 1, value + 1]}}}}
    atomic.write_json(job / records.RECORD_NAME, rec)


def test_first_places_need_the_paired_interval_to_exclude_zero(tmp_path):
    """PGD: DGBA doubles every image's loss, Total adds half: DGBA is first beyond doubt. APGD: DGBA
    and Total differ by image noise only, so the better mean is a tie, not a first place."""
    rng = np.random.default_rng(0)
    clean = rng.uniform(1, 2, 60)
    for seed in (0, 1):
        _stats_record(tmp_path, "dgba_pgd", seed, clean, clean * 2.0)
        _stats_record(tmp_path, "total_pgd", seed, clean, clean * 1.5)
        noise = rng.normal(0, 0.3, (2, 60))
        _stats_record(tmp_path, "dgba_apgd", seed, clean, clean * (1.8 + noise[0]).clip(1.01))
        _stats_record(tmp_path, "total_apgd", seed, clean, clean * (1.8 + noise[1]).clip(1.01))
    rows = report.load_results([tmp_path])
    assert rows["stats_file"].notna().all() and (rows["arp_lo"] < rows["arp"]).all()
    table = report.arp_table(rows, eps=4)
    marks = report.first_places(report.attack_keys(rows), table)
    assert marks.at["AS", ("pgd", "dgba")] == "first" and marks.at["AS", ("pgd", "total")] == ""
    assert marks.at["AS", ("apgd", "dgba")] == "tie" and marks.at["AS", ("apgd", "total")] == "tie"
    assert report.first_place_counts(marks).to_dict() == {"total": 0, "dgba": 1}
    out = tmp_path / "report"
    report.write_report(rows, out)
    md = (out / "report.md").read_text()
    assert "beyond the paired 95% bootstrap interval" in md and ": DGBA 1. Ties" in md and "Ties (best" in md
    line = (out / "table_arp_eps4.md").read_text().splitlines()[-1]
    assert "| 50.00 | **100.00** | *" in line and line.count("*") == 8  # one bold, two italic cells
    ci = pd.read_csv(out / "table_arp_eps4_intervals.csv")
    assert ((ci["lo"] <= ci["arp"]) & (ci["arp"] <= ci["hi"])).all() and (ci["seeds"] == 2).all()
    # interval columns are not tasks
    assert report.load.arp_tasks(["arp", "arp_lo", "arp_hi", "arp_t", "arp_t_lo", "arp_t_hi", "arp_x_lo"]) == ["t", "x_lo"]
    assert list(pd.read_csv(out / "per_task_arp_eps4.csv").columns) == ["optimizer", "objective", "t"]
    pgd = ci[(ci["optimizer"] == "pgd") & (ci["objective"] == "dgba")].iloc[0]
    assert pgd["arp"] == pytest.approx(100.0) and pgd["lo"] == pytest.approx(100.0)  # every image doubled


def test_a_report_folder_alone_rebuilds_its_intervals(tmp_path):
    """results.csv and stats/ of a report carry the per-image statistics: with the job folders
    gone, a report from that table alone has the same marks and intervals."""
    import shutil

    rng = np.random.default_rng(2)
    clean = rng.uniform(1, 2, 40)
    jobs = tmp_path / "jobs"
    _stats_record(jobs, "dgba_pgd", 0, clean, clean * 2.0)
    _stats_record(jobs, "total_pgd", 0, clean, clean * (1.5 + rng.normal(0, 0.2, 40)).clip(1.01))
    first = tmp_path / "first"
    report.write_report(report.load_results([jobs]), first)
    shutil.rmtree(jobs)
    table = pd.read_csv(first / "results.csv")
    assert sorted(table["stats_file"]) == sorted(f"stats/{p.stem}.npz" for p in (first / "stats").iterdir())
    again = tmp_path / "again"
    report.write_report(report.load_results([first / "results.csv"]), again)
    for name in ("table_arp_eps4.md", "table_arp_eps4_intervals.csv"):
        assert (again / name).read_text() == (first / name).read_text()
    assert "**" in (again / "table_arp_eps4.md").read_text()  # a first place needs the statistics
    assert (again / "stats").is_dir() and len(list((again / "stats").iterdir())) == 2


def test_study_tables_use_the_paired_first_places(tmp_path):
    """Table 6 shape: on the black-box target DGBA is ahead beyond doubt; on the surrogate's own
    white-box row DGBA and Total differ by noise only, a tie."""
    rng = np.random.default_rng(1)
    clean = rng.uniform(1, 2, 50)
    _stats_record(tmp_path, "dgba_pgd", 0, clean, clean * 1.6, model="IND", surrogate="AS")
    _stats_record(tmp_path, "total_pgd", 0, clean, clean * 1.3, model="IND", surrogate="AS")
    noise = rng.normal(0, 0.3, (2, 50))
    _stats_record(tmp_path, "dgba_pgd", 0, clean, clean * (1.8 + noise[0]).clip(1.01))
    _stats_record(tmp_path, "total_pgd", 0, clean, clean * (1.8 + noise[1]).clip(1.01))
    out = tmp_path / "report"
    report.write_report(report.load_results([tmp_path]), out)
    lines = (out / "table_transfer_AS_eps4.md").read_text().splitlines()
    bb, wb = [l for l in lines if l.startswith("| BB IND")][0], [l for l in lines if l.startswith("| WB AS")][0]
    assert bb.count("**") == 2 and "*" not in bb.replace("**", "")  # DGBA first
    assert wb.count("**") == 0 and wb.count("*") == 4  # two italic cells: a tie
    md = (out / "report.md").read_text()
    assert "ahead of the runner-up beyond the paired 95% bootstrap interval" in md and "First places: DGBA 1." in md


def test_harder_losses_are_compared_with_the_plain_ones_on_the_same_images(tmp_path):
    """DGBA with a harder loss raises every image's loss from 1.5x to 2x clean: +50 ARP points with
    a degenerate interval (every resample agrees); Total's harder loss moves losses by noise only
    (cannot tell); an attack without a plain run is left out."""
    rng = np.random.default_rng(2)
    clean = rng.uniform(1, 2, 40)
    _stats_record(tmp_path, "dgba_pgd", 0, clean, clean * 1.5)
    _stats_record(tmp_path, "dgba_pgd", 0, clean, clean * 2.0, loss="clipped")
    noise = rng.normal(0, 0.2, (2, 40))
    _stats_record(tmp_path, "total_pgd", 0, clean, clean * (1.8 + noise[0]).clip(1.01))
    _stats_record(tmp_path, "total_pgd", 0, clean, clean * (1.8 + noise[1]).clip(1.01), loss="clipped")
    _stats_record(tmp_path, "dgba_apgd", 0, clean, clean * 3.0, loss="clipped")
    keyed = report.attack_keys(report.load_results([tmp_path]))
    gains = report.significance.loss_gains(keyed).set_index(["objective", "measure"])
    assert list(gains.index.get_level_values(0).unique()) == ["dgba", "total"] and set(gains["optimizer"]) == {"pgd"}
    dgba = gains.loc[("dgba", "overall")]
    assert (dgba["plain"], dgba["harder"]) == pytest.approx((50.0, 100.0))
    assert (dgba["difference"], dgba["lo"], dgba["hi"]) == pytest.approx((50.0, 50.0, 50.0))
    assert dgba["verdict"] == "raises" and gains.loc[("dgba", "t"), "difference"] == pytest.approx(50.0)
    total = gains.loc[("total", "overall")]
    assert total["lo"] < 0 < total["hi"] and total["verdict"] == "cannot tell"
    out = tmp_path / "report"
    report.write_report(report.load_results([tmp_path]), out)
    table = (out / "loss_gains_eps4.md").read_text()
    assert "| AS PGD DGBA [clipped] | +50.00 [+50.00, +50.00] raises |" in table
    assert "raised in 1, lowered in 0, cannot tell in 1 of 2 cases" in (out / "report.md").read_text()


def test_accuracy_cost_of_adversarial_training_is_paired_with_the_clean_trained_model(tmp_path):
    """AT with Total raises every image's clean loss by 10% (a 10% drop, every resample agrees); AT with
    DGBA leaves the clean losses as they are (0, degenerate); AT with Single-t has noise only (cannot tell)."""
    rng = np.random.default_rng(3)
    clean = rng.uniform(1, 2, 40)
    noisy = clean * (1 + rng.normal(0, 0.2, 40)).clip(0.5)
    for train, mine in ((None, clean), ("total_fgsm", 1.1 * clean), ("dgba_fgsm", clean), ("single_t_fgsm", noisy)):
        for attack in ("total_pgd", "dgba_pgd"):
            _stats_record(tmp_path, attack, 0, mine, 2 * mine, train_attack=train)
    rows = report.load_results([tmp_path])
    drops = report.significance.accuracy_drop_intervals(report.attack_keys(rows)).set_index(["train_attack", "task"])
    assert set(drops.index.get_level_values(0)) == {"total_fgsm", "dgba_fgsm", "single_t_fgsm"}
    assert drops.loc[("total_fgsm", "overall")].tolist() == pytest.approx([10.0, 10.0, 10.0])
    assert drops.loc[("total_fgsm", "t"), "drop"] == pytest.approx(10.0)
    assert drops.loc[("dgba_fgsm", "overall")].tolist() == pytest.approx([0.0, 0.0, 0.0])
    single = drops.loc[("single_t_fgsm", "overall")]
    assert single["drop"] == pytest.approx(100 * (noisy.mean() / clean.mean() - 1)) and single["lo"] < 0 < single["hi"]
    out = tmp_path / "report"
    report.write_report(rows, out)
    assert len(pd.read_csv(out / "table_adv_accuracy_intervals.csv")) == 6
    assert "FGSM Total 10.00 [10.00, 10.00]; FGSM DGBA 0.00 [0.00, 0.00]; FGSM Single-t" in (out / "report.md").read_text()


def _single_t_record(root, model, blocks, factor_u, seed=0):
    """A Single-t PGD job on a two-task dataset (t, u, both scored by their loss) that doubles
    every image's t loss and multiplies u's by ``factor_u``; ``blocks`` leading shared blocks."""
    job = root / f"{model},single_t_pgd,seed={seed}"
    clean_t = np.array([1.0, 2.0, 4.0, 3.0, 2.5])
    clean_u = clean_t[::-1].copy()
    ones = np.ones_like(clean_t)
    records.write_image_stats(job / records.STATS_NAME, {
        "clean": {"t": {"loss": clean_t, "count": ones}, "u": {"loss": clean_u, "count": ones}},
        "attacked": {"t": {"loss": 2 * clean_t, "count": ones}, "u": {"loss": factor_u * clean_u, "count": ones}}},
        {"t": "loss", "u": "loss"})
    per_task = {"t": 100.0, "u": 100 * (factor_u - 1)}
    overall = float(np.mean(list(per_task.values())))
    rec = {"status": "done", "job": {"name": job.name, "dir": str(job)},
           "config": {"dataset": {"name": "mine"}, "backbone": {"name": "mine"}, "eps": 4.0, "seed": seed},
           "model": {"label": model, "shared_blocks": blocks},
           "attack": {"name": "single_t_pgd", "optimizer": "pgd", "objective": "single", "target_task": "t",
                      "eps": 4.0},
           "directions": {"t": {"loss": False}, "u": {"loss": False}},
           "metrics": {"clean": {"t": {"loss": clean_t.mean()}, "u": {"loss": clean_u.mean()}},
                       "attacked": {"t": {"loss": 2 * clean_t.mean()}, "u": {"loss": factor_u * clean_u.mean()}}},
           "arp": {"overall": overall, "per_task": per_task},
           "stats": {"file": records.STATS_NAME, "images": len(clean_t),
                     "arp": {"overall": [overall] * 3, "per_task": {t: [v] * 3 for t, v in per_task.items()}}}}
    atomic.write_json(job / records.RECORD_NAME, rec)


def test_transferability_has_intervals_and_a_paired_trend(tmp_path):
    """Single-t hurts u by half its own damage on AS (0.5), a quarter on #41 and a tenth on IND
    (0.1), on every image alike: zero-width intervals, and AS - IND = +0.40 rises with sharing."""
    for model, blocks, factor in (("AS", 5, 1.5), ("#41", 3, 1.25), ("IND", 0, 1.1)):
        _single_t_record(tmp_path, model, blocks, factor)
    keyed = report.attack_keys(report.load_results([tmp_path]))
    per_model, trend = report.significance.transferability_intervals(report.study_tables.single_x(keyed))
    got = per_model.set_index("model")
    assert got.loc["AS", ["transferability", "lo", "hi"]].tolist() == pytest.approx([0.5, 0.5, 0.5])
    assert got.loc["IND", "transferability"] == pytest.approx(0.1) and got.loc["#41", "shared_blocks"] == 3
    (row,) = trend.itertuples()
    assert (row.most, row.fewest, row.verdict) == ("AS", "IND", "rises with sharing")
    assert (row.difference, row.lo, row.hi) == pytest.approx((0.4, 0.4, 0.4))
    out = tmp_path / "report"
    report.write_report(report.load_results([tmp_path]), out)
    assert "PGD Single-t AS - IND +0.40 [+0.40, +0.40] rises with sharing" in (out / "report.md").read_text()
    assert len(pd.read_csv(out / "transferability_intervals.csv")) == 3


# ---------------------------------------------------------------- damaged records and files

def _truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def test_read_record_and_record_state_name_a_damaged_record(tmp_path):
    job = tmp_path / "job"
    job.mkdir()
    assert records.record_state(job) == "missing" and not records.is_done(job)
    rec, _ = make_record(*JOBS[0])
    path = atomic.write_json(job / records.RECORD_NAME, rec)
    assert records.record_state(job) == "done" and records.is_done(job)
    for status, state in (("failed", "failed"), ("running", "running"), (None, "running")):
        atomic.write_json(path, dict(rec, status=status))
        assert records.record_state(job) == state and not records.is_done(job)
    atomic.write_json(path, rec)
    _truncate(path)
    with pytest.raises(records.DamagedRecord) as err:
        records.read_record(path)
    message = str(err.value)
    assert message.startswith(f"record.json in {job} is damaged (invalid JSON at line ")
    assert str(path) in message and "\n" not in message
    assert isinstance(err.value, ValueError) and err.value.path == path
    assert records.record_state(job) == "damaged" and not records.is_done(job)
    for data, reason in ((b"", "empty file"), (b"  \n", "empty file"), (b"[1, 2]", "a JSON list, not an object"),
                         (b"\xff\xfe{}", "not UTF-8 text"), (b'"text"', "a JSON str, not an object")):
        path.write_bytes(data)
        with pytest.raises(records.DamagedRecord, match=f"is damaged \\({reason}"):
            records.read_record(path)
        assert records.record_state(job) == "damaged"
    with pytest.raises(FileNotFoundError):
        records.read_record(tmp_path / "nope" / records.RECORD_NAME)


def test_gather_and_report_skip_a_damaged_record_with_a_warning(sweep, caplog):
    bad = sweep / "3" / records.RECORD_NAME
    _truncate(bad)
    damaged = []
    with caplog.at_level("WARNING"):
        df = records.gather([sweep], damaged=damaged)
    assert len(df) == len(JOBS) - 1
    assert [e.path for e in damaged] == [bad]
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 1 and str(bad) in warned[0] and "damaged" in warned[0]
    caplog.clear()
    with caplog.at_level("WARNING"):
        results = report.load_results([sweep])  # what `mtl-attack report` reads
    assert len(results) == len(JOBS) - 1 and any(str(bad) in r.getMessage() for r in caplog.records)
    assert report.arp_table(results, eps=4).shape[0] == 3


def test_a_report_over_only_damaged_records_stops_naming_the_file(tmp_path, capsys):
    from mtl_attack.cli import main

    rec, _ = make_record(*JOBS[0])
    path = atomic.write_json(tmp_path / "sweep" / "0" / records.RECORD_NAME, rec)
    _truncate(path)
    with pytest.raises(ValueError, match="no readable results") as err:
        report.load_results([tmp_path / "sweep"])
    assert str(path) in str(err.value) and "is damaged" in str(err.value)
    assert main(["report", str(tmp_path / "sweep"), "--out", str(tmp_path / "out")]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("mtl-attack report: error: no readable results") and str(path) in line


def test_a_damaged_results_table_is_named(tmp_path, sweep):
    csv = records.write_table(records.gather([sweep]), tmp_path / "t.csv")
    parquet = records.write_table(records.gather([sweep]), tmp_path / "t.parquet")
    csv.write_bytes(b"")
    _truncate(parquet)
    for path in (csv, parquet):
        with pytest.raises(ValueError, match=f"results table {path} is damaged"):
            report.load_results([path])


def test_a_damaged_stats_file_leaves_its_rows_unchecked(tmp_path, caplog):
    from mtl_attack.report import significance

    rng = np.random.default_rng(0)
    clean = rng.uniform(1, 2, 20)
    _stats_record(tmp_path, "dgba_pgd", 0, clean, clean * 2.0)
    _stats_record(tmp_path, "total_pgd", 0, clean, clean * 1.5)
    stats = next(tmp_path.glob("*dgba_pgd*")) / records.STATS_NAME
    _truncate(stats)
    significance._read.cache_clear()
    rows = report.load_results([tmp_path])
    with caplog.at_level("WARNING"):
        marks = report.first_places(report.attack_keys(rows), report.arp_table(rows, eps=4))
    assert marks.at["AS", ("pgd", "dgba")] == "unchecked"  # not a crash, and no first place
    assert any(str(stats) in r.getMessage() for r in caplog.records)


def test_rows_of_models_below_the_trivial_predictor_are_marked_with_a_footnote():
    table = pd.DataFrame({"a": [1.0, 2.0]}, index=pd.Index(["AS", "IND"], name="model"))
    plain = report.to_markdown(table)
    table.attrs["below_trivial"] = {"IND": "depth_zbuffer"}
    marked = report.to_markdown(table)
    assert "| IND † | 2.00 |" in marked and "| AS | 1.00 |" in marked
    assert marked.startswith(plain.split("| IND")[0])  # header and other rows unchanged
    assert marked.rstrip().endswith("† IND: the clean model is no better than the trivial predictor on "
                                     "depth_zbuffer; its ARP there means little.")

"""The robustness summary (report/robustness.py) on hand-made ensemble records."""
from __future__ import annotations

import json

import pytest

from mtl_attack.cli import main
from mtl_attack.records import find_records, gather, write_table
from mtl_attack.report.load import load_results
from mtl_attack.report.robustness import (model_name, robustness_summary, summary_markdown,
                                          write_robustness)

TASKS = ("segment_semantic", "normal")
MEMBERS = ("dgba_apgd", "total_apgd")


def _record(job_dir, eps, overall, members, label="AS", seed=0, attack="ensemble"):
    """A done record; members: name -> overall [v, lo, hi] (per task: v+1 and v-1)."""
    def ci(v):
        return {"overall": v, "per_task": {"segment_semantic": [v[0] + 1, v[1] + 1, v[2] + 1],
                                           "normal": [v[0] - 1, v[1] - 1, v[2] - 1]}}

    strongest = max(members, key=lambda m: members[m][0], default=None)
    return {
        "status": "done", "seed": seed,
        "job": {"dir": str(job_dir), "name": job_dir.name},
        "config": {"dataset": {"name": "synth_nyuv2"}, "backbone": {"name": "resnet34", "width": 0.25},
                   "eps": eps, "seed": seed},
        "model": {"kind": "tree", "label": label, "backbone": "resnet34", "width": 0.25, "layout_index": 0,
                  "train_attack": None},
        "attack": {"name": attack, "optimizer": attack if attack == "ensemble" else "apgd", "eps": float(eps)},
        "metrics": {"clean": {"segment_semantic": {"miou": 0.456}, "normal": {"angle_mean": 12.5}}},
        "directions": {"segment_semantic": {"miou": True}, "normal": {"angle_mean": False}},
        "arp": {"overall": overall[0], "per_task": {t: v[0] for t, v in ci(overall)["per_task"].items()}},
        "stats": {"arp": ci(overall), "level": 0.95, "images": 8},
        "ensemble": None if attack != "ensemble" else {
            "criterion": "relative", "members": list(members),
            "wins": {m: i + 3 for i, m in enumerate(members)},
            "arp": {m: ci(v) for m, v in members.items()},
            "difference": {m: [overall[0] - v[0], overall[0] - v[0] - 0.5, overall[0] - v[0] + 0.5]
                           for m, v in members.items()},
            "strongest_member": strongest,
            "disagreement": {"per_image": 0.25, "dataset": False}},
    }


def _write(root, name, record):
    d = root / name
    d.mkdir(parents=True)
    (d / "record.json").write_text(json.dumps(record))
    return d


@pytest.fixture
def sweep(tmp_path):
    root = tmp_path / "sweep"
    # eps 4 written first, so sorting matters; total_apgd is strongest at 4, dgba_apgd at 1.
    _write(root, "eps4", _record(root / "eps4", 4, [30.0, 28.0, 32.0],
                                 {"dgba_apgd": [25.0, 23.0, 27.0], "total_apgd": [28.0, 26.0, 30.0]}))
    _write(root, "eps1", _record(root / "eps1", 1, [10.0, 9.0, 11.0],
                                 {"dgba_apgd": [9.5, 8.5, 10.5], "total_apgd": [7.0, 6.0, 8.0]}))
    _write(root, "other", _record(root / "other", 4, [99.0, 98.0, 100.0], {}, attack="dgba_apgd"))
    return root


def _results(*roots):
    return load_results(roots)


def test_summary_values(sweep):
    results = _results(sweep)
    (entry,) = robustness_summary(results)
    assert entry["model"] == model_name(results.iloc[0]) == "synth_nyuv2 AS resnet34 x0.25, seed 0"
    assert entry["dataset"] == "synth_nyuv2" and entry["seed"] == 0
    assert entry["clean"] == {"segment_semantic": {"miou": 0.456}, "normal": {"angle_mean": 12.5}}
    assert entry["directions"] == {"segment_semantic": {"miou": True}, "normal": {"angle_mean": False}}
    assert [r["eps"] for r in entry["by_eps"]] == [1.0, 4.0]
    one, four = entry["by_eps"]
    assert one["arp"]["overall"] == [10.0, 9.0, 11.0]
    assert four["arp"]["per_task"]["normal"] == [29.0, 27.0, 31.0]
    assert one["strongest_single"] == {"member": "dgba_apgd", "arp": [9.5, 8.5, 10.5]}
    assert four["strongest_single"] == {"member": "total_apgd", "arp": [28.0, 26.0, 30.0]}
    assert four["ensemble_minus_strongest"] == [2.0, 1.5, 2.5]
    assert four["wins"] == {"dgba_apgd": 3, "total_apgd": 4} and four["images"] == 8
    assert four["criterion"] == "relative"


def test_markdown_rows(sweep):
    text = summary_markdown(robustness_summary(_results(sweep)))
    assert "## synth_nyuv2 AS resnet34 x0.25, seed 0" in text
    assert "Clean: Segm miou 0.46; Norm angle_mean 12.50 (8 test images); images ranked by ensemble_criterion=relative" in text
    assert ("| 4 | 30.00 [28.00, 32.00] | 31.00 [29.00, 33.00] | 29.00 [27.00, 31.00] | total_apgd "
            "| 28.00 [26.00, 30.00] | 2.00 [1.50, 2.50] |") in text
    assert text.index("| 1 | 10.00") < text.index("| 4 | 30.00")


def test_write_files_and_two_models(sweep, tmp_path):
    other = tmp_path / "other_model"
    _write(other, "eps1", _record(other / "eps1", 1, [5.0, 4.0, 6.0], {"dgba_apgd": [4.0, 3.0, 5.0]}, label="IND"))
    md, js, png = write_robustness([sweep, other / "eps1" / "record.json"])
    assert md.parent == sweep / "robustness"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(js.read_text())
    assert data == robustness_summary(_results(sweep, other))
    assert [e["model"] for e in data] == ["synth_nyuv2 AS resnet34 x0.25, seed 0",
                                          "synth_nyuv2 IND resnet34 x0.25, seed 0"]
    assert "IND" in md.read_text()


def test_results_table_gives_the_same_summary(sweep, tmp_path):
    """The summary reads a results table as the report does, with the same answer."""
    table = write_table(gather(find_records([sweep])), tmp_path / "results.csv")
    assert robustness_summary(load_results([table])) == robustness_summary(_results(sweep))


def test_errors(sweep, tmp_path):
    with pytest.raises(ValueError, match="attack=ensemble eps=1,2,4,8,16"):
        robustness_summary(_results(sweep / "other"))
    elsewhere = tmp_path / "elsewhere"
    copy = json.loads((sweep / "eps4" / "record.json").read_text())
    copy["job"]["dir"] = str(elsewhere / "eps4")
    _write(elsewhere, "eps4", copy)
    with pytest.raises(ValueError, match=r"eps4 and .*elsewhere/eps4"):
        robustness_summary(_results(sweep, elsewhere))


def test_cli(sweep, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["robustness", str(sweep), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| 1 | 10.00 [9.00, 11.00]" in printed and str(out / "robustness.png") in printed
    assert (out / "robustness.json").is_file()
    assert main(["robustness", str(tmp_path / "missing")]) == 2
    assert main(["robustness", str(sweep / "other")]) == 2
    assert "no finished ensemble records" in capsys.readouterr().err

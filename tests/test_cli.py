"""The mtl-attack command: data and layout subcommands, and one-line errors."""
import json

import pytest

from helpers import REPO, run_cli, tiny
from mtl_attack.cli import main
from mtl_attack.models.build import layout_size
from mtl_attack.models.layout import layout_by_index
from mtl_attack.models.tree import TreeMTLModel, param_counts
from mtl_attack.data.registry import config_tasks


def test_data_makes_and_inspects_the_default_dataset(tmp_path):
    grid = tmp_path / "grid.png"
    proc = run_cli(["-m", "mtl_attack.cli", "data", *tiny(cache_dir=tmp_path / "c"), "--grid", str(grid), "--quiet"],
                   REPO)
    assert proc.returncode == 0, proc.stderr
    assert "train: 12 images, image (3, 16, 16)" in proc.stdout
    assert "test: 6 images" in proc.stdout
    assert "segment_semantic: (16, 16) int64" in proc.stdout
    assert grid.stat().st_size > 1000


def test_missing_real_root_is_one_line(tmp_path, capsys):
    assert main(["data", "dataset=nyuv2", f"dataset.root={tmp_path / 'nope'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nope" in err and "dataset.root" in err


def test_bad_override_is_one_line(capsys):
    assert main(["data", "attack.optimizer=nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "apgd" in err


def test_layout_json_known_answer(capsys):
    assert main(["layout", "--dataset", "nyuv2", "--backbone", "resnet34", "--index", "9", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["layout"] == "[[{1}, {0, 2}], [{1}, {0, 2}], [{1}, {2}, {0}], [{1}, {2}, {0}], [{1}, {2}, {0}]]"
    assert out["params_paper_M"] == 63.6
    assert (out["backbone"], out["width"], out["head_width"]) == ("resnet34", 1.0, 1024)


@pytest.mark.parametrize("backbone,index", [("resnet34", 9), ("mobilenetv2", 23)])
def test_torch_count_equals_a_built_model(backbone, index):
    tasks = config_tasks("nyuv2")
    layout = layout_by_index(3, index)
    model = TreeMTLModel(backbone, layout, [t.name for t in tasks], [t.channels for t in tasks], head_width=8)
    size = layout_size(layout, backbone, [t.channels for t in tasks], 8)
    assert size["params_torch"] == param_counts(model)["torch"]
    assert size["params_paper"] == param_counts(model)["backbone_paper"]


def test_layout_prints_the_width_and_its_size(capsys):
    """The miniature's #Params: ResNet34 at width 0.25 has 1/16 of the conv weights (BN counts 1/4)."""
    assert main(["layout", "--dataset", "nyuv2", "--index", "0", "--width", "0.25", "--head-width", "64"]) == 0
    out = capsys.readouterr().out
    assert "resnet34 width 0.25" in out and "1.33M" in out
    assert main(["layout", "--dataset", "nyuv2", "--index", "0", "--json", "--width", "0.25"]) == 0
    assert json.loads(capsys.readouterr().out)["width"] == 0.25


def test_layout_lists_all(capsys):
    assert main(["layout", "--dataset", "nyuv2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("51 layouts")
    assert out[2].split()[0] == "0" and out[2].split()[1] == "21.28"


def test_check_default_measures_the_job_against_the_targets(tmp_path):
    """On a tiny job: every target is a row with the record's value; the cached run reuses the model."""
    from helpers import tiny
    from mtl_attack.check_default import TARGETS, Target, check_default, format_check

    assert Target("x", ("a",), 5.0).met(5.0) and not Target("x", ("a",), 5.0, at_least=False).met(5.1)
    result = check_default(tiny(), log=lambda msg: None)
    rows = {label: (target, value, ok) for label, target, value, ok in result["rows"]}
    assert len(rows) == 2 + len(TARGETS)
    assert rows["overall ARP (DGBA-APGD, eps 4)"][1] == result["record"]["arp"]["overall"]
    assert rows["segmentation mIoU (clean, %)"][:2] == (
        ">= 35", result["record"]["metrics"]["clean"]["segment_semantic"]["miou"])
    assert result["record"]["model"]["source"] == "trained"  # the cold run trains; the cached one loads
    text = format_check(result)
    assert "target(s) missed" in text and "95% interval" in text
    assert main(["check-default", "dataset.input_size=0", "--quiet"]) == 2  # a failing job: one line, exit 2

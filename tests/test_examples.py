"""The examples/ models, attacked end to end through the runner (tiny sizes)."""
import importlib.util

import pytest

from helpers import REPO, run_cli, tiny
from mtl_attack import records

pytestmark = pytest.mark.skipif(importlib.util.find_spec("timm") is None,
                                reason="timm is not installed: pip install -e '.[examples]'")

OBJECTIVES = ["single", "total", "signtotal", "wgd", "dgba", "weightedtotal"]


def test_the_timm_example_trains_and_every_objective_attacks_it(tmp_path):
    args = ["run.py", "-m", "+experiment=timm_hps", *tiny(cache_dir=tmp_path / "cache"),
            "model.args.decoder_width=8", "calibration_images=4", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    proc = run_cli(args, REPO)
    assert proc.returncode == 0, proc.stderr
    recs = [records.read_record(p) for p in (tmp_path / "sweep").rglob(records.RECORD_NAME)]
    assert len(recs) == 8 and all(r["status"] == "done" for r in recs), [r["error"] for r in recs]
    assert sorted({r["attack"]["objective"] for r in recs}) == sorted(OBJECTIVES)
    model = recs[0]["model"]
    assert (model["kind"], model["class"], model["label"]) == ("custom", "examples.timm_hps.TimmHardSharing",
                                                               "timm-resnet18-HPS")
    assert recs[0]["config"]["dataset"]["name"] == "synth_nyuv2_mtan"
    # One training for eight attacks; the MTAN tasks (13 classes, depth without deltas).
    assert sorted(r["model"]["source"] for r in recs).count("trained") == 1
    assert set(recs[0]["metrics"]["clean"]["depth_zbuffer"]) == {"abs_err", "rel_err"}
    assert all(r["arp"]["overall"] == r["arp"]["overall"] for r in recs)  # finite, not NaN

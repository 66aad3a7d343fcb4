"""Beyond clean models: adversarial training, black-box transfer, transferability (paper Secs. 4.3, 5, E.3)."""
import math

import numpy as np
import pandas as pd
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch.utils.data import Subset, default_collate

from helpers import tiny
from mtl_attack import atomic, floats, parts, pipeline, records, report
from mtl_attack.models.build import resolve_surrogate
from mtl_attack.attacks import build_attack
from mtl_attack.config import compose
from mtl_attack.data.datasets import build_dataset
from mtl_attack.batches import attack_inputs
from mtl_attack.evaluation import evaluate
from mtl_attack.models.build import build_model
from mtl_attack.models.layout import all_shared, independent, layout_by_index
from mtl_attack.scores import arp, transferability
from mtl_attack.data.registry import selected_tasks
from mtl_attack.training import adversarial_settings, checkpoint_path, model_key, train_model

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def setup(tiny_cfg, tiny_parts):
    return tiny_cfg, tiny_parts.train, tiny_parts.test, tiny_parts.tasks, tiny_parts.root


def _model(cfg, tasks, layout):
    return build_model("resnet34", layout, tasks, cfg.backbone.head_width, cfg.seed, Path(cfg.cache_dir))


# ---------------------------------------------------------------- adversarial training: config and cache key

def test_a_clean_key_holds_the_whole_train_config_and_no_adversarial_entry(setup):
    cfg = setup[0]
    layout = all_shared(3)
    key = model_key(cfg, layout)
    # Every training setting but the thread count (resolved into key["env"]), no adversarial entry.
    train = OmegaConf.to_container(cfg.train, resolve=True, enum_to_str=True)
    del train["adversarial"]
    del train["threads"]
    assert key["env"] == {"device": "cpu", "threads": 1, **floats.key_entry()}
    assert key["train"] == train and "adversarial" not in key
    trained = compose(tiny("train.adversarial.attack=dgba_pgd", cache_dir=cfg.cache_dir))
    adv_key = model_key(trained, layout)
    assert adv_key["adversarial"] == {"attack": "dgba_pgd", "eps": 8.0, "steps": 10, "clean_step": True, "fat": False}
    assert {k: v for k, v in adv_key.items() if k != "adversarial"} == key
    paths = {checkpoint_path(Path("/c"), model_key(compose(tiny(*o, cache_dir=cfg.cache_dir)), layout))
             for o in [[], ["train.adversarial.attack=dgba_pgd"], ["train.adversarial.attack=total_pgd"],
                       ["train.adversarial.attack=dgba_pgd", "train.adversarial.eps=4"],
                       ["train.adversarial.attack=dgba_pgd", "train.adversarial.fat=true"]]}
    assert len(paths) == 5  # every training attack setting is its own cached model
    # FGSM takes one step whatever `steps` says, so it does not split the cache.
    fgsm = [model_key(compose(tiny("train.adversarial.attack=dgba_fgsm", f"train.adversarial.steps={s}",
                                   cache_dir=cfg.cache_dir)), layout) for s in (3, 10)]
    assert fgsm[0] == fgsm[1]


@pytest.mark.parametrize("override, message", [
    ("train.adversarial.attack=dgba_pdg", r"not an attack preset; choose one of .*dgba_pgd"),
    ("train.adversarial.attack=weightedtotal_pgd", "weightedtotal needs grid-searched weights"),
    ("train.adversarial.eps=0", "train.adversarial.eps=0 trains on clean images"),
    ("train.adversarial.eps=300", "train.adversarial.eps=300.0: the L-infinity budget is in pixel units out of 255"),
    ("train.adversarial.fat=true", "early-stops PGD; use a \\*_pgd attack"),
])
def test_bad_adversarial_settings_stop_with_the_fix(override, message):
    attack = [] if "attack=" in override else ["train.adversarial.attack=dgba_fgsm"]
    with pytest.raises(ValueError, match=message):
        adversarial_settings(compose(tiny(*attack, override)).train)


def test_single_x_training_attack_needs_a_task_of_the_dataset(setup):
    cfg, train, _, tasks, _ = setup
    bad = compose(tiny("train.adversarial.attack=single_keypoints2d_fgsm", cache_dir=cfg.cache_dir))
    with pytest.raises(ValueError, match="keypoints2d, which is not a task here"):
        train_model(_model(cfg, tasks, all_shared(3)), train, tasks, bad.train, CPU, seed=0, progress=False)


# ---------------------------------------------------------------- adversarial training: effect

def test_adversarial_training_changes_the_model_and_lowers_the_training_attack_arp(setup):
    """Same seed, data, init and steps: the adversarially trained model loses less ARP to its training attack.

    Measured on the 4 images both models fit: a tiny model's ARP on unseen images is noise
    (its predictions are near the trivial ones), while on fitted images Total-FGSM at eps 64
    costs the clean model 16-32% and the adversarially trained one 2-14%, at most 0.7 times
    as much (seeds 0-3; seed 0: 17.2 vs 1.8).
    """
    cfg, train, _, tasks, root = setup
    fitted = Subset(build_dataset("nyuv2", root, "train", selected_tasks(cfg), cfg.dataset.input_size,
                                   augment=False), range(4))
    attack = build_attack("fgsm", "total", eps=64 / 255)
    models, arps, infos = {}, {}, {}
    for adv in (None, "total_fgsm"):
        over = ["train.iterations=60", "train.batch_size=4", "train.adversarial.eps=64"]
        c = compose(tiny(*over, *([f"train.adversarial.attack={adv}"] if adv else []), cache_dir=cfg.cache_dir))
        models[adv] = _model(c, tasks, all_shared(3))
        infos[adv] = train_model(models[adv], fitted, tasks, c.train, CPU, seed=0, progress=False)
        res = evaluate(models[adv], fitted, tasks, CPU, batch_size=4, attack=attack, progress=False)
        arps[adv] = arp(res["clean"], res["attacked"], tasks)[0]
    assert infos["total_fgsm"]["adversarial"]["attack"] == "total_fgsm" and "adversarial" not in infos[None]
    assert infos["total_fgsm"]["adversarial"]["mean_attack_steps"] == 1.0
    assert any(not torch.equal(a, b) for a, b in zip(models[None].state_dict().values(),
                                                    models["total_fgsm"].state_dict().values()))
    assert arps[None] > 5.0  # the attack hurts the clean-trained model ...
    assert arps["total_fgsm"] < 0.75 * arps[None]  # ... and less the adversarially trained one


def test_pipeline_adversarially_trains_caches_and_records(setup, tmp_path):
    cfg = compose(tiny("train.adversarial.attack=dgba_fgsm", "attack=total_fgsm", "logger=none",
                       cache_dir=setup[0].cache_dir))
    sources = []
    for _ in range(2):  # trains, then loads
        record = pipeline.execute(cfg, CPU, progress=False).record_fields
        sources.append(record["model"]["source"])
    assert sources == ["trained", "cache"]
    assert record["model"]["train_attack"] == "dgba_fgsm" and record["model"]["train_attack_eps"] == 8.0
    assert record["model"]["path"] == str(checkpoint_path(Path(cfg.cache_dir), model_key(cfg, all_shared(3))))
    assert record["model"]["path"] != str(checkpoint_path(Path(cfg.cache_dir), model_key(setup[0], all_shared(3))))
    assert records.flatten(record)["train_attack"] == "dgba_fgsm" and record["threat"] == "white-box"


# ---------------------------------------------------------------- black-box transfer

def test_black_box_crafts_on_the_surrogate_and_never_differentiates_the_target(setup):
    cfg, _, test, tasks, _ = setup
    target, surrogate = _model(cfg, tasks, all_shared(3)), _model(cfg, tasks, independent(3))
    grad_calls = []
    target.register_forward_pre_hook(lambda m, args: grad_calls.append(torch.is_grad_enabled()))
    for p in target.parameters():
        p.register_hook(lambda g: pytest.fail("a gradient reached the target's parameters"))
    surrogate_calls = []
    surrogate.register_forward_pre_hook(lambda m, args: surrogate_calls.append(torch.is_grad_enabled()))
    attack = build_attack("pgd", "dgba", eps=8 / 255, steps=2)
    result = evaluate(target, test, tasks, CPU, batch_size=len(test), attack=attack,
                      progress=False, craft_on=surrogate)
    assert grad_calls and not any(grad_calls)  # clean and attacked passes only, all without autograd
    assert any(surrogate_calls)  # the attack queried the surrogate's gradients
    assert all(p.grad is None for p in target.parameters())
    # Independent computation: craft on the surrogate, then measure the target on those images.
    batch = default_collate([test[i] for i in range(len(test))])
    x_adv = attack(surrogate, batch["image"], *attack_inputs(batch, tasks))
    with torch.no_grad():
        out = target(x_adv)
    for t in tasks:
        meter = t.meter()
        meter.update(out[t.name], batch["targets"][t.name], batch["masks"][t.name])
        assert meter.compute() == pytest.approx(result["attacked"][t.name])


def test_pipeline_black_box_record_and_target_forward_only(setup, tmp_path, monkeypatch):
    cfg = compose(tiny("transfer.surrogate=independent", "logger=none", cache_dir=setup[0].cache_dir))
    built = []
    calls: list[tuple[int, bool, bool]] = []  # (model number, training mode, grad enabled)

    def spy(*args, **kwargs):
        model = build_model(*args, **kwargs)
        number = len(built)
        built.append(model)
        model.register_forward_pre_hook(lambda m, a: calls.append((number, m.training, torch.is_grad_enabled())))
        return model

    monkeypatch.setattr(parts, "build_model", spy)
    record = pipeline.execute(cfg, CPU, progress=False).record_fields
    assert record["threat"] == "black-box" and record["surrogate"]["label"] == "IND"
    assert record["model"]["label"] == "AS" and record["model"]["shared_blocks"] == 5
    row = records.flatten(record)
    assert (row["threat"], row["surrogate"], row["shared_blocks"], row["train_attack"]) == ("black-box", "IND", 5, None)
    # Model 0 is the target: outside training (train mode) it never runs with autograd on.
    assert not [c for c in calls if c[0] == 0 and not c[1] and c[2]]
    assert [c for c in calls if c[0] == 1 and not c[1] and c[2]]  # the attack ran on the surrogate
    # A surrogate naming the target itself is the white-box attack: no second model.
    same = compose(tiny("transfer.surrogate=AS", cache_dir=setup[0].cache_dir))
    model, entry = pipeline._surrogate(same, parts.prepare(same, CPU, progress=False, with_model=False), progress=False)
    assert model is None and entry["label"] == "AS" and "white-box" in entry["source"]


@pytest.mark.parametrize("text, expected", [
    ("all_shared", all_shared(3)), ("AS", all_shared(3)), ("independent", independent(3)),
    ("41", layout_by_index(3, 41)), ("#41", layout_by_index(3, 41)),
    ("[[{0,1,2}],[{0,1,2}],[{0,1,2}],[{0},{1},{2}],[{0},{1},{2}]]", layout_by_index(3, 41)),
])
def test_surrogate_names(text, expected):
    assert resolve_surrogate(text, 3) == expected


def test_bad_surrogate_name():
    with pytest.raises(ValueError, match="give all_shared, independent, a layout index"):
        resolve_surrogate("shared", 3)


# ---------------------------------------------------------------- transferability and the study tables

def test_transferability_on_hand_made_arps():
    per_task = {"segment_semantic": 50.0, "normal": 10.0, "depth_zbuffer": 30.0}
    assert transferability(per_task, "segment_semantic") == pytest.approx((10 + 30) / 2 / 50)
    assert transferability(per_task, "normal") == pytest.approx((50 + 30) / 2 / 10)
    with pytest.raises(ValueError, match="cannot divide"):
        transferability({**per_task, "normal": 0.0}, "normal")


METRICS = {  # (clean value of the w/o AT model, higher is better)
    "segment_semantic": {"miou": (40.0, True), "pixel_acc": (80.0, True)},
    "normal": {"angle_mean": (20.0, False), "angle_median": (15.0, False), "within_11_25": (30.0, True),
               "within_22_5": (60.0, True), "within_30": (70.0, True)},
    "depth_zbuffer": {"abs_err": (0.5, False), "rel_err": (0.2, False), "delta_1": (80.0, True),
                      "delta_2": (90.0, True), "delta_3": (95.0, True)},
}
LAYOUTS = {"AS": all_shared(3), "IND": independent(3), "#41": layout_by_index(3, 41), "#9": layout_by_index(3, 9)}
PARAMS = {"AS": 21.28, "IND": 63.83, "#41": 61.13, "#9": 63.6}


def _clean_metrics(drop: float) -> dict:
    """Every metric `drop` (a fraction) worse than the w/o AT model's."""
    return {t: {m: v * (1 - drop if hi else 1 + drop) for m, (v, hi) in ms.items()} for t, ms in METRICS.items()}


def _record(model, attack, arp, per_task=(0, 0, 0), eps=8.0, train_attack=None, clean_drop=0.0,
            surrogate=None):
    opt = attack.rsplit("_", 1)[1]
    obj = attack[: -len(opt) - 1]
    job = f"{model},{attack},{train_attack},{surrogate},{eps}"
    return {
        "status": "done", "job": {"name": job, "dir": f"/sweep/{job}"},
        "config": {"dataset": {"name": "synth_nyuv2"}, "backbone": {"name": "resnet34"}, "eps": eps, "seed": 0},
        "model": {"label": model, "layout": str(LAYOUTS[model]), "params_paper_M": PARAMS[model],
                  "train_attack": train_attack},
        "attack": {"name": attack, "optimizer": opt, "objective": "single" if obj.startswith("single_") else obj,
                   "target_task": obj[len("single_"):] if obj.startswith("single_") else None, "eps": eps},
        "metrics": {"clean": _clean_metrics(clean_drop), "attacked": _clean_metrics(0.5)},
        "arp": {"overall": arp, "per_task": dict(zip(METRICS, map(float, per_task)))},
        "threat": "black-box" if surrogate else "white-box",
        "surrogate": {"label": surrogate} if surrogate else None,
    }


@pytest.fixture
def studies(tmp_path):
    recs = [
        # Tables 3/17: AS trained clean, with Total and with DGBA, attacked by two attacks
        _record("AS", "total_pgd", 60.0), _record("AS", "dgba_pgd", 80.0),
        _record("AS", "total_pgd", 15.0, train_attack="total_pgd", clean_drop=0.2),
        _record("AS", "dgba_pgd", 17.0, train_attack="total_pgd", clean_drop=0.2),
        _record("AS", "total_pgd", 14.0, train_attack="dgba_pgd", clean_drop=0.1),
        _record("AS", "dgba_pgd", 16.0, train_attack="dgba_pgd", clean_drop=0.1),
        # Table 6: crafted on AS, applied to IND and #41; AS's own white-box row at eps 4
        _record("IND", "dgba_pgd", 25.0, eps=4, surrogate="AS"),
        _record("#41", "dgba_pgd", 43.0, eps=4, surrogate="AS"),
        _record("IND", "total_pgd", 26.0, eps=4, surrogate="AS"), _record("AS", "dgba_pgd", 70.0, eps=4),
        # Table 7: Single-x per-task ARPs (segm, norm, dept) on 5, 3 and 0 shared blocks (IND and #9)
        _record("AS", "single_segment_semantic_apgd", 0, (50, 20, 30), eps=4),
        _record("#41", "single_segment_semantic_apgd", 0, (40, 8, 12), eps=4),
        _record("IND", "single_segment_semantic_apgd", 0, (40, 2, 6), eps=4),
        _record("#9", "single_segment_semantic_apgd", 0, (20, 4, 2), eps=4),
        _record("AS", "single_normal_apgd", 0, (10, 40, 30), eps=4),
        _record("IND", "single_normal_apgd", 0, (1, 40, 3), eps=4),
        _record("#41", "single_normal_apgd", 0, (5, -1, 3), eps=4),  # missed its own task: left out
    ]
    for i, rec in enumerate(recs):
        atomic.write_json(tmp_path / "sweep" / str(i) / records.RECORD_NAME, rec)
    return report.load_results([tmp_path / "sweep"])


def test_flatten_has_the_study_columns(studies):
    row = studies[studies["job"] == "#41,dgba_pgd,None,AS,4"].iloc[0]
    assert (row["threat"], row["surrogate"], row["shared_blocks"]) == ("black-box", "AS", 3)
    assert studies["train_attack"].dropna().unique().tolist() == ["total_pgd", "dgba_pgd"]


def test_adversarial_accuracy_table_shape_and_drops(studies):
    table = report.adversarial_accuracy_table(studies)
    assert list(table.index) == ["w/o AT", "PGD Total", "PGD DGBA"]
    assert table.at["w/o AT", "Segm miou"] == pytest.approx(40.0)
    assert table.at["PGD Total", "Dept abs_err"] == pytest.approx(0.6)
    # every metric 20% (Total) or 10% (DGBA) worse: ARP-style drops of 20 and 10 per task
    assert table.loc["PGD Total", ["ARP Segm", "ARP Norm", "ARP Dept", "ARP"]].tolist() == pytest.approx([20] * 4)
    assert table.at["PGD DGBA", "ARP"] == pytest.approx(10.0) and table.at["w/o AT", "ARP"] == pytest.approx(0.0)


def test_adversarial_arp_table_rows_are_training_attacks(studies):
    table = report.adversarial_arp_table(studies, eps=8)
    assert list(table.index) == ["w/o AT", "PGD Total", "PGD DGBA"]
    assert list(table.columns) == [("pgd", "total"), ("pgd", "dgba")]
    assert table.loc["PGD Total"].tolist() == [15.0, 17.0] and table.loc["w/o AT"].tolist() == [60.0, 80.0]
    # the Table-1 view keeps adversarially trained models apart from the clean one
    models = report.arp_table(studies, eps=8).index.tolist()
    assert set(models) == {"AS", "AS [AT dgba_pgd]", "AS [AT total_pgd]"}


def test_transfer_table_has_the_white_box_row_last(studies):
    table = report.transfer_table(studies, eps=4)
    assert list(table.index) == ["BB IND", "BB #41", "WB AS"]  # most parameters first, white-box last
    assert table.loc["BB #41", ("pgd", "dgba")] == 43.0 and table.loc["WB AS", ("pgd", "dgba")] == 70.0
    assert table.loc["BB IND", ("pgd", "total")] == 26.0 and table.attrs["surrogate"] == "AS"
    with pytest.raises(ValueError, match="no black-box results"):
        report.transfer_table(studies[studies["threat"] == "white-box"], eps=4)


def test_transferability_table_per_sharing_level(studies):
    long = report.transferability_table(studies, eps=4)
    got = {(r.attacked_task, r.shared_blocks): r.transferability for r in long.itertuples()}
    assert got[("segment_semantic", 5)] == pytest.approx(0.5)
    assert got[("segment_semantic", 3)] == pytest.approx(0.25)
    assert got[("segment_semantic", 0)] == pytest.approx((0.1 + 0.15) / 2)  # IND and #9 averaged
    assert got[("normal", 5)] == pytest.approx(0.5) and got[("normal", 0)] == pytest.approx(0.05)
    assert ("normal", 3) not in got
    assert long["shared_blocks"].tolist()[:2] == [5, 5]  # most sharing first


def test_transferability_trend_is_the_rank_correlation_with_sharing(studies):
    trend = report.transferability_trend(report.transferability_table(studies, eps=4))
    got = {r.attacked_task: (r.spearman, r.levels) for r in trend.itertuples()}
    # Single-Segm: 0.5 (5 blocks), 0.25 (3), 0.125 (0): rises with sharing throughout
    assert got["segment_semantic"] == (pytest.approx(1.0), 3)
    rho, levels = got["normal"]  # two levels only (#41 left out): no correlation
    assert levels == 2 and math.isnan(rho)
    assert trend["attacked_task"].tolist() == ["segment_semantic", "normal"]


def test_write_report_draws_the_studies(studies, tmp_path):
    from PIL import Image

    out = tmp_path / "rep"
    names = {p.name for p in report.write_report(studies, out)}
    assert {"table_adv_accuracy.md", "table_adv_arp_eps8.md", "table_adv_arp_eps8.png", "table_transfer_AS_eps4.md",
            "table_transfer_AS_eps4.png", "transferability.png", "transferability.csv", "report.md"} <= names
    for png in ("transferability.png", "table_adv_arp_eps8.png", "table_transfer_AS_eps4.png"):
        with Image.open(out / png) as im:
            assert im.format == "PNG" and im.width > 300
    md = (out / "report.md").read_text()
    assert "paper Table 6" in md and "paper Table 7" in md and "Tables 17/18" in md
    assert "![Black-box transfer from AS, eps 4](table_transfer_AS_eps4.png)" in md
    assert "![ARP on adversarially trained AS, eps 8](table_adv_arp_eps8.png)" in md
    # DGBA is the best in every row of the adversarial-training table, but these results carry no
    # per-image statistics: no first place is counted, and the legend says why.
    assert "First places: none." in md and "a trailing ?: the highest, but without per-image statistics" in md
    assert "(Spearman; +1: rises with sharing throughout, -1: falls): APGD Single-Segm 1.00, APGD Single-Norm -." in md


def test_study_bars_draw_one_bar_per_cell(studies):
    """The bar heights are the table's cells: one panel per optimizer, rows on x, NaN cells empty."""
    table = report.transfer_table(studies, eps=4)  # BB IND, BB #41, WB AS x PGD (Total, DGBA)
    fig = report.plots.bar_figure(table.T, list(table.index), "ARP (%)")
    (ax,) = [a for a in fig.axes if a.get_title() == "PGD"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["BB IND", "BB #41", "WB AS"]
    heights = [b.get_height() for b in ax.patches]  # Total's bars, then DGBA's, in row order
    assert heights[0] == 26.0 and math.isnan(heights[1]) and math.isnan(heights[2])  # Total: IND only
    assert heights[3:] == [25.0, 43.0, 70.0]


def _own_record(train_attack, seg, depth, directions, dataset="mine"):
    """A user's dataset outside the dataset table: tasks "seg" (mIoU) and "depth_fine" (abs_err)."""
    job = f"{dataset},{train_attack}"
    rec = {
        "status": "done", "job": {"name": job, "dir": f"/sweep/{job}"},
        "config": {"dataset": {"name": dataset}, "backbone": {"name": "mine"}, "eps": 8.0, "seed": 0},
        "model": {"label": "AS", "train_attack": train_attack},
        "attack": {"name": "total_pgd", "optimizer": "pgd", "objective": "total", "eps": 8.0},
        "metrics": {"clean": {"seg": {"miou": seg}, "depth_fine": {"abs_err": depth}}},
        "arp": {"overall": 10.0, "per_task": {"seg": 10.0, "depth_fine": 10.0}},
    }
    if directions is not None:
        rec["directions"] = directions
    return rec


def test_metric_directions_come_from_the_records(tmp_path):
    """Directions are read from the record (higher_<task>_<metric>), not guessed: a task "depth_fine"
    whose abs_err is lower-better, beside a "seg" task; the table round-trips through CSV."""
    directions = {"seg": {"miou": True}, "depth_fine": {"abs_err": False}}
    for i, (train, seg, depth) in enumerate([(None, 40.0, 0.5), ("total_pgd", 30.0, 0.6)]):
        atomic.write_json(tmp_path / "s" / str(i) / records.RECORD_NAME, _own_record(train, seg, depth, directions))
    rows = report.load_results([tmp_path / "s"])
    assert rows["higher_seg_miou"].tolist() == [True, True] and rows["higher_depth_fine_abs_err"].tolist() == [False] * 2
    table = records.write_table(rows, tmp_path / "results.csv")
    for source in (rows, report.load_results([table])):
        assert report.metric_directions(source) == directions
        acc = report.adversarial_accuracy_table(source)
        # seg: 40 -> 30 is a 25% drop; depth: 0.5 -> 0.6 (lower is better) a 20% drop
        assert acc.loc["PGD Total", ["ARP seg", "ARP depth_fine", "ARP"]].tolist() == pytest.approx([25, 20, 22.5])


def test_metric_directions_of_old_tables(studies, tmp_path):
    """Tables without higher_ columns fall back to the dataset table of their dataset config; a
    dataset the table does not know stops with a one-line error naming the fix."""
    assert not any(c.startswith("higher_") for c in studies.columns)
    assert report.metric_directions(studies) == {t: {m: hi for m, (_, hi) in ms.items()} for t, ms in METRICS.items()}
    for i, train in enumerate([None, "total_pgd"]):
        atomic.write_json(tmp_path / "s" / str(i) / records.RECORD_NAME, _own_record(train, 40.0, 0.5, None))
    with pytest.raises(ValueError, match=r"no higher_<task>_<metric> columns and unknown dataset 'mine'.*re-gather"):
        report.adversarial_accuracy_table(report.load_results([tmp_path / "s"]))


def test_studies_are_declared_once_and_skipped_without_rows(studies, tmp_path):
    """Each study is one declaration; a setting without a study's rows has no case of it."""
    assert [s.name for s in report.STUDIES] == ["adversarial training", "black-box transfer", "transferability",
                                                "attacks on clean models", "worst-case ensemble", "harder attack losses"]
    clean = studies[(studies["threat"] == "white-box") & studies["train_attack"].isna()]
    names = {p.name for p in report.write_report(clean[clean["eps"] == 8.0], tmp_path / "r")}
    assert names == {"table_arp_eps8.md", "table_arp_eps8.csv", "per_task_arp_eps8.csv", "per_task_arp_eps8.png",
                     "results.csv", "report.md"}


def test_one_markdown_renderer_for_every_table():
    """Numbers to two decimals, text as it is, NaN and None as "-", bold marks, chosen headers."""
    table = pd.DataFrame({"a": [1.234, np.nan], "b": ["x:y", None]}, index=pd.Index(["r|1", "r2"], name="row"))
    marks = pd.DataFrame({"a": [True, False], "b": [False, False]}, index=table.index)
    assert report.to_markdown(table, marks, headers=["A", "B"]) == (
        "| row | A | B |\n|---|---:|---:|\n| r\\|1 | **1.23** | x:y |\n| r2 | - | - |\n")
    table.attrs["params_paper_M"] = {"r2": 21.28}
    assert report.to_markdown(table).splitlines()[3] == "| r2 | 21.28 | - | - |"
    assert "#Params" not in report.to_markdown(table, params={})

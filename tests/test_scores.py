"""Known-answer tests for mtl_attack.scores (ARP, paper Eq. 10)."""

import math
import warnings

import pytest

from mtl_attack.scores import arp, relative_drop, transferability
from mtl_attack.data.registry import config_tasks

DIRS = {
    "segment_semantic": {"miou": True, "pixel_acc": True},
    "depth_zbuffer": {"abs_err": False, "delta_1": True},
}
CLEAN = {
    "segment_semantic": {"miou": 40.0, "pixel_acc": 60.0},
    "depth_zbuffer": {"abs_err": 0.5, "delta_1": 80.0},
}
ATTACKED = {
    "segment_semantic": {"miou": 30.0, "pixel_acc": 54.0},
    "depth_zbuffer": {"abs_err": 0.6, "delta_1": 60.0},
}


def test_zero_when_attacked_equals_clean():
    overall, per_task = arp(CLEAN, CLEAN, DIRS)
    assert overall == 0.0
    assert per_task == {"segment_semantic": 0.0, "depth_zbuffer": 0.0}


def test_hand_computed_two_tasks():
    overall, per_task = arp(CLEAN, ATTACKED, DIRS)
    # seg: (10/40 + 6/60) / 2 = 0.175; depth: (0.1/0.5 + 20/80) / 2 = 0.225
    assert per_task["segment_semantic"] == pytest.approx(17.5)
    assert per_task["depth_zbuffer"] == pytest.approx(22.5)
    assert overall == pytest.approx(20.0)
    assert list(per_task) == list(DIRS)


def test_sign_convention():
    assert relative_drop(40.0, 30.0, True) > 0  # lower mIoU = loss
    assert relative_drop(0.5, 0.6, False) > 0  # higher error = loss
    overall, _ = arp(ATTACKED, CLEAN, DIRS)  # "attack" that improves everything
    assert overall < 0


def test_accepts_task_objects():
    tasks = config_tasks("nyuv2")
    clean = {t.name: {k: 10.0 for k in t.metrics} for t in tasks}
    worse = {t.name: {k: (5.0 if hib else 20.0) for k, hib in t.metrics.items()} for t in tasks}
    overall, per_task = arp(clean, worse, tasks)
    # every higher-better metric halves (+50%), every lower-better doubles (+100%)
    assert per_task["segment_semantic"] == pytest.approx(50.0)
    assert per_task["normal"] == pytest.approx((100 + 100 + 50 * 3) / 5)
    assert per_task["depth_zbuffer"] == pytest.approx(70.0)
    assert overall == pytest.approx((50 + 70 + 70) / 3)


def test_zero_clean_rule():
    dirs = {"t": {"a": False, "b": False}}
    # clean 0 and attacked 0: contributes 0 and counts in K
    _, per = arp({"t": {"a": 0.0, "b": 2.0}}, {"t": {"a": 0.0, "b": 3.0}}, dirs)
    assert per["t"] == pytest.approx(25.0)
    # clean 0, attacked not: left out of the mean, with a warning naming it
    with pytest.warns(UserWarning, match="t/a"):
        _, per = arp({"t": {"a": 0.0, "b": 2.0}}, {"t": {"a": 1.0, "b": 3.0}}, dirs)
    assert per["t"] == pytest.approx(50.0)


def test_task_without_usable_metric():
    dirs = {"x": {"a": False}, "y": {"b": True}}
    with pytest.warns(UserWarning):
        overall, per = arp({"x": {"a": 0.0}, "y": {"b": 4.0}}, {"x": {"a": 1.0}, "y": {"b": 3.0}}, dirs)
    assert math.isnan(per["x"])
    assert overall == pytest.approx(25.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="ARP undefined"):
            arp({"x": {"a": 0.0}}, {"x": {"a": 1.0}}, {"x": {"a": False}})


def test_missing_metric_names_task_and_metric():
    attacked = {"segment_semantic": {"miou": 30.0}, "depth_zbuffer": ATTACKED["depth_zbuffer"]}
    with pytest.raises(ValueError, match="'pixel_acc' of task 'segment_semantic'") as e:
        arp(CLEAN, attacked, DIRS)
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="depth_zbuffer"):
        arp({"segment_semantic": CLEAN["segment_semantic"]}, ATTACKED, DIRS)
    with pytest.raises(ValueError, match="finite"):
        arp(CLEAN, {**ATTACKED, "depth_zbuffer": {"abs_err": float("nan"), "delta_1": 1.0}}, DIRS)


def test_transferability():
    assert transferability({"a": 10.0, "b": 4.0, "c": 6.0}, "a") == pytest.approx(0.5)
    with pytest.raises(ValueError, match="cannot divide"):
        transferability({"a": 0.0, "b": 1.0}, "a")


def test_spearman_known_answers():
    from mtl_attack.scores import spearman

    assert spearman([0, 1, 2, 3], [0.1, 0.2, 0.5, 0.9]) == pytest.approx(1.0)  # rises throughout
    assert spearman([0, 1, 2, 3], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # Hand-computed: ranks y = 1, 3, 2, 4 -> 1 - 6 * (0 + 1 + 1 + 0) / (4 * 15) = 0.8
    assert spearman([0, 1, 2, 3], [0.1, 0.5, 0.3, 0.9]) == pytest.approx(0.8)
    # Ties share their mean rank: y ranks 1.5, 1.5, 3 against 1, 2, 3 -> sqrt(3)/2
    assert spearman([1, 2, 3], [5, 5, 7]) == pytest.approx(math.sqrt(3) / 2)
    assert math.isnan(spearman([1, 2], [1, 2])) and math.isnan(spearman([1, 2, 3], [1, 1, 1]))
    with pytest.raises(ValueError, match="paired"):
        spearman([1, 2, 3], [1, 2])


def test_below_trivial_flags_metrics_not_strictly_better_in_their_direction():
    from mtl_attack.scores import below_trivial

    directions = {"seg": {"mIoU": True, "pixel_acc": True}, "depth": {"abs_err": False}}
    clean = {"seg": {"mIoU": 30.0, "pixel_acc": 50.0}, "depth": {"abs_err": 0.9}}
    trivial = {"seg": {"mIoU": 1.4, "pixel_acc": 50.0}, "depth": {"abs_err": 0.8}}
    # An equal pixel accuracy is no better; a larger error is worse.
    assert below_trivial(clean, trivial, directions) == {"seg": ["pixel_acc"], "depth": ["abs_err"]}
    assert below_trivial(clean, clean | {"depth": {"abs_err": 1.0}}, directions)["depth"] == []

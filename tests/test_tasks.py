"""Known-answer tests for mtl_attack.tasks: losses, meters, task specs."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mtl_attack import tasks as T
from mtl_attack.data.registry import config_task_specs, config_tasks
from mtl_attack.tasks import (
    SCORERS,
    DepthErrorMeter,
    DepthMeter,
    LossMeter,
    NormalMeter,
    SegmentationMeter,
    confusion_matrix,
    l1_loss,
    normal_loss,
    resize_nearest,
    segmentation_loss,
    segmentation_scores,
    summed_stats,
    upsample_prediction,
)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _unit_normals(b, h, w, g):
    v = torch.randn(b, 3, h, w, generator=g)
    return v / v.norm(dim=1, keepdim=True)


def _one_hot_logits(labels, classes, scale=30.0):
    return F.one_hot(labels, classes).permute(0, 3, 1, 2).float() * scale


# ----------------------------------------------------------------------------- task specs


def test_nyuv2_tasks_order_channels_metrics():
    tasks = config_tasks("nyuv2")
    assert [t.name for t in tasks] == ["segment_semantic", "normal", "depth_zbuffer"]
    assert [t.channels for t in tasks] == [40, 3, 1]
    assert list(tasks[0].metrics.items()) == [("miou", True), ("pixel_acc", True)]
    assert list(tasks[1].metrics.items()) == [
        ("angle_mean", False), ("angle_median", False),
        ("within_11_25", True), ("within_22_5", True), ("within_30", True),
    ]
    assert list(tasks[2].metrics.items()) == [
        ("abs_err", False), ("rel_err", False), ("delta_1", True), ("delta_2", True), ("delta_3", True),
    ]


def test_taskonomy_tasks_use_loss_as_metric():
    tasks = config_tasks("taskonomy")
    assert [t.name for t in tasks] == [
        "segment_semantic", "normal", "depth_zbuffer", "keypoints2d", "edge_texture",
    ]
    assert [t.channels for t in tasks] == [17, 3, 1, 1, 1]
    assert all(dict(t.metrics) == {"loss": False} for t in tasks)


def test_unknown_kind_is_one_line_error():
    with pytest.raises(ValueError, match="unknown dataset 'nyuv3'") as e:
        config_tasks("nyuv3")
    assert "nyuv2" in str(e.value) and "taskonomy" in str(e.value)  # names the valid options
    assert "\n" not in str(e.value)


def test_meter_keys_match_declared_metrics():
    g = _gen(1)
    seg = torch.randint(0, 40, (2, 4, 4), generator=g)
    targets = {
        "segment_semantic": seg,
        "normal": _unit_normals(2, 4, 4, g),
        "depth_zbuffer": torch.rand(2, 1, 4, 4, generator=g) + 0.5,
    }
    for t in config_tasks("nyuv2"):
        m = t.meter()
        m.update(torch.randn(2, t.channels, 2, 2, generator=g), targets[t.name], None)
        assert list(m.compute()) == list(t.metrics)


def test_nyuv2_mtan_tasks_follow_libmtl():
    """LibMTL examples/nyu/main.py: 13 classes; mIoU, pixAcc; abs_err, rel_err; mean, median, <11.25, <22.5, <30."""
    tasks = config_tasks("nyuv2_mtan")
    assert [t.name for t in tasks] == ["segment_semantic", "normal", "depth_zbuffer"]
    assert [t.channels for t in tasks] == [13, 3, 1]
    assert list(tasks[0].metrics.items()) == [("miou", True), ("pixel_acc", True)]
    assert list(tasks[1].metrics.items()) == list(config_tasks("nyuv2")[1].metrics.items())
    assert list(tasks[2].metrics.items()) == [("abs_err", False), ("rel_err", False)]
    assert tasks[2].meter().kind == "depth_err" and SCORERS["depth_err"] is DepthErrorMeter.score


def test_nyuv2_mtan_meter_keys_match_declared_metrics():
    g = _gen(4)
    targets = {
        "segment_semantic": torch.randint(0, 13, (2, 4, 4), generator=g),
        "normal": _unit_normals(2, 4, 4, g),
        "depth_zbuffer": torch.rand(2, 1, 4, 4, generator=g) + 0.5,
    }
    for t in config_tasks("nyuv2_mtan"):
        m = t.meter()
        m.update(torch.randn(2, t.channels, 2, 2, generator=g), targets[t.name], None)
        assert list(m.compute()) == list(t.metrics)
        # one source: the split's metrics are the per-image statistics' score, to the last digit
        assert SCORERS[m.kind](summed_stats(m.image_stats())) == m.compute()


def test_nyuv2_mtan_losses_match_libmtl_formulas():
    """Per sample, LibMTL's NYUv2 losses (examples/nyu/utils.py) written out by hand on one image:
    cross-entropy ignoring -1 (here 255), L1 over depth != 0, 1 - mean cos over non-zero normals."""
    g = _gen(5)
    seg, normal, depth = config_tasks("nyuv2_mtan")
    logits = torch.randn(1, 13, 3, 4, generator=g)
    labels = torch.randint(0, 13, (1, 3, 4), generator=g)
    labels[0, 0, :2] = 255  # stored -1
    valid = labels != 255
    logp = logits.log_softmax(1).gather(1, labels.clamp_max(12)[:, None])[:, 0]
    assert seg.loss(logits, labels, valid).item() == pytest.approx(-logp[valid].mean().item(), rel=1e-6)
    pred = torch.rand(1, 1, 3, 4, generator=g) * 3
    gt = torch.rand(1, 1, 3, 4, generator=g) + 0.5
    gt[0, 0, 1, 1:3] = 0.0  # invalid depth
    dmask = gt[:, 0] != 0
    want = (pred - gt).abs()[:, 0][dmask].mean()
    assert depth.loss(pred, gt, dmask).item() == pytest.approx(want.item(), rel=1e-6)
    npred = torch.randn(1, 3, 3, 4, generator=g)
    ngt = _unit_normals(1, 3, 4, g)
    ngt[0, :, 2, 0] = 0.0  # invalid normal
    nmask = ngt.abs().sum(1) != 0
    cos = (npred / npred.norm(dim=1, keepdim=True) * ngt).sum(1)
    assert normal.loss(npred, ngt, nmask).item() == pytest.approx(1 - cos[nmask].mean().item(), rel=1e-6)


def test_depth_error_meter_hand_computed():
    gt = torch.tensor([[[[1.0, 2.0], [4.0, 0.5]]]])
    pred = torch.tensor([[[[1.1, 2.0], [3.0, 1.0]]]])
    m = DepthErrorMeter()
    m.update(pred, gt, torch.tensor([[[True, True], [True, False]]]))
    # valid |p-g| = .1, 0, 1; rel .1, 0, .25
    assert m.compute() == pytest.approx({"abs_err": 1.1 / 3, "rel_err": 0.35 / 3})


def test_metrics_mapping_is_read_only():
    t = config_tasks("nyuv2")[0]
    with pytest.raises(TypeError):
        t.metrics["miou"] = False


# ----------------------------------------------------------------------------- perfect predictions


def test_perfect_segmentation():
    g = _gen(2)
    gt = torch.randint(0, 40, (2, 6, 5), generator=g)
    logits = _one_hot_logits(gt, 40)
    task = config_tasks("nyuv2")[0]
    m = task.meter()
    m.update(logits, gt, None)
    out = m.compute()
    assert out["miou"] == pytest.approx(100.0)
    assert out["pixel_acc"] == pytest.approx(100.0)
    loss = task.loss(logits, gt, None)
    assert loss.shape == (2,)
    assert float(loss.max()) < 1e-6


def test_perfect_normals():
    g = _gen(3)
    gt = _unit_normals(2, 5, 4, g)
    pred = gt * 3.7  # scale must not matter
    m = NormalMeter()
    m.update(pred, gt, None)
    out = m.compute()
    assert out["angle_mean"] == pytest.approx(0.0, abs=1e-3)
    assert out["angle_median"] == pytest.approx(0.0, abs=0.05)  # the 0.1-degree bins' centre
    for k in ("within_11_25", "within_22_5", "within_30"):
        assert out[k] == pytest.approx(100.0)
    assert torch.allclose(normal_loss(pred, gt, None), torch.zeros(2), atol=1e-6)


def test_perfect_depth():
    g = _gen(4)
    gt = torch.rand(2, 1, 3, 3, generator=g) + 0.1
    m = DepthMeter()
    m.update(gt.clone(), gt, None)
    out = m.compute()
    assert out == pytest.approx({"abs_err": 0.0, "rel_err": 0.0, "delta_1": 100.0, "delta_2": 100.0, "delta_3": 100.0})
    assert torch.equal(l1_loss(gt.clone(), gt, None), torch.zeros(2))


# ----------------------------------------------------------------------------- normals: known rotation


def test_normals_rotated_by_30_degrees():
    g = _gen(5)
    b, h, w = 2, 7, 6
    v = _unit_normals(b, h, w, g)
    u = torch.randn(b, 3, h, w, generator=g)
    u = u - (u * v).sum(1, keepdim=True) * v  # Gram-Schmidt: u ⟂ v
    u = u / u.norm(dim=1, keepdim=True)
    a = math.radians(30.0)
    pred = (math.cos(a) * v + math.sin(a) * u) * 2.5  # v rotated by 30 deg about v x u, rescaled
    m = NormalMeter()
    m.update(pred, v, None)
    out = m.compute()
    assert out["angle_mean"] == pytest.approx(30.0, abs=0.01)
    assert out["angle_median"] == pytest.approx(30.0, abs=0.05 + 1e-9)  # half a 0.1-degree bin
    # thresholds are inclusive (angle <= t, with 1e-4 deg float tolerance)
    assert out["within_30"] == pytest.approx(100.0)
    assert out["within_22_5"] == pytest.approx(0.0)
    assert out["within_11_25"] == pytest.approx(0.0)
    loss = normal_loss(pred, v, None)
    assert torch.allclose(loss, torch.full((b,), 1 - math.cos(a)), atol=1e-5)


def test_normal_median_from_histogram_matches_exact_median():
    g = _gen(6)
    m = NormalMeter()
    preds, gts = [], []
    for n in (3, 2):  # odd total pixel count over two batches, then even
        p = torch.randn(n, 3, 5, 5, generator=g)
        t = _unit_normals(n, 5, 5, g)
        m.update(p, t, None)
        preds.append(p)
        gts.append(t)
    p, t = torch.cat(preds), torch.cat(gts)
    cos = F.cosine_similarity(p.double(), t.double(), dim=1).clamp(-1, 1)
    angles = torch.rad2deg(torch.acos(cos)).flatten().numpy()
    out = m.compute()
    assert out["angle_median"] == pytest.approx(float(np.median(angles)), abs=0.05)
    assert out["angle_mean"] == pytest.approx(float(angles.mean()), abs=1e-9)
    assert out["within_22_5"] == pytest.approx(float((angles <= 22.5).mean() * 100), abs=1e-9)
    # an even count averages the two middle values
    m2 = NormalMeter()
    m2.update(p[:1, :, :1, :2], t[:1, :, :1, :2], None)
    two = angles.reshape(5, 5, 5)[0, 0, :2]
    assert m2.compute()["angle_median"] == pytest.approx(float(two.mean()), abs=0.05)


# ----------------------------------------------------------------------------- segmentation: hand counts


def test_confusion_matrix_hand_computed():
    gt = torch.tensor([[[0, 0], [1, 2]]])
    pred = torch.tensor([[[0, 1], [1, 1]]])
    conf = confusion_matrix(pred, gt, torch.ones_like(gt, dtype=torch.bool), 3)
    assert conf.tolist() == [[1, 1, 0], [0, 1, 0], [0, 1, 0]]
    # IoU: class0 1/2, class1 1/3, class2 0/1
    s = segmentation_scores(conf)
    assert s["miou"] == pytest.approx(100 * (0.5 + 1 / 3 + 0) / 3)
    assert s["pixel_acc"] == pytest.approx(50.0)
    # the meter gives the same from logits, and skips ignore-label / masked pixels
    m = SegmentationMeter(3)
    gt_big = torch.tensor([[[0, 0, 255], [1, 2, 1]]])
    pred_big = torch.tensor([[[0, 1, 2], [1, 1, 0]]])
    mask = torch.tensor([[[True, True, True], [True, True, False]]])
    m.update(_one_hot_logits(pred_big, 3), gt_big, mask)
    assert T.summed_stats(m.image_stats())["conf"].tolist() == conf.tolist()


def test_miou_accumulates_one_confusion_matrix():
    m = SegmentationMeter(2)
    per_batch = []
    for gt_class in (0, 1):
        gt = torch.full((1, 2, 2), gt_class)
        pred = torch.zeros(1, 2, 2, dtype=torch.long)
        single = SegmentationMeter(2)
        single.update(_one_hot_logits(pred, 2), gt, None)
        per_batch.append(single.compute()["miou"])
        m.update(_one_hot_logits(pred, 2), gt, None)
    assert per_batch == pytest.approx([100.0, 0.0])
    # pooled conf [[4,0],[4,0]]: IoU0 = 4/8, IoU1 = 0 -> 25, not the per-batch mean 50
    assert m.compute()["miou"] == pytest.approx(25.0)
    assert m.compute()["pixel_acc"] == pytest.approx(50.0)


def test_segmentation_meter_upsamples_logits_and_accepts_label_maps():
    gt = torch.tensor([[[0, 0, 1], [1, 1, 1]]])
    const = torch.tensor([0.0, 2.0]).view(1, 2, 1, 1)  # always class 1 ("majority class")
    m = SegmentationMeter(2)
    m.update(const, gt, None)
    assert m.compute()["pixel_acc"] == pytest.approx(100 * 4 / 6)
    m2 = SegmentationMeter(2)
    m2.update(torch.ones(1, 1, 1, dtype=torch.long), gt, None)
    assert (T.summed_stats(m2.image_stats())["conf"].tolist()
            == T.summed_stats(m.image_stats())["conf"].tolist())


def test_segmentation_bad_label_is_one_line_error():
    logits = torch.zeros(1, 3, 2, 2)
    gt = torch.tensor([[[0, 7], [1, 255]]])
    with pytest.raises(ValueError, match=r"label 7 outside \[0, 3\)"):
        segmentation_loss(logits, gt)
    with pytest.raises(ValueError, match="label 7"):
        SegmentationMeter(3).update(logits, gt, None)


def test_segmentation_class_weights_match_torch_weighted_mean():
    g = _gen(7)
    logits = torch.randn(2, 4, 3, 3, generator=g)
    gt = torch.randint(0, 4, (2, 3, 3), generator=g)
    gt[0, 0, 0] = 255
    w = torch.tensor([1.0, 3.0, 0.5, 2.0])
    loss = segmentation_loss(logits, gt, None, w)
    for b in range(2):
        ref = F.cross_entropy(logits[b : b + 1], gt[b : b + 1], weight=w, ignore_index=255)
        assert loss[b] == pytest.approx(float(ref), rel=1e-5)
    tasks = T.build_tasks(config_task_specs("taskonomy"), [1.0] * 17)
    assert tasks[0].loss(torch.zeros(1, 17, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long), None).shape == (1,)
    with pytest.raises(ValueError, match="17 classes"):
        T.build_tasks(config_task_specs("taskonomy"), [1.0] * 3)


# ----------------------------------------------------------------------------- depth: hand counts


def test_depth_metrics_hand_computed():
    gt = torch.tensor([[[[1.0, 2.0], [4.0, 0.5]]]])
    pred = torch.tensor([[[[1.1, 2.0], [3.0, 1.0]]]])
    m = DepthMeter()
    m.update(pred, gt, None)
    out = m.compute()
    # |p-g| = .1, 0, 1, .5; ratios 1.1, 1, 4/3, 2
    assert out["abs_err"] == pytest.approx(0.4)
    assert out["rel_err"] == pytest.approx((0.1 + 0 + 0.25 + 1.0) / 4)
    assert out["delta_1"] == pytest.approx(50.0)
    assert out["delta_2"] == pytest.approx(75.0)
    assert out["delta_3"] == pytest.approx(75.0)
    assert l1_loss(pred, gt, None).tolist() == pytest.approx([0.4])


def test_depth_nonpositive_prediction_is_never_within():
    gt = torch.tensor([[[[1.0, 1.0]]]])
    pred = torch.tensor([[[[-1.0, 0.0]]]])
    m = DepthMeter()
    m.update(pred, gt, None)
    out = m.compute()
    assert out["delta_3"] == 0.0
    assert out["abs_err"] == pytest.approx(1.5)
    assert out["rel_err"] == pytest.approx(1.5)


def test_depth_zero_ground_truth_at_valid_pixel_is_error():
    gt = torch.tensor([[[[0.0, 1.0]]]])
    with pytest.raises(ValueError, match="mask=False"):
        DepthMeter().update(gt + 1, gt, None)
    m = DepthMeter()  # masked out: fine
    m.update(gt + 1, gt, torch.tensor([[[False, True]]]))
    assert m.compute()["abs_err"] == pytest.approx(1.0)


def test_meters_accept_constant_predictors():
    gt = torch.tensor([[[[1.0, 2.0], [4.0, 1.0]]]])
    m = DepthMeter()
    m.update(torch.full((1, 1, 1, 1), 2.0), gt, None)  # "mean depth" predictor
    assert m.compute()["abs_err"] == pytest.approx((1 + 0 + 2 + 1) / 4)
    n = NormalMeter()
    up = torch.zeros(1, 3, 2, 2)
    up[:, 2] = 1.0
    n.update(torch.tensor([0.0, 0.0, 1.0]).view(1, 3, 1, 1), up, None)  # "mean normal"
    assert n.compute()["angle_mean"] == pytest.approx(0.0, abs=1e-3)


# ----------------------------------------------------------------------------- invalid pixels


def test_invalid_pixels_change_nothing():
    g = _gen(8)
    b, h, w = 2, 5, 4
    mask = torch.rand(b, h, w, generator=g) > 0.4
    inv = ~mask
    seg_gt = torch.randint(0, 40, (b, h, w), generator=g)
    nrm_gt = _unit_normals(b, h, w, g)
    dep_gt = torch.rand(b, 1, h, w, generator=g) + 0.2
    preds = {
        "segment_semantic": torch.randn(b, 40, h, w, generator=g),
        "normal": torch.randn(b, 3, h, w, generator=g),
        "depth_zbuffer": torch.rand(b, 1, h, w, generator=g) + 0.2,
    }
    targets = {"segment_semantic": seg_gt, "normal": nrm_gt, "depth_zbuffer": dep_gt}

    def garbage_pred(p):
        return torch.where(inv.unsqueeze(1), torch.randn(p.shape, generator=g) * 1e3, p)

    bad_targets = {
        "segment_semantic": torch.where(inv, torch.randint(0, 1000, (b, h, w), generator=g), seg_gt),
        "normal": torch.where(inv.unsqueeze(1), torch.full_like(nrm_gt, float("nan")), nrm_gt),
        "depth_zbuffer": torch.where(inv.unsqueeze(1), torch.full_like(dep_gt, -5.0), dep_gt),
    }
    for t in config_tasks("nyuv2"):
        p, bp = preds[t.name], garbage_pred(preds[t.name])
        assert torch.allclose(t.loss(p, targets[t.name], mask), t.loss(bp, bad_targets[t.name], mask), atol=1e-6)
        m1, m2 = t.meter(), t.meter()
        m1.update(p, targets[t.name], mask)
        m2.update(bp, bad_targets[t.name], mask)
        assert m1.compute() == pytest.approx(m2.compute(), abs=1e-9)
        # gradient through garbage is finite and zero at invalid pixels
        bp = bp.requires_grad_(True)
        t.loss(bp, bad_targets[t.name], mask).sum().backward()
        assert torch.isfinite(bp.grad).all()
        assert bp.grad.abs().sum(1)[inv].max() == 0


# ----------------------------------------------------------------------------- per-sample, resizing, gradients


def test_per_sample_losses_are_independent():
    g = _gen(9)
    for t in config_tasks("taskonomy"):
        pred = torch.randn(3, t.channels, 4, 4, generator=g)
        if t.name == "segment_semantic":
            tgt = torch.randint(0, t.channels, (3, 4, 4), generator=g)
        else:
            tgt = torch.randn(3, t.channels, 4, 4, generator=g)
        mask = torch.rand(3, 4, 4, generator=g) > 0.3
        full = t.loss(pred, tgt, mask)
        assert full.shape == (3,)
        for i in range(3):
            alone = t.loss(pred[i : i + 1], tgt[i : i + 1], mask[i : i + 1])
            assert float(alone[0]) == pytest.approx(float(full[i]), rel=1e-6)
        changed = pred.clone()
        changed[1] += torch.randn(changed[1].shape, generator=g)  # (a constant shift is softmax-invariant)
        after = t.loss(changed, tgt, mask)
        assert after[0] == full[0] and after[2] == full[2] and after[1] != full[1]


def test_target_resized_nearest_to_smaller_prediction():
    tgt = torch.arange(16.0).view(1, 1, 4, 4)
    assert torch.equal(resize_nearest(tgt, (2, 2)), tgt[..., 1::2, 1::2])  # the 2x2 cells' centres
    labels = torch.arange(16).view(1, 4, 4)
    assert torch.equal(resize_nearest(labels, (2, 2)), labels[..., 1::2, 1::2])
    mask = torch.zeros(1, 4, 4, dtype=torch.bool)
    mask[0, 1::2, 1::2] = True  # only the centres: kept whole, and nothing else is read
    assert resize_nearest(mask, (2, 2)).all() and not resize_nearest(~mask, (2, 2)).any()
    # L1 at the prediction's 2x2 resolution uses target[1::2, 1::2] = 5, 7, 13, 15
    assert l1_loss(torch.zeros(1, 1, 2, 2), tgt, None).item() == pytest.approx(10.0)
    # masked: only (1,1) -> 5 and (1,3) -> 7 stay valid at 2x2
    m = torch.zeros(1, 4, 4, dtype=torch.bool)
    m[0, 1, 1] = m[0, 1, 3] = True
    assert l1_loss(torch.zeros(1, 1, 2, 2), tgt, m).item() == pytest.approx(6.0)


def test_loss_targets_sit_where_the_metric_upsampling_puts_each_cell():
    """64 -> 9 (the miniature): the loss reads input pixels 3, 10, 17, 24, 32, 39, 46, 53, 60, each
    within half a pixel of the centre (i + 0.5) * 64/9 - 0.5 that bilinear upsampling gives cell i."""
    picked = resize_nearest(torch.arange(64.0).view(1, 1, 1, 64).expand(1, 1, 64, 64), (9, 9))[0, 0, 0]
    assert picked.tolist() == [3, 10, 17, 24, 32, 39, 46, 53, 60]
    centres = (torch.arange(9.0) + 0.5) * 64 / 9 - 0.5
    assert ((picked - centres).abs() <= 0.5).all()
    # Upsampling a 9-cell ramp by the meters' rule returns each cell's value at its picked pixel.
    ramp = torch.arange(9.0).view(1, 1, 1, 9).expand(1, 1, 9, 9)
    up = upsample_prediction(ramp, (64, 64))[0, 0, 0]
    assert ((up[picked.long()] - torch.arange(9.0)).abs() <= 0.5 * 9 / 64 + 1e-6).all()


def test_gradients_finite_for_zero_predictions_and_empty_masks():
    g = _gen(10)
    for t in config_tasks("taskonomy"):
        pred = torch.zeros(2, t.channels, 3, 3, requires_grad=True)
        if t.name == "segment_semantic":
            tgt = torch.randint(0, t.channels, (2, 3, 3), generator=g)
        elif t.name == "normal":
            tgt = _unit_normals(2, 3, 3, g)
        else:
            tgt = torch.zeros(2, 1, 3, 3)  # pred == target: |x| at its kink
        mask = torch.ones(2, 3, 3, dtype=torch.bool)
        mask[1] = False  # sample 1 has no valid pixel
        loss = t.loss(pred, tgt, mask)
        assert torch.isfinite(loss).all() and loss[1] == 0
        loss.sum().backward()
        assert torch.isfinite(pred.grad).all()
    assert normal_loss(torch.zeros(1, 3, 2, 2), _unit_normals(1, 2, 2, g)).item() == pytest.approx(1.0)


def test_loss_meter_is_mean_of_per_sample_losses_at_the_truths_resolution():
    g = _gen(11)
    t = config_tasks("taskonomy")[2]
    m = t.meter()
    values = []
    for n in (2, 1):
        p = torch.randn(n, 1, 3, 3, generator=g)
        y = torch.randn(n, 1, 6, 6, generator=g)
        m.update(p, y, None)
        # scored as every metric: the prediction upsampled (bilinear) to the 6x6 ground truth
        values += t.loss(T.upsample_prediction(p, (6, 6)), y, None).tolist()
    assert isinstance(m, LossMeter)
    assert m.compute()["loss"] == pytest.approx(sum(values) / 3)


def test_shape_errors_are_one_line():
    t = config_tasks("nyuv2")[1]
    with pytest.raises(ValueError, match="expected 3"):
        t.loss(torch.zeros(1, 2, 2, 2), torch.zeros(1, 3, 2, 2), None)
    with pytest.raises(ValueError, match="mask must be"):
        t.loss(torch.zeros(1, 3, 2, 2), torch.zeros(1, 3, 2, 2), torch.ones(1, 3, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="no valid pixels"):
        NormalMeter().compute()

"""Harder attack losses pinned with hand-computed values, and their use inside an attack."""
from __future__ import annotations

import math

import pytest
import torch

from mtl_attack.attacks import build_attack
from mtl_attack.attacks.dense_losses import (DEPTH_CAP, NORMAL_CAP, attack_loss, clipped_depth_loss,
                                             clipped_normal_loss, jsd_loss, segpgd_loss)
from mtl_attack.batches import TaskLoss
from mtl_attack.tasks import depth_task, normal_task, segmentation_loss, segmentation_task


def two_by_two():
    """2 classes on a 2x2 image: logits (2, 0) predict class 0 with p = e^2 / (e^2 + 1).

    Labels: pixels 0, 1 are class 0 (correct), pixels 2, 3 class 1 (wrong)."""
    logits = torch.zeros(1, 2, 2, 2)
    logits[0, 0] = 2.0
    labels = torch.tensor([[[0, 0], [1, 1]]])
    return logits, labels


CE_RIGHT = math.log(1 + math.exp(-2))  # -log(e^2 / (e^2 + 1))
CE_WRONG = math.log(1 + math.exp(2))   # -log(1 / (e^2 + 1))


def test_segpgd_equals_the_hand_value_on_a_2x2_example():
    logits, labels = two_by_two()
    # progress 0: lam = 0, only the two correct pixels count, divided by the 4 valid pixels.
    assert segpgd_loss(logits, labels).item() == pytest.approx(2 * CE_RIGHT / 4, rel=1e-6)
    # progress 0.5 (step t = T/2 + 1): lam = 1/4.
    want = (0.75 * 2 * CE_RIGHT + 0.25 * 2 * CE_WRONG) / 4
    assert segpgd_loss(logits, labels, progress=0.5).item() == pytest.approx(want, rel=1e-6)
    # lam = 1/2 weighs every pixel alike: half the plain cross-entropy.
    half = 0.5 * segmentation_loss(logits, labels).item()
    assert segpgd_loss(logits, labels, progress=1.0).item() == pytest.approx(half, rel=1e-6)


def test_segpgd_ignores_masked_and_255_pixels():
    logits, labels = two_by_two()
    labels[0, 1, 1] = 255
    mask = torch.ones(1, 2, 2, dtype=torch.bool)
    mask[0, 0, 0] = False
    # Valid: pixel (0,1) correct and (1,0) wrong; lam = 1/4 at progress 0.5.
    want = (0.75 * CE_RIGHT + 0.25 * CE_WRONG) / 2
    assert segpgd_loss(logits, labels, mask, progress=0.5).item() == pytest.approx(want, rel=1e-6)
    assert segpgd_loss(logits, labels, torch.zeros_like(mask)).item() == 0.0


def test_jsd_hand_values():
    p = math.exp(2) / (math.exp(2) + 1)

    def js(q_true):  # JS between (q_true, 1 - q_true) and the one-hot of the first class
        m = [(q_true + 1) / 2, (1 - q_true) / 2]
        kl_p = sum(a * math.log(a / b) for a, b in zip([q_true, 1 - q_true], m) if a > 0)
        return 0.5 * (kl_p - math.log(m[0]))

    logits, labels = two_by_two()
    want = (2 * js(p) + 2 * js(1 - p)) / 4
    assert jsd_loss(logits, labels).item() == pytest.approx(want, rel=1e-6)
    # A certain, correct prediction: 0; a certain, wrong one: log 2.
    sure = torch.tensor([[[[60.0]], [[-60.0]]]])
    assert jsd_loss(sure, torch.tensor([[[0]]])).item() == pytest.approx(0.0, abs=1e-6)
    assert jsd_loss(sure, torch.tensor([[[1]]])).item() == pytest.approx(math.log(2), rel=1e-6)
    x = sure.clone().requires_grad_(True)
    jsd_loss(x, torch.tensor([[[1]]])).backward()
    assert torch.isfinite(x.grad).all()


def _normals(angles_deg):
    """Predictions at the given angles from the target (0, 0, 1), one pixel each ``[1,3,1,n]``."""
    a = torch.tensor([math.radians(d) for d in angles_deg])
    pred = torch.stack([torch.sin(a), torch.zeros_like(a), torch.cos(a)]).reshape(1, 3, 1, -1)
    target = torch.tensor([0.0, 0.0, 1.0]).reshape(1, 3, 1, 1).expand(1, 3, 1, len(angles_deg)).clone()
    return pred, target


def test_clipped_normal_caps_each_pixel_at_30_degrees():
    pred, target = _normals([10, 20])
    assert clipped_normal_loss(pred, target).item() == pytest.approx(
        normal_task().loss(pred, target, None).item(), rel=1e-6)
    pred, target = _normals([10, 90])
    want = ((1 - math.cos(math.radians(10))) + NORMAL_CAP) / 2
    assert clipped_normal_loss(pred, target).item() == pytest.approx(want, rel=1e-5)
    x = pred.clone().requires_grad_(True)
    clipped_normal_loss(x, target).backward()
    assert x.grad[..., 1].abs().max().item() == 0.0  # beyond the cap: no gradient
    assert x.grad[..., 0].abs().max().item() > 0.0


def test_clipped_depth_hand_value():
    pred = torch.tensor([2.2, 10.0, 5.0, 1.0]).reshape(1, 1, 1, 4)
    target = torch.tensor([2.0, 2.0, 0.0, 4.0]).reshape(1, 1, 1, 4)  # target 0: invalid
    # relative errors 0.1, 4 (capped at 1.25^3 - 1), 0.75
    want = (0.1 + DEPTH_CAP + 0.75) / 3
    assert clipped_depth_loss(pred, target).item() == pytest.approx(want, rel=1e-6)
    assert DEPTH_CAP == pytest.approx(0.953125)


def test_attack_loss_dispatch_and_errors():
    logits, labels = two_by_two()
    assert attack_loss("segmentation", "ce")(logits, labels).item() == pytest.approx(
        segmentation_loss(logits, labels).item())
    assert attack_loss("depth", "clipped") is clipped_depth_loss
    assert attack_loss("normal", "clipped") is clipped_normal_loss
    with pytest.raises(ValueError, match="choose from ce, segpgd, jsd"):
        attack_loss("segmentation", "dice")
    with pytest.raises(ValueError, match="not 'loss'"):
        attack_loss("loss", "clipped")
    # A task scored by its own loss keeps it under every choice.
    seg_scored_by_loss = TaskLoss(segmentation_task(2, loss_metric=True))
    assert seg_scored_by_loss.harder("segpgd") is seg_scored_by_loss
    weighted = TaskLoss(segmentation_task(2, class_weights=[1.0, 3.0]))
    # lam = 1/2 with class weights: half the weighted cross-entropy.
    hard = weighted.harder("segpgd")
    assert hard(logits, (labels, None), progress=1.0).item() == pytest.approx(
        0.5 * weighted(logits, (labels, None)).item(), rel=1e-6)


class Seg(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 3, 1)
        self.depth = torch.nn.Conv2d(3, 1, 1)

    def forward(self, x):
        return {"segment_semantic": self.conv(x), "depth_zbuffer": self.depth(x).abs() + 0.5}


def test_attack_maximises_the_chosen_loss_and_records_it():
    torch.manual_seed(0)
    model = Seg()
    x = torch.rand(2, 3, 4, 4)
    tasks = [segmentation_task(3), depth_task()]
    targets = {"segment_semantic": (torch.randint(0, 3, (2, 4, 4)), torch.ones(2, 4, 4, dtype=torch.bool)),
               "depth_zbuffer": (torch.rand(2, 1, 4, 4) + 0.5, torch.ones(2, 4, 4, dtype=torch.bool))}
    losses = {t.name: TaskLoss(t) for t in tasks}
    plain = build_attack("pgd", "total", eps=8 / 255, steps=3)
    hard = build_attack("pgd", "total", eps=8 / 255, steps=3, seg_loss="jsd", regression_loss="clipped")
    assert [hard.loss_name(k) for k in ("segmentation", "depth", "loss")] == ["jsd", "clipped", "plain"]
    swapped = hard.maximised_losses(losses)
    assert swapped["depth_zbuffer"].fn is clipped_depth_loss and swapped["segment_semantic"].fn is jsd_loss
    assert plain.maximised_losses(losses) == losses
    a, b = plain(model, x, targets, losses), hard(model, x, targets, losses)
    assert (a - x).abs().max() <= 8 / 255 + 1e-7 and (b - x).abs().max() <= 8 / 255 + 1e-7
    assert not torch.equal(a, b)  # a different loss, a different direction
    assert "seg_loss=jsd" in repr(hard)

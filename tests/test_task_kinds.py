"""Task kinds as data: each kind's options, loss, metrics, trivial predictor, mirror, fill and resize."""
import math

import pytest
import torch

from mtl_attack import tasks as T


def test_each_kind_builds_its_channels_and_metrics_from_its_options():
    seg = T.build_task("sem", {"kind": "segmentation", "classes": 7})
    assert (seg.kind, seg.channels, dict(seg.metrics)) == ("segmentation", 7, {"miou": True, "pixel_acc": True})
    normal = T.build_task("n", {"kind": "normal"})
    assert normal.channels == 3 and list(normal.metrics) == ["angle_mean", "angle_median", "within_11_25",
                                                             "within_22_5", "within_30"]
    assert dict(T.build_task("d", {"kind": "depth", "metrics": "errors"}).metrics) == {"abs_err": False,
                                                                                        "rel_err": False}
    assert list(T.build_task("d", {"kind": "depth"}).metrics) == ["abs_err", "rel_err", "delta_1", "delta_2",
                                                                  "delta_3"]
    for spec in ({"kind": "depth", "metrics": "loss"}, {"kind": "normal", "metrics": "loss"},
                 {"kind": "segmentation", "classes": 3, "metrics": "loss"}, {"kind": "regression", "channels": 2}):
        assert dict(T.build_task("x", spec).metrics) == {"loss": False}
    assert T.build_task("edges", {"kind": "regression", "channels": 2}).channels == 2


@pytest.mark.parametrize("spec, words", [
    ({"kind": "segmentaton", "classes": 3}, "dataset.tasks.x.kind=segmentaton is not a task kind"),
    ({"kind": "segmentation"}, "dataset.tasks.x.classes=None must be a whole number of classes from 1 to 255"),
    ({"kind": "segmentation", "classes": 300}, "classes=300 must be a whole number"),
    ({"kind": "depth", "classes": 3}, "dataset.tasks.x.classes is not an option of depth tasks"),
    ({"kind": "depth", "metrics": "miou"}, "dataset.tasks.x.metrics=miou is not one of full, errors, loss"),
    ({"kind": "regression", "metrics": "full"}, "metrics=full is not one of loss"),
    ({"kind": "regression", "channels": 0}, "channels=0 must be a whole number >= 1"),
    ({"kind": "segmentation", "classes": 2, "class_weights": [1.0]}, "class_weights has 1 values"),
    ({"kind": "depth", "scale": 0}, "scale=0 must be > 0"),
])
def test_a_bad_task_spec_is_one_line_naming_its_key(spec, words):
    with pytest.raises(ValueError) as err:
        T.check_task_spec("x", spec)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_losses_of_each_kind_on_hand_computed_values():
    # L1 regression: |0 - 1| over 2 channels and every pixel -> 1; a masked-out pixel does not count.
    reg = T.build_task("r", {"kind": "regression", "channels": 2})
    target = torch.ones(1, 2, 2, 2)
    target[0, :, 0, 0] = 5.0
    mask = torch.ones(1, 2, 2, dtype=torch.bool)
    mask[0, 0, 0] = False
    assert reg.loss(torch.zeros(1, 2, 2, 2), target, mask).tolist() == [1.0]
    # Depth: the same L1 on one channel.
    depth = T.build_task("d", {"kind": "depth"})
    assert depth.loss(torch.full((1, 1, 2, 2), 2.0), torch.full((1, 1, 2, 2), 3.5)).tolist() == [1.5]
    # Segmentation: uniform logits over 4 classes -> cross-entropy log 4.
    seg = T.build_task("s", {"kind": "segmentation", "classes": 4})
    assert seg.loss(torch.zeros(1, 4, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long)).item() == pytest.approx(math.log(4))
    # Normals: opposite vectors -> 1 - cos = 2.
    normal = T.build_task("n", {"kind": "normal"})
    up = torch.zeros(1, 3, 1, 1)
    up[0, 1] = 1.0
    assert normal.loss(up, -up).item() == pytest.approx(2.0)


def test_trivial_predictors_of_each_kind():
    seg = T.TASK_KINDS["segmentation"].trivial(torch.tensor([2, 0, 2, 1, 2]), 3)
    assert seg.tolist() == [-10.0, -10.0, 10.0]
    normal = T.TASK_KINDS["normal"].trivial(torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]), 3)
    assert normal.tolist() == pytest.approx([math.sqrt(0.5), math.sqrt(0.5), 0.0])
    depth = T.TASK_KINDS["depth"].trivial(torch.tensor([[1.0], [2.0], [6.0]]), 1)
    assert depth.tolist() == [3.0]


def test_mirror_fill_and_resize_of_each_kind():
    normal = torch.tensor([[[0.5, 0.25]], [[0.0, 0.0]], [[0.75, 0.5]]])  # [3, 1, 2]: x, y, z (exact in float)
    flipped = T.TASK_KINDS["normal"].mirror(normal, {})
    assert flipped[0].tolist() == [[-0.25, -0.5]] and flipped[2].tolist() == [[0.5, 0.75]]
    kept = T.TASK_KINDS["normal"].mirror(normal, {"negate_x_on_flip": False})
    assert kept[0].tolist() == [[0.25, 0.5]]
    assert normal[0].tolist() == [[0.5, 0.25]]  # mirroring copies
    seg = torch.tensor([[0, 1, 2]])
    assert T.TASK_KINDS["segmentation"].mirror(seg, {}).tolist() == [[2, 1, 0]]
    assert (T.TASK_KINDS["segmentation"].fill, T.TASK_KINDS["depth"].fill, T.TASK_KINDS["regression"].fill) == (255, 0, 0)
    # Nearest by exact integer floor: 4 -> 3 reads sources 0, 1, 2 (floor(i * 4 / 3)).
    assert T.TASK_KINDS["depth"].resize(torch.tensor([[[1.0, 2.0, 3.0, 4.0]]]), (1, 3)).tolist() == [[[1.0, 2.0, 3.0]]]


def test_stored_class_weights_serve_a_task_that_asks_for_them():
    task = T.build_task("s", {"kind": "segmentation", "classes": 2, "class_weights": "stored"},
                        stored_class_weights=[1.0, 3.0])
    logits = torch.tensor([[[[0.0, 0.0]], [[0.0, 0.0]]]])  # [1, 2, 1, 2], uniform
    target = torch.tensor([[[0, 1]]])
    # Uniform logits: every pixel's CE is log 2, whatever the weights.
    assert task.loss(logits, target).item() == pytest.approx(math.log(2))
    assert task.loss.class_weights.tolist() == [1.0, 3.0]


@pytest.mark.parametrize("spec", [{"kind": "regression"}, {"kind": "depth", "metrics": "loss"},
                                  {"kind": "normal", "metrics": "loss"},
                                  {"kind": "segmentation", "classes": 3, "metrics": "loss"}])
def test_a_loss_scored_task_scores_a_constant_the_same_at_any_output_size(spec):
    # Loss-scored metrics are taken at the ground truth's resolution, so a constant prediction
    # (a trivial predictor's 1x1 map, or a full-size one) scores every pixel of the target.
    task = T.build_task("t", spec)
    gen = torch.Generator().manual_seed(0)
    if task.kind == "segmentation":
        target = torch.randint(0, 3, (2, 8, 8), generator=gen)
    elif task.kind == "normal":
        target = torch.nn.functional.normalize(torch.randn(2, 3, 8, 8, generator=gen), dim=1)
    else:
        target = torch.rand(2, 1, 8, 8, generator=gen)
    const = torch.tensor([0.5, -0.25, 1.0][: task.channels] if task.channels <= 3 else [0.5] * task.channels)
    scores = []
    for size in (1, 3, 8):
        meter = task.meter()
        meter.update(const.view(1, -1, 1, 1).expand(2, -1, size, size), target)
        scores.append(meter.compute()["loss"])
    assert scores[0] == pytest.approx(scores[1]) == pytest.approx(scores[2])
    if task.kind == "regression":
        assert scores[0] == pytest.approx(float((target - 0.5).abs().mean()))

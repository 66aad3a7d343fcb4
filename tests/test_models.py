"""Backbone blocks, ASPP heads and the branched tree model (known answers, tiny sizes)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mtl_attack.models.backbones import (
    backbone_blocks,
    feature_channels,
    paper_block_params,
    torch_block_params,
)
from mtl_attack.models.heads import ASPP_RATES, ASPPHead, Dropout, build_head, centre_tap_suffices
from mtl_attack.models.layout import Layout
from mtl_attack.models.tree import (
    CAFFE_BGR_MEAN,
    InputNormalizer,
    TreeMTLModel,
    init_state,
    layout_points,
    param_counts,
)

NAMES = ["segment_semantic", "normal", "depth_zbuffer"]
CHANNELS = [40, 3, 1]
W = 8  # narrow heads keep the tests fast

AS = [[{0, 1, 2}]] * 5
IND = [[{0}, {2}, {1}]] * 5
# {1,2} share points 0-3 with task 0 branching off at point 2; everything splits at point 4.
BRANCHED = [[{0, 1, 2}], [{0, 1, 2}], [{1, 2}, {0}], [{1, 2}, {0}], [{0}, {2}, {1}]]

# SPEC "Models": the paper's per-block counts and the ordinary torch count of ResNet34.
RESNET34_PAPER = [9472, 221568, 1115264, 6819072, 13110784]
RESNET34_TORCH = 21_284_672


def conv_out(n: int, k: int, s: int, p: int, d: int = 1) -> int:
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def pool_out_ceil(n: int, k: int, s: int, p: int) -> int:
    out = math.ceil((n + 2 * p - k) / s) + 1
    if (out - 1) * s >= n + p:  # torch drops a last window that starts in the right padding
        out -= 1
    return out


def resnet34_size(n: int) -> int:
    n = conv_out(n, 7, 2, 3)  # stem conv
    n = pool_out_ceil(n, 3, 2, 1)  # stem max pool, ceil mode
    return conv_out(n, 3, 2, 1)  # layer2's stride; layer3/4 are dilated with stride 1


def mobilenetv2_size(n: int) -> int:
    for _ in range(5):  # five stride-2 3x3 convs, padding 1
        n = conv_out(n, 3, 2, 1)
    return n


def model(backbone: str, points, **kw) -> TreeMTLModel:
    return TreeMTLModel(backbone, points, NAMES, CHANNELS, head_width=W, **kw)


@pytest.fixture(scope="module")
def mnv2_state():
    return init_state("mobilenetv2", CHANNELS, W, seed=3)


@pytest.fixture(scope="module")
def resnet_as():
    return model("resnet34", AS).eval()


# ----------------------------------------------------------------------------- counts


def test_paper_block_params_resnet34_equal_spec():
    assert paper_block_params("resnet34") == RESNET34_PAPER
    assert sum(paper_block_params("resnet34")) == 21_276_160


def test_torch_count_of_one_resnet34_backbone(resnet_as):
    assert sum(torch_block_params("resnet34")) == RESNET34_TORCH
    counts = param_counts(resnet_as)
    assert counts["backbone_torch"] == RESNET34_TORCH
    assert counts["backbone_paper"] == 21_276_160


def test_param_counts_of_a_branched_model_known_answer():
    """ResNet34 with BRANCHED's sets per block (1, 1, 2, 2, 3), counted by hand from the paper's
    per-block #Params (SPEC: stem 9,472, layer1 221,568, layer2 1,115,264, layer3 6,819,072,
    layer4 13,110,784) and the heads' layers on 512 backbone channels."""
    m = model("resnet34", BRANCHED)
    counts = param_counts(m)
    assert counts["backbone_paper"] == 9472 + 221568 + 2 * 1115264 + 2 * 6819072 + 3 * 13110784 == 55_432_064
    # Per head: 4 branches of conv3x3(512->W) + conv1x1(W->W) + conv1x1(W->C), all with bias (W = 8).
    per_head = {c: 4 * (512 * 9 * 8 + 8 + 8 * 8 + 8 + 8 * c + c) for c in (40, 3, 1)}
    assert per_head == {40: 149_216, 3: 147_884, 1: 147_812}  # e.g. 4 * (36,864 + 8 + 64 + 8 + 320 + 40)
    assert counts["heads_torch"] == 149_216 + 147_884 + 147_812
    assert counts["torch"] == counts["backbone_torch"] + counts["heads_torch"]


def test_feature_channels():
    assert feature_channels("resnet34") == 512
    assert feature_channels("mobilenetv2") == 1280
    with pytest.raises(ValueError, match="unknown backbone"):
        feature_channels("vgg16")


# ----------------------------------------------------------------------------- block structure


def test_resnet34_block_structure():
    stem, l1, l2, l3, l4 = backbone_blocks("resnet34", materialize=False)
    assert stem[3].ceil_mode and stem[3].kernel_size == 3 and stem[3].stride == 2
    assert [len(layer) for layer in (l1, l2, l3, l4)] == [3, 4, 6, 3]
    for layer, dilation in ((l1, 1), (l2, 1), (l3, 2), (l4, 4)):
        for unit in layer:
            for conv in (unit.conv1, unit.conv2):
                assert conv.dilation == (dilation, dilation) and conv.padding == (dilation, dilation)
    assert l2[0].conv1.stride == (2, 2) and l3[0].conv1.stride == (1, 1) and l4[0].conv1.stride == (1, 1)
    assert isinstance(l1[0].shortcut, nn.Identity)  # 64 -> 64, stride 1: no projection
    for layer in (l2, l3, l4):
        assert isinstance(layer[0].shortcut, nn.Sequential) and isinstance(layer[1].shortcut, nn.Identity)
    blocks = nn.ModuleList(backbone_blocks("resnet34", materialize=False))
    assert all(m.bias is None for m in blocks.modules() if isinstance(m, nn.Conv2d))


def test_mobilenetv2_blocks_use_relu_and_split_per_spec():
    blocks = backbone_blocks("mobilenetv2", materialize=False)
    assert not any(isinstance(m, nn.ReLU6) for b in blocks for m in b.modules())
    assert any(isinstance(m, nn.ReLU) for m in blocks[0].modules())
    last_convs = [[m for m in b.modules() if isinstance(m, nn.Conv2d)][-1].out_channels for b in blocks]
    assert last_convs == [24, 64, 96, 320, 1280]


def test_backbone_init_is_n001_and_bn_identity():
    stem = backbone_blocks("resnet34", generator=torch.Generator().manual_seed(0))[0]
    w = stem[0].weight
    assert abs(w.mean().item()) < 1e-3 and abs(w.std().item() - 0.01) < 5e-4  # 9408 samples
    assert torch.equal(stem[1].weight, torch.ones(64)) and torch.equal(stem[1].bias, torch.zeros(64))
    assert torch.equal(stem[1].running_mean, torch.zeros(64)) and torch.equal(stem[1].running_var, torch.ones(64))


def test_head_init_is_torch_default_uniform():
    head = build_head(16, 2, width=32, generator=torch.Generator().manual_seed(0))
    conv1 = head.branches[0].conv1
    bound = 1 / math.sqrt(16 * 9)
    assert conv1.weight.abs().max().item() <= bound
    assert conv1.weight.abs().max().item() > 0.95 * bound
    assert [b.conv1.dilation[0] for b in head.branches] == list(ASPP_RATES)
    assert [b.conv1.padding[0] for b in head.branches] == list(ASPP_RATES)


def test_head_is_the_sum_of_its_branches():
    head = build_head(4, 3, width=6, generator=torch.Generator().manual_seed(1)).eval()
    x = torch.randn(2, 4, 7, 9)
    expected = sum(branch(x) for branch in head.branches)
    out = head(x)
    assert out.shape == (2, 3, 7, 9)  # feature resolution is kept
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("size", [(9, 9), (12, 5), (13, 13), (30, 41)])
def test_far_dilated_branches_equal_the_full_convolution(size):
    """The centre-tap shortcut is exact: outputs and every weight gradient equal the padded 3x3
    dilated conv's (off-centre gradients 0), whether or not a branch takes it."""
    head = build_head(5, 3, width=6, generator=torch.Generator().manual_seed(2)).eval()
    x = torch.randn(2, 5, *size)
    took = [centre_tap_suffices(b.conv1, size) for b in head.branches]
    assert took == [min(r >= n for n in size) for r in ASPP_RATES]
    got = head(x)
    expected = sum(b.conv3(torch.relu(b.conv2(torch.relu(b.conv1(x))))) for b in head.branches)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    got.square().sum().backward()
    fast = [b.conv1.weight.grad.clone() for b in head.branches]
    head.zero_grad()
    expected.square().sum().backward()
    for branch, grad, shortcut in zip(head.branches, fast, took):
        torch.testing.assert_close(grad, branch.conv1.weight.grad, rtol=1e-5, atol=1e-6)
        if shortcut:
            centre = torch.zeros_like(grad)
            centre[:, :, 1, 1] = grad[:, :, 1, 1]
            assert torch.equal(grad, centre)


def test_dropout_keeps_half_scaled_by_two_and_is_identity_in_eval():
    torch.manual_seed(0)
    drop = Dropout(0.5)
    x = torch.ones(200_000)
    y = drop(x)
    assert set(y.unique().tolist()) == {0.0, 2.0}
    assert abs((y == 2.0).float().mean().item() - 0.5) < 0.005  # Bernoulli(0.5): sd 0.0011
    assert torch.equal(drop.eval()(x), x)


# ----------------------------------------------------------------------------- shapes


def test_size_formulas_match_the_paper():
    assert resnet34_size(321) == 41
    assert resnet34_size(33) == 5
    assert mobilenetv2_size(65) == 3


def test_resnet34_forward_shapes_and_task_order(resnet_as):
    with torch.no_grad():
        out = resnet_as(torch.rand(2, 3, 33, 33))
    assert list(out) == NAMES
    for name, c in zip(NAMES, CHANNELS):
        assert out[name].shape == (2, c, resnet34_size(33), resnet34_size(33))


def test_mobilenetv2_forward_shapes(mnv2_state):
    m = model("mobilenetv2", BRANCHED, init=mnv2_state).eval()
    with torch.no_grad():
        out = m(torch.rand(2, 3, 65, 97))
    assert list(out) == NAMES
    for name, c in zip(NAMES, CHANNELS):
        assert out[name].shape == (2, c, mobilenetv2_size(65), mobilenetv2_size(97))


# ----------------------------------------------------------------------------- sharing


def test_one_module_per_task_set(mnv2_state):
    m = model("mobilenetv2", BRANCHED, init=mnv2_state)
    modules = [mod for _, _, mod in m.block_modules()]
    assert len({id(mod) for mod in modules}) == 1 + 1 + 2 + 2 + 3
    assert len({id(h) for h in m.heads.values()}) == 3


def test_each_block_runs_once_per_forward(mnv2_state):
    m = model("mobilenetv2", BRANCHED, init=mnv2_state).eval()
    calls: dict[int, int] = {}
    for mod in [mod for _, _, mod in m.block_modules()] + list(m.heads.values()):
        mod.register_forward_hook(lambda mod, i, o: calls.__setitem__(id(mod), calls.get(id(mod), 0) + 1))
    with torch.no_grad():
        m(torch.rand(1, 3, 33, 33))
    assert len(calls) == 9 + 3 and set(calls.values()) == {1}


def test_a_task_loss_reaches_only_its_own_path(mnv2_state):
    torch.manual_seed(0)
    m = model("mobilenetv2", BRANCHED, init=mnv2_state).train()
    out = m(torch.rand(2, 3, 33, 33))
    out["normal"].pow(2).mean().backward()  # task 1 alone

    def grad_abs(module: nn.Module) -> float:
        return sum(p.grad.abs().sum().item() for p in module.parameters() if p.grad is not None)

    on_path = {(0, (0, 1, 2)), (1, (0, 1, 2)), (2, (1, 2)), (3, (1, 2)), (4, (1,))}
    for b, s, mod in m.block_modules():
        if (b, s) in on_path:
            assert grad_abs(mod) > 0, (b, s)
        else:  # task 0's branch and task 2's own last block
            assert grad_abs(mod) == 0, (b, s)
    assert grad_abs(m.heads["normal"]) > 0
    assert grad_abs(m.heads["segment_semantic"]) == 0 and grad_abs(m.heads["depth_zbuffer"]) == 0


# ----------------------------------------------------------------------------- init shared across layouts


def test_load_init_puts_the_same_state_in_every_copy(mnv2_state):
    m = model("mobilenetv2", IND, init=mnv2_state)
    for b, _, mod in m.block_modules():
        for key, value in mod.state_dict().items():
            assert torch.equal(value, mnv2_state["blocks"][b][key])
    # Copies hold equal values in separate storage: training one leaves the others alone.
    first, second = list(m.blocks[0].values())[:2]
    with torch.no_grad():
        next(first.parameters()).add_(1.0)
    assert not torch.equal(next(first.parameters()), next(second.parameters()))


def test_as_and_ind_from_the_same_init_give_identical_outputs(mnv2_state):
    x = torch.rand(2, 3, 33, 33)
    outs = []
    for points in (AS, BRANCHED, IND):
        m = model("mobilenetv2", points, init=mnv2_state).eval()
        with torch.no_grad():
            outs.append(m(x))
    for other in outs[1:]:
        for name in NAMES:
            torch.testing.assert_close(other[name], outs[0][name], rtol=0, atol=0)


def test_init_state_is_deterministic_and_layout_free():
    a = init_state("mobilenetv2", CHANNELS, W, seed=5)
    b = init_state("mobilenetv2", CHANNELS, W, seed=5)
    c = init_state("mobilenetv2", CHANNELS, W, seed=6)
    d = init_state("mobilenetv2", [17, 3, 1, 1, 1], W, seed=5)  # other tasks: same backbone init
    for blk in range(5):
        for key, value in a["blocks"][blk].items():
            assert torch.equal(value, b["blocks"][blk][key]) and torch.equal(value, d["blocks"][blk][key])
    w = "branches.0.conv1.weight"
    assert torch.equal(a["heads"][1][w], b["heads"][1][w]) and not torch.equal(a["heads"][1][w], c["heads"][1][w])
    assert not torch.equal(a["blocks"][0]["0.0.weight"], c["blocks"][0]["0.0.weight"])
    assert a["heads"][0]["branches.0.conv3.weight"].shape == (40, W, 1, 1)


def test_constructor_seed_equals_explicit_init(mnv2_state):
    a = model("mobilenetv2", AS, seed=3).eval()
    b = model("mobilenetv2", AS, init=mnv2_state).eval()
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


def test_load_init_rejects_a_mismatched_state(mnv2_state):
    m = model("mobilenetv2", AS, init=mnv2_state)
    with pytest.raises(ValueError, match="init state is for"):
        m.load_init(init_state("mobilenetv2", [17, 3, 1], W, seed=0))
    with pytest.raises(ValueError, match="lacks"):
        m.load_init({"blocks": []})


# ----------------------------------------------------------------------------- input normalization


def test_caffe_bgr_normalization_known_answer():
    x = torch.zeros(1, 3, 2, 2)
    x[:, 0], x[:, 1], x[:, 2] = 1.0, 0.5, 0.0  # R, G, B
    out = InputNormalizer("caffe_bgr")(x)
    mean_b, mean_g, mean_r = CAFFE_BGR_MEAN
    torch.testing.assert_close(out[0, :, 0, 0], torch.tensor([0.0 - mean_b, 127.5 - mean_g, 255.0 - mean_r]))
    assert CAFFE_BGR_MEAN == (104.00698793, 116.66876762, 122.67891434)
    assert torch.equal(InputNormalizer("unit")(x), x)
    imagenet = InputNormalizer("imagenet")(x)[0, :, 0, 0]
    torch.testing.assert_close(imagenet, torch.tensor([(1 - 0.485) / 0.229, (0.5 - 0.456) / 0.224, -0.406 / 0.225]))
    with pytest.raises(ValueError, match="normalization"):
        InputNormalizer("none")


def test_normalizer_buffer_moves_and_stays_out_of_checkpoints(mnv2_state):
    m = model("mobilenetv2", AS, init=mnv2_state)
    assert not any(k.startswith("normalizer") for k in m.state_dict())
    m = m.to(torch.float64)
    assert m.normalizer.mean.dtype == torch.float64


# ----------------------------------------------------------------------------- determinism and inputs


def test_eval_is_deterministic_and_train_uses_dropout(mnv2_state):
    m = model("mobilenetv2", BRANCHED, init=mnv2_state).eval()
    x = torch.rand(2, 3, 33, 33)
    with torch.no_grad():
        a, b = m(x), m(x)
        for name in NAMES:
            assert torch.equal(a[name], b[name])
        m.train()
        c, d = m(x), m(x)
    assert not torch.equal(c["normal"], d["normal"])


def test_layout_object_and_raw_points_build_the_same_tree(mnv2_state):
    from_layout = model("mobilenetv2", Layout(BRANCHED, 3), init=mnv2_state)
    from_points = model("mobilenetv2", BRANCHED, init=mnv2_state)
    assert from_layout.points == from_points.points == layout_points(BRANCHED, 3)
    assert list(from_layout.state_dict()) == list(from_points.state_dict())


@pytest.mark.parametrize(
    ("points", "message"),
    [
        (AS[:4], "branching points"),
        ([[{0, 1}]] * 5, "exactly one set"),
        ([[{0, 1, 2}], [{0}, {0, 1, 2}]] + [[{0, 1, 2}]] * 3, "exactly one set"),
        ([[{0}, {1, 2}], [{0, 1}, {2}]] + [[{0}, {1}, {2}]] * 3, "never merge"),
        ([[{0, 1, 2}], [set(), {0, 1, 2}]] + [[{0, 1, 2}]] * 3, "empty"),
        ("not a layout", "layout must be"),
    ],
)
def test_bad_layouts_are_rejected(points, message):
    with pytest.raises(ValueError, match=message):
        layout_points(points, 3)


def test_bad_arguments_are_rejected(mnv2_state):
    with pytest.raises(ValueError, match="unknown backbone"):
        TreeMTLModel("vgg", AS, NAMES, CHANNELS, head_width=W)
    with pytest.raises(ValueError, match="one output channel count per task"):
        TreeMTLModel("mobilenetv2", AS, NAMES, [40, 3], head_width=W)
    with pytest.raises(ValueError, match="positive integer"):
        ASPPHead(8, 0, 4)
    m = model("mobilenetv2", AS, init=mnv2_state)
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        m(torch.rand(1, 1, 65, 65))


# ----------------------------------------------------------------------------- width


def test_width_scales_every_channel_and_keeps_the_blocks():
    """ResNet34 at width 0.25: stages 16/32/64/128, so each block's paper count is known by hand."""
    assert feature_channels("resnet34", 0.25) == 128 and feature_channels("mobilenetv2", 0.5) == 640
    stem, l1, l2, l3, l4 = backbone_blocks("resnet34", materialize=False, width=0.25)
    assert stem[0].out_channels == 16 and l4[-1].conv2.out_channels == 128
    # stem: 7*7*3*16 conv + 16 BN; a 3x3 unit of c channels: 2 * (9c^2 + c)
    assert paper_block_params("resnet34", 0.25)[0] == 7 * 7 * 3 * 16 + 16
    assert paper_block_params("resnet34", 0.25)[1] == 3 * 2 * (9 * 16 * 16 + 16)
    for name, width in (("resnet34", 0.25), ("mobilenetv2", 0.5)):
        assert len(backbone_blocks(name, materialize=False, width=width)) == 5
        m = TreeMTLModel(name, BRANCHED, NAMES, CHANNELS, head_width=W, width=width)
        out = m(torch.rand(1, 3, 64, 64))
        full = TreeMTLModel(name, BRANCHED, NAMES, CHANNELS, head_width=W)
        assert {k: v.shape for k, v in out.items()} == {k: v.shape for k, v in full(torch.rand(1, 3, 64, 64)).items()}
        assert param_counts(m)["backbone_torch"] < param_counts(full)["backbone_torch"]
    # width 1 is the paper's backbone, bit for bit
    assert paper_block_params("resnet34", 1.0) == RESNET34_PAPER
    with pytest.raises(ValueError, match="backbone.width must be a positive number"):
        backbone_blocks("resnet34", width=0)


def test_init_state_records_its_width(mnv2_state):
    narrow = init_state("resnet34", CHANNELS, W, seed=0, width=0.25)
    assert narrow["width"] == 0.25
    m = TreeMTLModel("resnet34", AS, NAMES, CHANNELS, head_width=W, init=narrow, width=0.25)
    with pytest.raises(ValueError, match=r"init state is for \(backbone, width"):
        TreeMTLModel("resnet34", AS, NAMES, CHANNELS, head_width=W, init=narrow)
    assert "width=0.25" in repr(m)


def test_a_bad_width_stops_before_the_data_are_rendered(tmp_path):
    from helpers import tiny
    from mtl_attack.config import compose
    from mtl_attack.parts import prepare

    with pytest.raises(ValueError, match="backbone.width must be a positive number"):
        prepare(compose(tiny("backbone.width=0", cache_dir=tmp_path)), torch.device("cpu"), progress=False)
    assert not any(tmp_path.iterdir())  # nothing rendered or trained

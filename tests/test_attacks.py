"""The multi-task attack library: objectives against independent autograd computations,
optimizer invariants over every optimizer x objective, APGD's step schedule, Auto-SAGA's
alpha update, the WeightedTotal grid, FAT's early-stopped PGD, the typed config and the Hydra
attack presets. The invariants also run on a toy model whose tasks are named unlike any dataset's."""
from __future__ import annotations

import gc
import math
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf
from omegaconf.errors import ValidationError

from mtl_attack.attacks import (
    APGD, DGBA, FGSM, MIM, OBJECTIVES, OPTIMIZERS, PGD, SAGA, WGD, AttackConfig, AttackProblem, EarlyStop,
    EarlyStoppedPGD, SignTotal, SingleTask, Total, WeightedTotal, WgdVariant, apgd_checkpoints, build_attack,
    build_attack_from_config, fooled, grid_search_weights, parse_preset_name, preset_configs, preset_name,
    register_presets, relative_increase, saga_alpha_update, weight_grid, wgd_weights)

TASKS = ("segment_semantic", "normal", "depth_zbuffer")
WEIGHTS = {"segment_semantic": 0.2, "normal": 0.3, "depth_zbuffer": 0.5}


class ToyMTL(nn.Module):
    """Shared conv trunk (with BatchNorm and Dropout, so eval mode matters) and 3 task heads."""

    def __init__(self):
        super().__init__()
        self.trunk = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                   nn.Dropout(0.2), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.heads = nn.ModuleDict({"segment_semantic": nn.Conv2d(8, 4, 1), "normal": nn.Conv2d(8, 3, 1),
                                    "depth_zbuffer": nn.Conv2d(8, 1, 1)})

    def forward(self, x):
        h = self.trunk(x)
        return {t: head(h) for t, head in self.heads.items()}


def seg_loss(out, target):
    return F.cross_entropy(out, target, reduction="none").mean((1, 2))


def normal_loss(out, target):
    return (1 - F.cosine_similarity(out, target, dim=1)).mean((1, 2))


def depth_loss(out, target_and_mask):
    # The pipeline passes (target, mask) pairs: the attack must hand them over untouched.
    target, mask = target_and_mask
    err = (out - target).abs()[:, 0] * mask
    return err.sum((1, 2)) / mask.sum((1, 2)).clamp(min=1)


LOSSES = {"segment_semantic": seg_loss, "normal": normal_loss, "depth_zbuffer": depth_loss}


def make_targets(images):
    """Targets that are functions of the image, so a toy model can learn them."""
    b, _, h, w = images.shape
    seg = (images[:, 0] * 3.999).long()
    normal = F.normalize(images - 0.5 + 1e-3, dim=1)
    depth = images.mean(1, keepdim=True)
    mask = torch.ones(b, h, w, dtype=images.dtype)
    mask[:, :2] = 0
    return {"segment_semantic": seg, "normal": normal, "depth_zbuffer": (depth, mask)}


def make_images(batch=2, size=16, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 3, size, size, generator=g, dtype=dtype)
    x[:, :, 0, :4] = 0.0  # pixels on the image bounds exercise the [0,1] clip
    x[:, :, 1, :4] = 1.0
    return x


@pytest.fixture(scope="module")
def toy():
    torch.manual_seed(0)
    return ToyMTL().eval()


@pytest.fixture(scope="module")
def trained():
    """A toy model trained a few dozen Adam steps on random images (about a second)."""
    torch.manual_seed(1)
    model = ToyMTL()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for it in range(40):
        x = make_images(8, 16, seed=100 + it)
        out = model(x)
        tg = make_targets(x)
        loss = sum(LOSSES[t](out[t], tg[t]).mean() for t in TASKS)
        opt.zero_grad()
        loss.backward()
        opt.step()
    for p in model.parameters():
        p.grad = None
    return model.eval()


def options_for(objective):
    if objective == "single":
        return {"target_task": "normal"}
    if objective == "weightedtotal":
        return {"weights": dict(WEIGHTS)}
    return {}


def task_grads(model, x, targets):
    """Independent reference: one forward and one autograd call per task; losses and grads."""
    losses, grads = {}, {}
    for t in TASKS:
        xv = x.detach().clone().requires_grad_(True)
        loss = LOSSES[t](model(xv)[t], targets[t])
        (grads[t],) = torch.autograd.grad(loss.sum(), xv)
        losses[t] = loss.detach()
    return losses, grads


def per_sample(c, like):
    return c.reshape(-1, *([1] * (like.dim() - 1)))


@pytest.fixture(scope="module")
def problem64():
    torch.manual_seed(3)
    model = ToyMTL().double().eval()
    x = make_images(3, 12, dtype=torch.float64)
    targets = make_targets(x)
    return model, x, targets, AttackProblem(model, x, targets, LOSSES, 8 / 255)


# ---------------------------------------------------------------- objectives


@pytest.mark.parametrize("fused", [True, False])
def test_dgba_direction_equals_per_task_reference(problem64, fused):
    model, x, targets, problem = problem64
    losses, grads = task_grads(model, x, targets)
    expected = sum(grads[t] / per_sample(losses[t], grads[t]) for t in TASKS)
    combined, got_losses = DGBA(fused=fused).combined(problem, x)
    torch.testing.assert_close(combined, expected, rtol=1e-9, atol=1e-12)
    for t in TASKS:
        torch.testing.assert_close(got_losses[t], losses[t])
    direction, _ = DGBA(fused=fused).direction(problem, x)
    assert torch.equal(direction, torch.sign(expected))
    assert set(direction.unique().tolist()) <= {-1.0, 0.0, 1.0}


def test_total_signtotal_single_weighted_equal_autograd(problem64):
    model, x, targets, problem = problem64
    losses, grads = task_grads(model, x, targets)
    xv = x.clone().requires_grad_(True)
    out = model(xv)
    (g_sum,) = torch.autograd.grad(sum(LOSSES[t](out[t], targets[t]).sum() for t in TASKS), xv)
    torch.testing.assert_close(Total().direction(problem, x)[0], g_sum)
    torch.testing.assert_close(Total(fused=False).direction(problem, x)[0], g_sum)
    assert torch.equal(SignTotal().direction(problem, x)[0], sum(torch.sign(grads[t]) for t in TASKS))
    torch.testing.assert_close(SingleTask("normal").direction(problem, x)[0], grads["normal"])
    weighted = sum(WEIGHTS[t] * grads[t] for t in TASKS)
    torch.testing.assert_close(WeightedTotal(WEIGHTS).direction(problem, x)[0], weighted)
    torch.testing.assert_close(WeightedTotal([0.2, 0.3, 0.5]).direction(problem, x)[0], weighted)
    parts, _ = SignTotal().task_directions(problem, x)
    assert list(parts) == list(TASKS)


def test_wgd_weights_known_values():
    clean = {"a": torch.tensor([1.0, 2.0]), "b": torch.tensor([1.0, 4.0])}
    at_start = wgd_weights(clean, clean, ["a", "b"])
    assert all(torch.equal(w, torch.ones(2)) for w in at_start.values())
    now = {"a": torch.tensor([2.0, 2.0]), "b": torch.tensor([1.0, 8.0])}
    dyn = wgd_weights(now, clean, ["a", "b"])  # Lt = (2, 1) and (1, 2): mean 1.5
    torch.testing.assert_close(dyn["a"], torch.tensor([4 / 3, 2 / 3]))
    torch.testing.assert_close(dyn["b"], torch.tensor([2 / 3, 4 / 3]))
    static = wgd_weights(now, clean, ["a", "b"], WgdVariant.static)
    torch.testing.assert_close(static["b"], torch.tensor([1.0, 0.25]))
    zero = {"a": torch.zeros(2), "b": torch.zeros(2)}
    assert all(torch.isfinite(w).all() for w in wgd_weights(zero, zero, ["a", "b"]).values())


def test_wgd_at_start_equals_total(problem64):
    model, x, targets, problem = problem64
    wgd = OBJECTIVES["wgd"]()
    torch.testing.assert_close(wgd.direction(problem, x)[0], Total().direction(problem, x)[0])


def test_relative_increase_known_values():
    clean = {"a": torch.tensor([2.0, 0.0]), "b": torch.tensor([1.0, 1.0])}
    now = {"a": torch.tensor([3.0, 0.0]), "b": torch.tensor([0.5, 2.0])}
    torch.testing.assert_close(relative_increase(now, clean, ["a", "b"]), torch.tensor([0.0, 1.0]))


def test_zero_loss_gives_finite_dgba_direction_and_attack():
    model = ToyMTL().eval()
    x = make_images()
    # Value exactly 0, gradient nonzero: the worst case for dividing by the loss.
    zero_loss = {"z": lambda out, t: out.mean((1, 2, 3)) - out.mean((1, 2, 3)).detach(), **LOSSES}
    outputs = {"z": "depth_zbuffer"}

    class Wrap(nn.Module):
        def __init__(self):
            super().__init__()
            self.m = model

        def forward(self, x):
            out = self.m(x)
            return {**out, **{k: out[v] for k, v in outputs.items()}}

    targets = {**make_targets(x), "z": None}
    problem = AttackProblem(Wrap().eval(), x, targets, zero_loss, 4 / 255)
    d, losses = DGBA().direction(problem, x)
    assert torch.equal(losses["z"], torch.zeros(2)) and torch.isfinite(d).all()
    for opt in OPTIMIZERS:
        x_adv = build_attack(opt, "dgba", eps=4 / 255, steps=3)(Wrap(), x, targets, zero_loss)
        assert torch.isfinite(x_adv).all()


# ---------------------------------------------------------------- invariants


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
@pytest.mark.parametrize("objective", list(OBJECTIVES))
def test_invariants_every_optimizer_objective(toy, optimizer, objective):
    x = make_images()
    targets = make_targets(x)
    x_before = x.clone()
    targets_before = {t: (v[0].clone(), v[1].clone()) if isinstance(v, tuple) else v.clone()
                      for t, v in targets.items()}
    params_before = [p.requires_grad for p in toy.parameters()]
    toy.train()
    toy.trunk[1].eval()  # a caller's mixed modes (a frozen BN) come back as they were
    modes_before = [m.training for m in toy.modules()]
    eps = 8 / 255
    attack = build_attack(optimizer, objective, eps=eps, steps=4, **options_for(objective))
    x_adv = attack(toy, x, targets, LOSSES)
    assert [m.training for m in toy.modules()] == modes_before
    toy.eval()
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert torch.isfinite(x_adv).all()
    assert (x_adv - x).abs().max() <= eps + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert x_adv.grad_fn is None and not x_adv.requires_grad
    assert (x_adv != x).any()
    assert torch.equal(x, x_before)
    for t, v in targets.items():
        before = targets_before[t]
        if isinstance(v, tuple):
            assert torch.equal(v[0], before[0]) and torch.equal(v[1], before[1])
        else:
            assert torch.equal(v, before)
    assert all(p.grad is None for p in toy.parameters())
    assert [p.requires_grad for p in toy.parameters()] == params_before


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_eps_zero_returns_input_exactly(toy, optimizer):
    x = make_images()
    targets = make_targets(x)
    attack = build_attack(optimizer, "dgba", eps=0.0, steps=3, random_start=True)
    assert torch.equal(attack(toy, x, targets, LOSSES), x)
    # The optimizer's own loop keeps x exactly too (not only the wrapper's shortcut).
    problem = AttackProblem(toy, x, targets, LOSSES, 0.0)
    x_run, _ = attack.optimizer.run(problem, attack.objective, x, 0.1, 3)
    assert torch.equal(x_run, x)


def _tensor_count():
    # type() rather than isinstance: some lazy module proxies warn when their __class__ is read.
    return sum(1 for o in gc.get_objects() if issubclass(type(o), torch.Tensor))


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_memory_flat_across_steps(toy, optimizer):
    """Every forward sees a detached iterate, live tensors stop growing, nothing is left behind."""
    x = make_images()
    targets = make_targets(x)
    counts, leaves = [], []

    def hook(module, inputs):
        leaves.append(inputs[0].grad_fn is None)  # no graph carried over from earlier steps
        if optimizer != "fgsm":
            counts.append(_tensor_count())

    handle = toy.register_forward_pre_hook(hook)
    try:
        objective = "signtotal" if optimizer == "saga" else "dgba"
        build_attack(optimizer, objective, eps=4 / 255, steps=6)(toy, x, targets, LOSSES)
    finally:
        handle.remove()
    assert len(leaves) >= (1 if optimizer == "fgsm" else 2) and all(leaves)
    if counts:
        n = len(counts)
        assert max(counts[2 * n // 3:]) <= max(counts[n // 3:2 * n // 3]), counts
    gc.collect()
    before = _tensor_count()
    x_adv = build_attack(optimizer, "dgba", eps=4 / 255, steps=3)(toy, x, targets, LOSSES)
    gc.collect()
    assert _tensor_count() <= before + 1 and x_adv.grad_fn is None


@pytest.mark.parametrize("optimizer, random_start, expected", [
    # (forwards with grad, forwards without, input-gradient backward passes) for S = 5 steps, T = 3 tasks
    ("fgsm", False, (1, 0, 1)),
    ("pgd", False, (5, 0, 5)),  # the clean losses come from the first step's forward
    ("mim", False, (5, 0, 5)),
    ("apgd", False, (5, 1, 5)),  # the last iterate needs only its losses
    ("saga", False, (10, 0, 5 * (3 + 1))),  # per-task gradients, then one at the look-ahead point
    ("pgd", True, (5, 1, 5)),  # a random start needs a forward of its own for the clean losses
])
def test_passes_per_attack(toy, optimizer, random_start, expected):
    """Each attack makes the passes its pass count says (docs/performance.md), and the clean
    losses it records from its first step equal an independent no-grad forward's."""
    x = make_images()
    targets = make_targets(x)
    passes = {"grad": 0, "nograd": 0, "backward": 0}

    def count(module, inputs, output):
        passes["grad" if torch.is_grad_enabled() else "nograd"] += 1
        if output.requires_grad:
            output.register_hook(lambda g: passes.__setitem__("backward", passes["backward"] + 1))

    handle = toy.trunk.register_forward_hook(count)
    try:
        build_attack(optimizer, "dgba", eps=4 / 255, steps=5, random_start=random_start)(toy, x, targets, LOSSES)
        assert (passes["grad"], passes["nograd"], passes["backward"]) == expected
        problem = AttackProblem(toy, x, targets, LOSSES, 4 / 255)
        DGBA().direction(problem, problem.clean)
        recorded = problem.clean_losses
    finally:
        handle.remove()
    with torch.no_grad():
        out = toy(x)
    for t in TASKS:
        assert torch.equal(recorded[t], LOSSES[t](out[t], targets[t]))


def test_seed_reproducible_and_restarts_keep_best(trained):
    x = make_images(4)
    targets = make_targets(x)
    kw = dict(eps=8 / 255, steps=3, random_start=True, seed=5)
    a1 = build_attack("pgd", "dgba", **kw)(trained, x, targets, LOSSES)
    a2 = build_attack("pgd", "dgba", **kw)(trained, x, targets, LOSSES)
    assert torch.equal(a1, a2)
    a3 = build_attack("pgd", "dgba", restarts=3, **kw)(trained, x, targets, LOSSES)
    problem = AttackProblem(trained, x, targets, LOSSES, 8 / 255)
    score = lambda xa: relative_increase(problem.losses(xa), problem.clean_losses, TASKS)
    assert (score(a3) >= score(a1) - 1e-7).all()  # the first restart is the single run


def test_works_under_no_grad_and_on_cuda_if_available(toy):
    x = make_images()
    targets = make_targets(x)
    with torch.no_grad():
        x_adv = build_attack("apgd", "dgba", eps=4 / 255, steps=2)(toy, x, targets, LOSSES)
    assert (x_adv != x).any()
    if torch.cuda.is_available():
        model = ToyMTL().cuda().eval()
        xc = x.cuda()
        tc = {t: tuple(p.cuda() for p in v) if isinstance(v, tuple) else v.cuda() for t, v in targets.items()}
        for opt in OPTIMIZERS:
            x_adv = build_attack(opt, "dgba", eps=4 / 255, steps=2, random_start=True)(model, xc, tc, LOSSES)
            assert x_adv.device == xc.device and (x_adv - xc).abs().max() <= 4 / 255 + 1e-6


class RenamedToy(nn.Module):
    """ToyMTL's trunk with two heads named unlike any dataset's tasks ("seg", "depth")."""

    def __init__(self):
        super().__init__()
        base = ToyMTL()
        self.trunk = base.trunk
        self.heads = nn.ModuleDict({"seg": base.heads["segment_semantic"], "depth": base.heads["depth_zbuffer"]})

    def forward(self, x):
        h = self.trunk(x)
        return {t: head(h) for t, head in self.heads.items()}


RENAMED_LOSSES = {"seg": seg_loss, "depth": depth_loss}


def renamed_targets(images):
    full = make_targets(images)
    return {"seg": full["segment_semantic"], "depth": full["depth_zbuffer"]}


def renamed_options(objective):
    if objective == "single":
        return {"target_task": "seg"}
    if objective == "weightedtotal":
        return {"weights": {"seg": 0.4, "depth": 0.6}}
    return {}


@pytest.fixture(scope="module")
def renamed():
    torch.manual_seed(4)
    return RenamedToy().eval()


# Every table optimizer, plus PGD with FAT's early stop (a threshold it does not reach at once).
OPTIMIZER_CASES = [(name, None) for name in OPTIMIZERS] + [("pgd", EarlyStop(tau=1, threshold=0.05))]


@pytest.mark.parametrize("optimizer, early_stop", OPTIMIZER_CASES, ids=[*OPTIMIZERS, "pgd_early_stop"])
@pytest.mark.parametrize("objective", list(OBJECTIVES))
def test_invariants_on_tasks_named_unlike_any_dataset(renamed, optimizer, early_stop, objective):
    x = make_images()
    targets = renamed_targets(x)
    x_before = x.clone()
    attack = build_attack(optimizer, objective, eps=8 / 255, steps=4, early_stop=early_stop,
                          **renamed_options(objective))
    x_adv = attack(renamed, x, targets, RENAMED_LOSSES)
    assert attack.eps == 8 / 255  # the attack owns eps, in [0,1] units
    assert torch.isfinite(x_adv).all()
    assert (x_adv - x).abs().max() <= attack.eps + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert (x_adv != x).any()
    assert torch.equal(x, x_before)
    assert all(p.grad is None for p in renamed.parameters())


def test_single_task_is_checked_against_the_callers_losses(renamed):
    x = make_images()
    targets = renamed_targets(x)
    attack = build_attack(optimizer="pgd", objective="single", eps=4 / 255, target_task="seg", steps=2)
    assert (attack(renamed, x, targets, RENAMED_LOSSES) != x).any()
    other = build_attack(optimizer="pgd", objective="single", eps=4 / 255, target_task="normal", steps=2)
    with pytest.raises(ValueError) as err:
        other(renamed, x, targets, RENAMED_LOSSES)
    assert str(err.value) == "target_task 'normal' is not among the attacked tasks ['seg', 'depth']"
    with pytest.raises(ValueError, match="task name"):
        build_attack("pgd", "single", eps=4 / 255, target_task=3)


# ---------------------------------------------------------------- early-stopped PGD (FAT)


# The Linear model's loss 10 + mean(w * x) (below), its increase scaled per sample by the target:
# sample b's relative increase after k PGD steps of size s from x = 0.5 is target[b] * k * s / 10.
SCALED_LOSS = {"lin": lambda out, scale: 10.0 + (out - 10.0) * scale}


@pytest.mark.parametrize("tau, expected", [(0, [4, 2]), (2, [6, 4]), (10, [10, 10])])
def test_early_stopped_pgd_known_answer(tau, expected):
    x = torch.full((2, 3, 8, 8), 0.5)
    eps, steps = 8 / 255, 10
    step = eps / steps
    scale = torch.tensor([1.0, 2.0])
    # Fooled once the relative increase reaches 3.5 steps' worth: sample 0 after 4 steps, sample 1 after 2.
    stop = EarlyStop(tau=tau, threshold=3.5 * step / 10)
    attack = build_attack("pgd", "total", eps=eps, steps=steps, early_stop=stop)
    assert isinstance(attack.optimizer, EarlyStoppedPGD)
    x_adv, info = attack(Linear(), x, {"lin": scale}, SCALED_LOSS, return_info=True)
    taken = info["runs"][0]["steps_taken"]
    assert taken.dtype == torch.long and taken.tolist() == expected
    w = Linear().w.expand_as(x)
    want = torch.stack([0.5 + k * step * w[b] for b, k in enumerate(expected)])
    torch.testing.assert_close(x_adv, want, rtol=0, atol=1e-6)  # k rounded steps


def test_early_stopped_pgd_is_pgd_until_stopped(trained):
    x = make_images(4)
    targets = make_targets(x)
    pgd = build_attack("pgd", "dgba", eps=8 / 255, steps=4)
    full = pgd(trained, x, targets, LOSSES)
    never = build_attack("pgd", "dgba", eps=8 / 255, steps=4, early_stop=EarlyStop(threshold=1e9))
    x_never, info = never(trained, x, targets, LOSSES, return_info=True)
    assert torch.equal(x_never, full) and info["runs"][0]["steps_taken"].tolist() == [4, 4, 4, 4]
    at_once = build_attack("pgd", "dgba", eps=8 / 255, steps=4, early_stop=EarlyStop(threshold=-1e9))
    x_once, info = at_once(trained, x, targets, LOSSES, return_info=True)
    assert torch.equal(x_once, x) and info["runs"][0]["steps_taken"].tolist() == [0, 0, 0, 0]
    one_more = build_attack("pgd", "dgba", eps=8 / 255, steps=4, early_stop=EarlyStop(tau=1, threshold=-1e9))
    _, info = one_more(trained, x, targets, LOSSES, return_info=True)
    assert info["runs"][0]["steps_taken"].tolist() == [1, 1, 1, 1]


def test_fooled_and_early_stop_errors():
    clean = {"a": torch.tensor([1.0, 2.0]), "b": torch.tensor([1.0, 1.0])}
    now = {"a": torch.tensor([2.0, 2.0]), "b": torch.tensor([1.0, 1.2])}  # mean increases 0.5 and 0.1
    assert fooled(now, clean, ["a", "b"], 0.5).tolist() == [True, False]
    with pytest.raises(ValueError, match="optimizer 'pgd'"):
        build_attack("apgd", "dgba", eps=4 / 255, early_stop=EarlyStop())
    with pytest.raises(ValueError, match="tau"):
        EarlyStop(tau=-1)
    with pytest.raises(ValueError, match="EarlyStop"):
        build_attack("pgd", "dgba", eps=4 / 255, early_stop=(0, 0.5))


# ---------------------------------------------------------------- APGD


def test_apgd_checkpoints_known_values():
    assert apgd_checkpoints(10) == [3, 5, 6, 7, 8, 9, 10]
    assert apgd_checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert apgd_checkpoints(1) == [1]
    with pytest.raises(ValueError):
        apgd_checkpoints(0)


class Linear(nn.Module):
    """loss = 10 + mean(w * x): ascent moves every pixel to the box corner sign(w)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("w", torch.sign(torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))))

    def forward(self, x):
        return {"lin": (self.w * x).mean((1, 2, 3)) + 10.0}


LINEAR_LOSS = {"lin": lambda out, t: out}


def test_apgd_step_schedule_on_linear_case():
    x = torch.full((2, 3, 8, 8), 0.5)
    eps = 8 / 255
    # Authors' start: step eps/10 from the clean image, every step increases -> never halves.
    attack = build_attack("apgd", "total", eps=eps, steps=10, apgd_start="authors")
    x_adv, info = attack(Linear(), x, {"lin": None}, LINEAR_LOSS, return_info=True)
    run = info["runs"][0]
    torch.testing.assert_close(run["step_size"], torch.full((10, 2), eps / 10))
    torch.testing.assert_close(x_adv, x + eps * Linear().w.expand_as(x))
    # Reference start: a 2*eps first step reaches the corner, then f stalls -> halves at every checkpoint.
    attack = build_attack("apgd", "total", eps=eps, steps=10, apgd_start="reference")
    _, info = attack(Linear(), x, {"lin": None}, LINEAR_LOSS, return_info=True)
    factors = [2, 2, 2, 1, 1, 1 / 2, 1 / 4, 1 / 8, 1 / 16, 1 / 32]
    expected = torch.tensor(factors).unsqueeze(1).expand(10, 2) * eps
    torch.testing.assert_close(info["runs"][0]["step_size"], expected)


def test_apgd_best_never_decreases_and_is_returned(trained):
    x = make_images(3)
    targets = make_targets(x)
    for start in ("authors", "reference"):
        attack = build_attack("apgd", "dgba", eps=8 / 255, steps=10, apgd_start=start)
        x_adv, info = attack(trained, x, targets, LOSSES, return_info=True)
        best = info["runs"][0]["best"]
        assert (best[1:] >= best[:-1]).all()
        problem = AttackProblem(trained, x, targets, LOSSES, 8 / 255)
        got = relative_increase(problem.losses(x_adv), problem.clean_losses, TASKS)
        torch.testing.assert_close(got, best[-1], rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- Auto-SAGA


def test_saga_alpha_update_known_values():
    alpha = torch.tensor([[1.0], [2.0]])
    parts = torch.tensor([[0.01], [-0.02]])
    look = torch.tensor([-0.5])
    s, step, lr = 10.0, 0.4, 3.0
    total = 1.0 * 0.01 + 2.0 * -0.02  # -0.03
    sech2 = 1 - math.tanh(s * total) ** 2
    expected = [a - lr * -0.5 * step * s * v * sech2 for a, v in ((1.0, 0.01), (2.0, -0.02))]
    torch.testing.assert_close(saga_alpha_update(alpha, parts, look, step, s, lr),
                               torch.tensor(expected).unsqueeze(1))
    huge = saga_alpha_update(alpha, parts * 1e6, look, step, 1e3, lr)  # saturated tanh: no NaN
    assert torch.isfinite(huge).all()


def test_saga_alpha_update_uses_every_task_at_look_ahead(problem64):
    """One SAGA step against an independent computation: the look-ahead gradient sums all tasks."""
    model, x, targets, problem = problem64
    eps, lr, s = 8 / 255, 1e4, 5.0
    attack = build_attack("saga", "total", eps=eps, steps=1, saga_lr=lr, saga_s=s)
    _, info = attack(model, x, targets, LOSSES, return_info=True)
    _, grads = task_grads(model, x, targets)
    v = torch.stack([grads[t] for t in TASKS]) / 255
    look_ahead = problem.project(x + eps * torch.sign(v.sum(0)))
    _, grads1 = task_grads(model, look_ahead, targets)
    expected = saga_alpha_update(torch.ones_like(v), v, -sum(grads1.values()) / 255, eps * 255, s, lr)
    alpha = info["runs"][0]["alpha"]
    torch.testing.assert_close(alpha, expected)
    assert not torch.allclose(alpha, torch.ones_like(alpha))
    last_only = saga_alpha_update(torch.ones_like(v), v, -3 * grads1["depth_zbuffer"] / 255, eps * 255, s, lr)
    assert not torch.allclose(alpha, last_only)  # the authors' bug would give this


# ---------------------------------------------------------------- attacks work


def test_every_attack_raises_attacked_losses_on_trained_model(trained):
    x = make_images(4, seed=7)
    targets = make_targets(x)
    problem = AttackProblem(trained, x, targets, LOSSES, 8 / 255)
    for optimizer in OPTIMIZERS:
        for objective in OBJECTIVES:
            attack = build_attack(optimizer, objective, eps=8 / 255, steps=5, **options_for(objective))
            losses = problem.losses(attack(trained, x, targets, LOSSES))
            attacked = ["normal"] if objective == "single" else list(TASKS)
            for t in attacked:
                if objective in ("dgba", "single") or optimizer != "fgsm":
                    assert losses[t].mean() > problem.clean_losses[t].mean(), (optimizer, objective, t)
            gain = relative_increase(losses, problem.clean_losses, attacked)
            assert gain.mean() > 0, (optimizer, objective)


# ---------------------------------------------------------------- WeightedTotal grid


def test_weight_grid_points():
    grid = weight_grid(3)
    assert len(grid) == 36 and len(set(grid)) == 36
    assert grid[0] == (0.1, 0.1, 0.8) and grid[-1] == (0.8, 0.1, 0.1)
    for w in grid:
        assert math.isclose(sum(w), 1.0) and all(0.1 - 1e-9 <= v <= 0.9 + 1e-9 for v in w)
    assert len(weight_grid(5)) == 126
    assert weight_grid(2, step=0.5) == [(0.5, 0.5)]
    for bad in ((1, 0.1), (3, 0.3), (11, 0.1)):
        with pytest.raises(ValueError):
            weight_grid(*bad)


def test_grid_search_picks_highest_arp():
    target = (0.2, 0.3, 0.5)
    best, table = grid_search_weights(lambda w: -sum((a - b) ** 2 for a, b in zip(w, target)), 3)
    assert best == target and len(table) == 36
    assert max(table, key=lambda r: r["arp"])["weights"] == target
    with pytest.raises(ValueError, match="finite"):
        grid_search_weights(lambda w: float("nan"), 3)


# ---------------------------------------------------------------- config and presets


def test_unknown_optimizer_fails_at_merge_naming_choices():
    with pytest.raises(ValidationError) as err:
        OmegaConf.merge(OmegaConf.structured(AttackConfig), {"optimizer": "nope"})
    for name in OPTIMIZERS:
        assert name in str(err.value)
    # Task names are the model's own strings: any name merges, Single-x checks it at call time.
    assert OmegaConf.merge(OmegaConf.structured(AttackConfig), {"target_task": "depth"}).target_task == "depth"
    with pytest.raises(ValidationError, match="dgba"):
        OmegaConf.merge(OmegaConf.structured(AttackConfig), {"objective": "dgb"})


def test_presets_are_in_the_config_store_and_build():
    from mtl_attack.data.registry import task_names

    presets = preset_configs(task_names())  # what the config store holds
    # The task names the dataset configs declare: Cityscapes' two, NYUv2's three, two more of Taskonomy.
    assert task_names() == ("segmentation", "depth", "segment_semantic", "normal", "depth_zbuffer", "keypoints2d",
                            "edge_texture")
    # 5 optimizers x (5 objectives + Single-x without a task + Single-x for the 7 task names), and the ensemble.
    assert len(presets) == 66 and "dgba_apgd" in presets and "single_segment_semantic_apgd" in presets
    assert presets["single_pgd"] == {"optimizer": "pgd", "objective": "single", "target_task": None}
    assert presets["ensemble"] == {"optimizer": "ensemble", "objective": "dgba", "target_task": None,
                                   "apgd_start": "reference", "restarts": 2}
    assert not (Path(__file__).resolve().parents[1] / "conf" / "attack").exists()  # one table, no YAML copies
    import mtl_attack.config  # noqa: F401  (registers the presets)

    stored = {name.removesuffix(".yaml") for name in ConfigStore.instance().list("attack")}
    assert set(presets) <= stored
    for name, fields in presets.items():
        node = ConfigStore.instance().load(f"attack/{name}.yaml").node
        assert OmegaConf.to_container(node) == fields
    calls = []

    class Recorder:
        def store(self, **kwargs):
            calls.append(kwargs)

    register_presets(Recorder(), ["seg"])
    assert len(calls) == 36 and {c["group"] for c in calls} == {"attack"}
    # Single-x presets follow the task names they are given; the rest do not depend on them.
    mine = preset_configs(["seg", "depth"])
    assert len(mine) == 5 * (5 + 1 + 2) + 1 and mine["single_seg_pgd"]["target_task"] == "seg"
    assert {k: v for k, v in mine.items() if not k.startswith("single_")} == \
        {k: v for k, v in presets.items() if not k.startswith("single_")}
    schema = OmegaConf.structured(AttackConfig)
    for name, fields in presets.items():
        cfg = OmegaConf.merge(schema, fields)
        if fields["objective"] == "weightedtotal":
            cfg.weights = dict(WEIGHTS)
        if fields["objective"] == "single" and fields["target_task"] is None:  # single_<optimizer>: the user names the task
            with pytest.raises(ValueError, match="needs target_task"):
                build_attack_from_config(cfg, 4 / 255)
            cfg.target_task = "normal"
        attack = build_attack_from_config(cfg, 4 / 255)
        if name == "ensemble":
            assert [n for n, _ in attack.members(["seg", "depth"])] == [
                "dgba_apgd", "total_apgd", "single_seg_apgd", "single_depth_apgd"]
            continue
        assert attack.optimizer.name == fields["optimizer"] and attack.objective.name == fields["objective"]
        # APGD starts at random (Croce and Hein's start, the default); the others from the clean image.
        assert attack.steps == 10 and attack.random_start == (fields["optimizer"] == "apgd")


@pytest.mark.parametrize("name, parts", [
    ("dgba_apgd", ("dgba", None, "apgd")),
    ("single_segment_semantic_pgd", ("single", "segment_semantic", "pgd")),  # a task name with an underscore
    ("single_depth_zbuffer_apgd", ("single", "depth_zbuffer", "apgd")),
    ("single_pgd", ("single", None, "pgd")),  # Single-x whose target_task the user sets
    ("weightedtotal_mim", ("weightedtotal", None, "mim")),
    # The ensemble parses to objective "ensemble", as job records name it; formatting ignores the objective.
    ("ensemble", ("ensemble", None, "ensemble")),
])
def test_preset_names_round_trip(name, parts):
    objective, task, optimizer = parts
    assert parse_preset_name(name) == parts
    assert preset_name(objective, optimizer, task) == name
    assert parse_preset_name(name, task_names=TASKS) == parts
    if optimizer == "ensemble":
        assert preset_name("dgba", "ensemble") == "ensemble"  # the ensemble preset's own objective
    else:
        assert name in preset_configs(TASKS)


def test_every_preset_name_round_trips():
    for name, fields in preset_configs(TASKS).items():
        objective, task, optimizer = parse_preset_name(name, task_names=TASKS)
        assert (optimizer, task) == (fields["optimizer"], fields["target_task"])
        assert objective == ("ensemble" if name == "ensemble" else fields["objective"])
        assert preset_name(objective, optimizer, task) == name


@pytest.mark.parametrize("call, match", [
    (lambda: parse_preset_name("dgba"), "not an attack preset name"),
    (lambda: parse_preset_name("dgba_pgdx"), "not an attack preset name"),
    (lambda: parse_preset_name("foo_pgd"), "not an attack preset name"),
    (lambda: parse_preset_name("total_normal_pgd"), "not an attack preset name"),  # Total attacks every task
    (lambda: parse_preset_name("single__pgd"), "not an attack preset name"),
    (lambda: parse_preset_name("dgba_ensemble"), "not an attack preset name"),
    (lambda: parse_preset_name("single_edge_pgd", task_names=TASKS), "names task 'edge'"),
    (lambda: preset_name("dgb", "pgd"), "no attack preset"),
    (lambda: preset_name("dgba", "pgdx"), "no attack preset"),
    (lambda: preset_name("total", "pgd", "normal"), "attacks no one task"),
    (lambda: preset_name("dgba", "ensemble", "normal"), "attacks no one task"),
])
def test_bad_preset_names_fail_in_one_line(call, match):
    with pytest.raises(ValueError, match=match) as err:
        call()
    assert "\n" not in str(err.value)


def test_attack_classes_carry_labels_and_needs():
    assert {name: cls.label for name, cls in OBJECTIVES.items()} == {
        "single": "Single", "total": "Total", "signtotal": "SignTotal", "weightedtotal": "WeightedTotal",
        "wgd": "WGD", "dgba": "DGBA"}
    assert {name: cls.label for name, cls in OPTIMIZERS.items()} == {
        "fgsm": "FGSM", "pgd": "PGD", "mim": "MIM", "apgd": "APGD", "saga": "Auto-SAGA"}
    assert [OBJECTIVES[c.name] for c in (SingleTask, Total, SignTotal, WeightedTotal, WGD, DGBA)] == \
        [SingleTask, Total, SignTotal, WeightedTotal, WGD, DGBA]
    assert [OPTIMIZERS[c.name] for c in (FGSM, PGD, MIM, APGD, SAGA)] == [FGSM, PGD, MIM, APGD, SAGA]
    # Only WeightedTotal needs calibrated weights; only Single-x one named task.
    assert [n for n, c in OBJECTIVES.items() if c.needs_weights] == ["weightedtotal"]
    assert [n for n, c in OBJECTIVES.items() if c.needs_task] == ["single"]


def test_report_labels_come_from_the_attack_classes():
    from mtl_attack.report import labels

    assert labels.OPTIMIZER_LABELS == {"fgsm": "FGSM", "pgd": "PGD", "mim": "MIM", "apgd": "APGD",
                                       "saga": "Auto-SAGA", "ensemble": "Ensemble"}
    assert labels.OBJECTIVE_LABELS == {"total": "Total", "signtotal": "SignTotal", "weightedtotal": "WeightedTotal",
                                       "wgd": "WGD", "dgba": "DGBA"}
    assert labels.OBJECTIVES == tuple(f"single_{t}" for t in labels.TASKS) + (
        "total", "signtotal", "weightedtotal", "wgd", "dgba")
    assert labels.objective_label("single_segment_semantic") == "Single-Segm"
    assert labels.split_preset("single_depth_zbuffer_apgd") == ("apgd", "single_depth_zbuffer")
    assert labels.split_preset("ensemble") == (None, "ensemble")
    assert labels.train_attack_label("single_segment_semantic_pgd") == "PGD Single-Segm"


def test_defaults_are_the_authors_but_apgd_starts_as_croce_and_hein():
    for opt, rel in (("fgsm", 1.0), ("pgd", 0.1), ("mim", 0.1), ("saga", 0.1)):
        attack = build_attack(opt, "dgba", eps=4 / 255)
        assert attack.step_size_rel == pytest.approx(rel) and not attack.random_start
    ref = build_attack("apgd", "dgba", eps=4 / 255)
    assert ref.step_size_rel == 2.0 and ref.random_start
    authors = build_attack("apgd", "dgba", eps=4 / 255, apgd_start="authors")
    assert authors.step_size_rel == pytest.approx(0.1) and not authors.random_start
    assert build_attack("pgd", "dgba", eps=4 / 255, rel_stepsize=0.25).step_size_rel == 0.25


def test_bad_input_one_line_errors(toy):
    x = make_images()
    targets = make_targets(x)
    cases = [
        (lambda: build_attack("pgd", "dgba", eps=4 / 255, stepz=3), "unknown attack options"),
        (lambda: build_attack("pgdx", "dgba", eps=4 / 255), "expected one of"),
        (lambda: build_attack("pgd", "dgba", eps=4), "divide by 255"),
        (lambda: build_attack("pgd", "single", eps=4 / 255), "target_task"),
        (lambda: build_attack("pgd", "total", eps=4 / 255, target_task="normal"), "only to objective 'single'"),
        (lambda: build_attack("pgd", "weightedtotal", eps=4 / 255), "weights"),
        (lambda: build_attack("pgd", "dgba", eps=4 / 255, restarts=2), "random_start"),
        (lambda: build_attack("pgd", "dgba", eps=4 / 255, steps=0), "steps"),
        (lambda: build_attack("pgd", "dgba", eps=4 / 255)(toy, x * 2, targets, LOSSES), r"\[0,1\]"),
        (lambda: build_attack("pgd", "dgba", eps=4 / 255)(toy, x, targets, LOSSES, eps=4), "255"),
        (lambda: build_attack("pgd", "single", eps=4 / 255, target_task="edge_texture")(toy, x, targets, LOSSES),
         "edge_texture"),
        (lambda: build_attack("pgd", "weightedtotal", eps=4 / 255, weights={"normal": 1.0})(toy, x, targets, LOSSES),
         "weights"),
        (lambda: build_attack("pgd", "dgba", eps=4 / 255)(toy, x, targets, {"normal": lambda o, t: o.mean()}),
         "per-sample"),
        (lambda: build_attack("pgd", "dgba", eps=4 / 255)(toy, x, {}, LOSSES), "no targets"),
    ]
    for fn, message in cases:
        with pytest.raises(ValueError, match=message):
            fn()


def test_build_from_dictconfig_and_python_equal(toy):
    x = make_images()
    targets = make_targets(x)
    cfg = OmegaConf.create({"optimizer": "mim", "objective": "wgd", "steps": 3, "wgd_variant": "static"})
    a = build_attack_from_config(cfg, 4 / 255)
    b = build_attack("mim", "wgd", eps=4 / 255, steps=3, wgd_variant="static")
    assert a.objective.variant is WgdVariant.static and a.steps == 3
    assert torch.equal(a(toy, x, targets, LOSSES), b(toy, x, targets, LOSSES))
    assert isinstance(build_attack("saga", "dgba", eps=0.1).optimizer, SAGA)

"""The throughput benchmark and the attack's speed options: rows and ratios of a tiny bench run,
the invariants at bf16 and channels_last, TF32 flags restored, compile fallback, the typed
precision option, the ARP-agreement arithmetic and the one-line out-of-memory errors.
Timings are never asserted (the machine is shared)."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn
from torch.utils.data import Subset

from helpers import tiny
from mtl_attack.attacks import OPTIMIZERS, build_attack
from mtl_attack.attacks.attack import channels_last_model, execution, tf32_allowed
from mtl_attack.bench import row_specs, synthetic_batch
from mtl_attack.precision_check import ARP_TOLERANCE, arp_agreement, arp_check, relative_difference
from mtl_attack.cli import main
from mtl_attack.batches import attack_inputs
from mtl_attack.config import compose
from mtl_attack.evaluation import evaluate
from mtl_attack.parts import prepare
from mtl_attack.scores import arp
from mtl_attack.data.registry import config_tasks

EPS = 4 / 255


@pytest.fixture
def tf32_flags():
    """Leave the process's TF32 flags as they were."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


class Toy(nn.Module):
    """A conv trunk with BatchNorm and one head per NYUv2 task, at the input resolution."""

    def __init__(self):
        super().__init__()
        self.trunk = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                   nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.heads = nn.ModuleDict({t.name: nn.Conv2d(8, t.channels, 1) for t in config_tasks("nyuv2")})

    def forward(self, x):
        h = self.trunk(x)
        return {t: head(h) for t, head in self.heads.items()}


@pytest.fixture(scope="module")
def toy_problem():
    torch.manual_seed(0)
    model = Toy().eval()
    batch = synthetic_batch("nyuv2", 2, 12, seed=1)
    targets, losses = attack_inputs(batch, config_tasks("nyuv2"))
    return model, batch["image"], targets, losses


# ---------------------------------------------------------------- the bench


def test_bench_rows_ratios_and_json(tmp_path, capsys):
    path = tmp_path / "bench.json"
    code = main(["bench", "--size", "16", "--head-width", "4", "--batch", "2", "--steps", "2", "--repeats", "1",
                 "--warmup", "0", "--layout", "all_shared", "--precisions", "fp32", "--channels-last", "off",
                 "--compile", "off", "--device", "cpu", "--quiet", "--json", str(path)])
    assert code == 0
    out = capsys.readouterr().out
    assert "cpu" in out and "bare_step" in out and "fused DGBA / per-task backward" in out
    result = json.loads(path.read_text())
    (group,) = result["groups"]
    assert group["status"] == "ok" and group["layout"] == "all_shared" and group["precision"] == "fp32"
    rows = {r["row"]: r for r in group["rows"]}
    expected = {"bare_fwd", "bare_step", "dgba_pgd_per_task"} | {
        f"{obj}_{opt}" for opt in OPTIMIZERS for obj in ("total", "dgba")}
    assert set(rows) == expected and len(group["rows"]) == len(expected)
    bare = rows["bare_step"]["image_steps_per_s"]
    assert rows["bare_step"]["ratio"] == 1.0 and rows["bare_step"]["ratio_paired"] == 1.0
    assert rows["bare_step"]["ratio_cpu"] == 1.0  # CPU time of this process, on a CPU run
    for r in rows.values():
        assert r["error"] is None and len(r["seconds"]) == 1 and len(r["cpu_seconds"]) == 1
        assert r["image_steps_per_s"] == pytest.approx(r["image_steps"] / r["median_s"])
        assert r["ratio"] == pytest.approx(r["image_steps_per_s"] / bare)  # same run's bare step
        assert r["ratio_paired"] == pytest.approx(r["ratio"])  # one repeat: the same ratio
    assert rows["dgba_fgsm"]["image_steps"] == 2 and rows["dgba_pgd"]["image_steps"] == 4  # batch x steps
    assert rows["dgba_pgd_per_task"]["fused"] is False and rows["dgba_pgd"]["fused"] is True
    assert group["fused_vs_per_task"] == pytest.approx(
        rows["dgba_pgd"]["image_steps_per_s"] / rows["dgba_pgd_per_task"]["image_steps_per_s"])
    # Pass counts: the bare rows and PGD one forward per step (PGD's clean losses come from its
    # first step's forward); APGD two more, the clean losses (its default start is random) and a
    # loss-only forward at its last iterate.
    assert rows["bare_step"]["forwards_per_step"] == 1 and rows["bare_step"]["grad_forwards_per_step"] == 1
    assert rows["bare_fwd"]["grad_forwards_per_step"] == 0
    assert rows["dgba_pgd"]["forwards_per_step"] == 1 and rows["dgba_pgd"]["grad_forwards_per_step"] == 1
    assert rows["dgba_apgd"]["forwards_per_step"] == 2.0 and rows["dgba_apgd"]["grad_forwards_per_step"] == 1
    assert rows["dgba_fgsm"]["forwards_per_step"] == 1  # its one step, nothing more
    assert rows["dgba_pgd"]["peak_mib"] is None  # no GPU memory on a CPU
    assert group["memory_flat"] is None
    assert result["spec"]["size"] == 16 and result["device"].startswith("cpu")
    assert any(c["check"].startswith("fused DGBA") for c in result["checks"])


def test_row_specs_always_pair_fused_and_per_task():
    names = [r["row"] for r in row_specs(["apgd"])]
    assert names == ["bare_fwd", "bare_step", "total_apgd", "dgba_apgd", "dgba_pgd", "dgba_pgd_per_task"]
    assert [r["row"] for r in row_specs([])] == ["bare_fwd", "bare_step"]


def test_bench_bad_option_is_one_line(capsys):
    assert main(["bench", "--size", "0", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--size" in err


# ---------------------------------------------------------------- speed options keep the attack's guarantees


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_bf16_channels_last_invariants(toy_problem, optimizer):
    model, x, targets, losses = toy_problem
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    x_in = x.clone()
    for options in ({"precision": "bf16"}, {"precision": "bf16", "channels_last": True}):
        x_adv = build_attack(optimizer, "dgba", eps=EPS, steps=2, **options)(model, x, targets, losses)
        assert torch.isfinite(x_adv).all() and x_adv.dtype == x.dtype
        assert (x_adv - x).abs().max() <= EPS + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
        assert (x_adv != x).any()
    assert torch.equal(x, x_in)
    for k, v in model.state_dict().items():  # values and memory format as before
        assert torch.equal(v, weights[k]) and v.is_contiguous()


def test_fp32_options_do_not_change_the_result_on_cpu(toy_problem):
    """tf32 and channels_last change nothing a CPU computes in fp32 beyond rounding."""
    model, x, targets, losses = toy_problem
    ref = build_attack("pgd", "dgba", eps=EPS, steps=3)(model, x, targets, losses)
    assert torch.equal(build_attack("pgd", "dgba", eps=EPS, steps=3, precision="tf32")(model, x, targets, losses), ref)
    with execution(model, "fp32", channels_last=True) as forward:
        a, b = forward(x), model(x)
    assert all(torch.allclose(a[t], b[t], atol=1e-5) for t in a)


def test_bf16_forward_runs_autocast_and_returns_fp32(toy_problem):
    model, x, _, _ = toy_problem
    seen = []
    handle = model.trunk[0].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    try:
        with execution(model, "bf16") as forward:
            out = forward(x)
    finally:
        handle.remove()
    assert seen == [torch.bfloat16] and all(o.dtype == torch.float32 for o in out.values())


def test_tf32_flags_set_inside_and_restored(toy_problem, tf32_flags):
    model, x, targets, losses = toy_problem
    for inside_expected, precision in ((True, "tf32"), (False, "fp32"), (True, "bf16")):
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = True, False
        inside = []
        handle = model.register_forward_pre_hook(
            lambda m, i: inside.append((torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)))
        try:
            build_attack("fgsm", "dgba", eps=EPS, precision=precision)(model, x, targets, losses)
        finally:
            handle.remove()
        assert inside and set(inside) == {(inside_expected, inside_expected)}
        assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == (True, False)
    with pytest.raises(RuntimeError, match="boom"):  # restored on errors too
        with tf32_allowed(False):
            raise RuntimeError("boom")
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == (True, False)


def test_channels_last_model_converts_and_restores():
    model = Toy()
    with channels_last_model(model):
        assert model.trunk[0].weight.is_contiguous(memory_format=torch.channels_last)
        assert not model.trunk[0].weight.is_contiguous()
    assert model.trunk[0].weight.is_contiguous()
    model.to(memory_format=torch.channels_last)  # a model already in channels_last stays so
    with channels_last_model(model):
        pass
    assert model.trunk[0].weight.is_contiguous(memory_format=torch.channels_last)


def test_compile_failure_falls_back_to_eager_with_one_warning(toy_problem, monkeypatch):
    model, x, targets, losses = toy_problem
    ref = build_attack("pgd", "dgba", eps=EPS, steps=2)(model, x, targets, losses)

    def broken_compile(module, *args, **kwargs):
        def call(*a, **k):
            raise RuntimeError("no compiler here")
        return call

    monkeypatch.setattr(torch, "compile", broken_compile)
    attack = build_attack("pgd", "dgba", eps=EPS, steps=2, compile=True)
    with pytest.warns(RuntimeWarning, match="torch.compile failed.*no compiler here"):
        first = attack(model, x, targets, losses)
    assert torch.equal(first, ref)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # tried once per attack and model
        assert torch.equal(attack(model, x, targets, losses), ref)


def test_compile_reuses_the_compiled_model(toy_problem, monkeypatch):
    model, x, targets, losses = toy_problem
    made = []

    def fake_compile(module, *args, **kwargs):
        made.append(module)
        return module  # eager stand-in: what matters is how often it is made

    monkeypatch.setattr(torch, "compile", fake_compile)
    attack = build_attack("fgsm", "dgba", eps=EPS, compile=True)
    attack(model, x, targets, losses)
    attack(model, x, targets, losses)
    assert made == [model]


def test_compiled_calls_turn_buffer_donation_off(toy_problem, monkeypatch):
    """Per-task objectives take several gradients from one compiled graph (retain_graph), which a
    compiled backward with donated buffers refuses (seen with inductor on this CPU)."""
    import torch._functorch.config as functorch_config

    model, x, targets, losses = toy_problem
    before, seen, seen_backward = functorch_config.donated_buffer, [], []

    def fake_compile(module, *args, **kwargs):
        def call(inp):
            seen.append(functorch_config.donated_buffer)
            out = module(inp)
            if torch.is_grad_enabled():  # the backward compiles lazily, outside the forward
                out["normal"].register_hook(lambda g: seen_backward.append(functorch_config.donated_buffer))
            return out
        return call

    monkeypatch.setattr(torch, "compile", fake_compile)
    build_attack("pgd", "dgba", eps=EPS, steps=1, fused=False, compile=True)(model, x, targets, losses)
    assert seen and not any(seen) and seen_backward and not any(seen_backward)
    assert functorch_config.donated_buffer == before


def test_unknown_precision_fails_at_compose_naming_choices():
    from mtl_attack.config import compose

    with pytest.raises(Exception) as err:
        compose(["attack.precision=fp16"])
    text = str(err.value) + str(err.value.__cause__)
    assert all(p in text for p in ("fp32", "tf32", "bf16"))
    cfg = compose(["attack.precision=bf16", "attack.channels_last=true"])
    assert cfg.attack.precision.value == "bf16" and cfg.attack.channels_last is True
    assert compose([]).attack.precision.value == "fp32"  # the default stays strict fp32
    with pytest.raises(ValueError, match=r"fp32, tf32, bf16"):
        build_attack("pgd", "dgba", eps=EPS, precision="fp16")


# ---------------------------------------------------------------- ARP agreement


DIRECTIONS = {"a": {"m1": True, "m2": False}, "b": {"m": True}}
CLEAN = {"a": {"m1": 50.0, "m2": 2.0}, "b": {"m": 80.0}}
# ARP by hand: a = 100/2 * ((50-40)/50 + (3-2)/2) = 35, b = 100 * (80-60)/80 = 25, overall 30.
FP32 = {"a": {"m1": 40.0, "m2": 3.0}, "b": {"m": 60.0}}


def test_arp_agreement_known_answers():
    # a = 50 * (0.19 + 0.5) = 34.5, b = 25: overall 29.75, (29.75 - 30) / 30 = -0.8333%.
    close = arp_agreement(CLEAN, FP32, {"a": {"m1": 40.5, "m2": 3.0}, "b": {"m": 60.0}}, DIRECTIONS)
    assert close["arp_ref"] == pytest.approx(30.0) and close["arp_other"] == pytest.approx(29.75)
    assert close["rel_diff"] == pytest.approx(-0.25 / 30) and close["ok"]
    # a = 50 * (0.18 + 0.5) = 34, b = 100 * 19.4/80 = 24.25: overall 29.125, -2.9167%: outside 2%.
    far = arp_agreement(CLEAN, FP32, {"a": {"m1": 41.0, "m2": 3.0}, "b": {"m": 60.6}}, DIRECTIONS)
    assert far["rel_diff"] == pytest.approx(-0.875 / 30) and not far["ok"]
    assert ARP_TOLERANCE == 0.02
    assert relative_difference(-10.0, -9.9) == pytest.approx(0.01)  # relative to |reference|
    with pytest.raises(ValueError, match="fp32 ARP is 0"):
        relative_difference(0.0, 1.0)


def test_arp_check_on_a_tiny_job(cache_dir):
    overrides = tiny(f"cache_dir={cache_dir}")
    result = arp_check(overrides, ["bf16"], images=4, device="cpu")
    assert list(result["precisions"]) == ["fp32", "bf16"] and result["images"] == 4
    assert result["attack"] == "dgba_apgd" and result["steps"] == 2
    # The same model attacked here by build_attack at each precision on the same four images.
    cfg = compose(overrides)
    parts = prepare(cfg, torch.device("cpu"))
    images = Subset(parts.test, range(4))
    found = {}
    for precision in ("fp32", "bf16"):
        attack = build_attack("apgd", "dgba", eps=4 / 255, steps=2, precision=precision)
        res = evaluate(parts.model, images, parts.tasks, torch.device("cpu"), batch_size=6, attack=attack)
        found[precision] = (res["clean"], res["attacked"])
    clean = found["fp32"][0]
    for precision, (_, attacked) in found.items():
        assert result["precisions"][precision]["arp"] == arp(clean, attacked, parts.tasks)[0]
    ref, other = result["precisions"]["fp32"], result["precisions"]["bf16"]
    assert ref["rel_diff"] == 0.0 and ref["ok"]
    # bf16 really ran: its attacked metrics are not fp32's, and the verdict is the agreement's.
    assert found["bf16"][1] != found["fp32"][1] and other["arp"] != ref["arp"]
    agreement = arp_agreement(clean, found["fp32"][1], found["bf16"][1], parts.tasks)
    assert (other["rel_diff"], other["ok"]) == (agreement["rel_diff"], agreement["ok"])


# ---------------------------------------------------------------- out of memory


class OutOfMemory(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


class OutOfCpuMemory(OutOfMemory):
    def forward(self, x):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: "
                           "you tried to allocate 1099511627776 bytes")


def test_out_of_memory_names_the_batch_size_to_lower():
    from mtl_attack.errors import UserError

    tasks = config_tasks("nyuv2")
    b = synthetic_batch("nyuv2", 3, 8)
    items = [{"image": b["image"][i], "targets": {k: v[i] for k, v in b["targets"].items()},
              "masks": {k: v[i] for k, v in b["masks"].items()}} for i in range(3)]
    with pytest.raises(UserError) as err:
        evaluate(OutOfMemory(), items, tasks, torch.device("cpu"), batch_size=6, progress=False)
    msg = str(err.value)
    assert len(msg.splitlines()) == 1 and msg.startswith("out of GPU memory at dataset.eval_batch_size=6; lower "
                                                         "dataset.eval_batch_size (e.g. dataset.eval_batch_size=3)")
    with pytest.raises(UserError, match="out of CPU memory at dataset.eval_batch_size=6"):
        evaluate(OutOfCpuMemory(), items, tasks, torch.device("cpu"), batch_size=6, progress=False)

    from mtl_attack.config import compose
    from mtl_attack.training import train_model

    cfg = compose(["train.iterations=2", "train.batch_size=3"]).train
    with pytest.raises(UserError, match=r"train\.batch_size=3; lower train\.batch_size"):
        train_model(OutOfMemory(), items, tasks, cfg, torch.device("cpu"), seed=0, progress=False)

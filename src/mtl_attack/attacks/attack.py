"""The attack object: hyperparameters only; model and data come at call time (foolbox style).

``attack(model, images, targets, losses)`` puts the model in eval mode (every
module's mode is restored afterwards), computes gradients with respect to the
input only (no parameter ``.grad`` is created, ``requires_grad`` untouched),
runs on the images' device and never modifies the caller's tensors.

Speed options (docs/performance.md): ``precision`` (fp32 strict, tf32, bf16
autocast with fp32 losses), ``channels_last`` (model weights and input in that
memory format during the call; the weights' format is restored after) and
``compile`` (torch.compile of the model, once per attack object and model,
eager with a warning where it fails). :func:`execution` applies the first two
to any forward pass, so the benchmark's bare step runs exactly as the attack's.
"""
from __future__ import annotations

import contextlib
import itertools
import math
import numbers
import warnings
import weakref
from typing import Callable, Mapping

import torch
from torch import Tensor

from .modes import Precision, RegressionLoss, SegLoss
from .objectives import Objective
from .optimizers import Optimizer
from .problem import AttackProblem, monitor_value

__all__ = ["MultiTaskAttack", "eval_mode", "execution", "tf32_allowed", "channels_last_model", "as_precision",
           "compile_model"]


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module):
    """Eval mode inside the block; each submodule's own mode restored after."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training


def as_precision(value: Precision | str) -> Precision:
    """A :class:`Precision` from itself or its name; ValueError naming the choices otherwise."""
    try:
        return Precision(value.value if isinstance(value, Precision) else value)
    except ValueError:
        raise ValueError(f"unknown precision {value!r}; expected one of "
                         f"[{', '.join(p.value for p in Precision)}]") from None


@contextlib.contextmanager
def tf32_allowed(enabled: bool):
    """CUDA TF32 for matmuls and cuDNN convolutions on (True) or off (False) inside; flags restored after.

    Uses torch's legacy ``allow_tf32`` flags, or the ``fp32_precision`` ones when the
    caller set those (torch refuses to read one kind after the other was set).
    No effect on a CPU.
    """
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    try:
        saved = (matmul.allow_tf32, cudnn.allow_tf32)
        legacy = True
    except RuntimeError:  # the caller uses the fp32_precision API
        saved = (matmul.fp32_precision, cudnn.conv.fp32_precision)
        legacy = False
    if legacy:
        matmul.allow_tf32 = cudnn.allow_tf32 = bool(enabled)
    else:
        matmul.fp32_precision = cudnn.conv.fp32_precision = "tf32" if enabled else "ieee"
    try:
        yield
    finally:
        if legacy:
            matmul.allow_tf32, cudnn.allow_tf32 = saved
        else:
            matmul.fp32_precision, cudnn.conv.fp32_precision = saved


@contextlib.contextmanager
def channels_last_model(model: torch.nn.Module):
    """The model's 4-D weights and buffers in channels_last inside (values unchanged), contiguous after.

    A model already in channels_last is left as it is (so nested use converts once).
    """
    tensors = [t for t in itertools.chain(model.parameters(), model.buffers()) if t.dim() == 4]
    if all(t.is_contiguous(memory_format=torch.channels_last) for t in tensors):
        yield model
        return
    model.to(memory_format=torch.channels_last)
    try:
        yield model
    finally:
        model.to(memory_format=torch.contiguous_format)


def _no_buffer_donation():
    """AOTAutograd's buffer donation off inside (forward and lazily compiled backward alike).

    Per-task objectives (fused=False, SignTotal, Auto-SAGA) take several gradients from
    one graph (retain_graph=True), which a compiled backward that donated its buffers
    refuses; donation only saves memory.
    """
    import torch._functorch.config as functorch_config

    return functorch_config.patch(donated_buffer=False)


class _Compiled(torch.nn.Module):
    """``torch.compile(model)``, compiled and called with buffer donation off (see :func:`execution`)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.compiled = torch.compile(model)

    def forward(self, x: Tensor):
        with _no_buffer_donation():
            return self.compiled(x)


def compile_model(model: torch.nn.Module) -> torch.nn.Module:
    """The model compiled for attacks (lazy: compiles on its first call); shares the model's weights."""
    return _Compiled(model)


class _Forward:
    """``net(x)`` as the attack runs it: channels_last input, bf16 autocast with fp32 outputs."""

    def __init__(self, net: Callable, precision: Precision, channels_last: bool):
        self.net = net
        self.bf16 = precision is Precision.bf16
        self.channels_last = channels_last

    def __call__(self, x: Tensor):
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if not self.bf16:
            return self.net(x)
        with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16):
            out = self.net(x)
        # Losses (and so the attack's objectives) are computed in fp32.
        return {t: o.float() for t, o in out.items()} if isinstance(out, Mapping) else out


@contextlib.contextmanager
def execution(model: torch.nn.Module, precision: Precision | str = Precision.fp32, channels_last: bool = False,
              net: Callable | None = None):
    """Run passes of ``model`` as an attack with these settings does; yields ``forward(x) -> {task: output}``.

    precision: fp32 (TF32 off), tf32 (TF32 on), bf16 (autocast; outputs cast to fp32,
    TF32 on for what stays fp32). channels_last: the model's weights converted for the
    block (and back after), inputs converted in ``forward``. net: what ``forward``
    calls instead of ``model`` (e.g. its torch.compile'd version). x: ``[B,3,H,W]``.
    """
    precision = as_precision(precision)
    net = model if net is None else net
    with contextlib.ExitStack() as stack:
        stack.enter_context(tf32_allowed(precision is not Precision.fp32))
        if channels_last:
            stack.enter_context(channels_last_model(model))
        if isinstance(net, torch.nn.Module) and any(isinstance(m, _Compiled) for m in net.modules()):
            # The backward passes run here, outside the compiled forward, and compile lazily.
            stack.enter_context(_no_buffer_donation())
        yield _Forward(net, precision, bool(channels_last))


def _probe(forward: Callable, images: Tensor) -> None:
    """One forward without and one with input gradients, two from one graph as the per-task
    objectives take them (compiles both graphs up front)."""
    with torch.no_grad():
        forward(images)
    x = images.detach().clone().requires_grad_(True)
    out = forward(x)
    total = sum(o.float().sum() for o in out.values()) if isinstance(out, Mapping) else out.float().sum()
    torch.autograd.grad(total, x, retain_graph=True)
    torch.autograd.grad(total, x)


def _check_inputs(images, targets, losses, eps) -> None:
    if not isinstance(images, Tensor) or images.dim() != 4 or not images.is_floating_point():
        raise ValueError("images must be a float tensor [B,3,H,W] in [0,1]")
    if images.numel() and (images.min() < 0 or images.max() > 1):
        raise ValueError(f"images must lie in [0,1] (got [{images.min().item():.4g}, {images.max().item():.4g}]); "
                         "the model owns its input normalization")
    if not isinstance(losses, Mapping) or not losses:
        raise ValueError("losses must be a non-empty dict task -> fn(output, target) -> per-sample loss [B]")
    if not isinstance(targets, Mapping):
        raise ValueError("targets must be a dict task -> target (passed unchanged to that task's loss)")
    missing = [t for t in losses if t not in targets]
    if missing:
        raise ValueError(f"no targets for tasks {missing}; targets must have a key for every task in losses")
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not math.isfinite(eps) or eps < 0:
        raise ValueError(f"eps must be a finite number >= 0 in [0,1] image units, got {eps!r}")
    if eps > 1:
        raise ValueError(f"eps={eps} is larger than the [0,1] image range; eps is in [0,1] units "
                         f"(did you mean {eps}/255 = {eps / 255:.6g}?)")


class MultiTaskAttack:
    """An objective (tasks -> direction) driven by a single-task optimizer.

    eps: L-infinity budget in [0,1] image units, kept as the public attribute
    ``attack.eps`` (the one place it is held: callers read it from here, e.g. to
    check the result; ``attack(..., eps=...)`` overrides it for one call). rel_stepsize: step as a
    fraction of eps (None = the optimizer's default). random_start: None = the
    optimizer's default. restarts: runs from new random starts, keeping the
    per-sample best by the relative loss increase summed over the attacked
    tasks. seed: seeds the random starts (None: not reproducible). seg_loss,
    regression_loss: what is maximised per task kind instead of the task's own loss
    (docs/attack_losses.md); they need the project's task losses
    (:func:`mtl_attack.batches.attack_inputs`), whose kind they read.
    """

    def __init__(self, optimizer: Optimizer, objective: Objective, eps: float, steps: int = 10,
                 rel_stepsize: float | None = None, random_start: bool | None = None,
                 restarts: int = 1, seed: int | None = 0, precision: Precision | str = Precision.fp32,
                 channels_last: bool = False, compile: bool = False,
                 seg_loss: SegLoss | str = SegLoss.ce, regression_loss: RegressionLoss | str = RegressionLoss.plain):
        if not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
        if rel_stepsize is not None and not (rel_stepsize > 0 and math.isfinite(rel_stepsize)):
            raise ValueError(f"rel_stepsize must be > 0 (a fraction of eps) or None, got {rel_stepsize!r}")
        if not isinstance(restarts, int) or restarts < 1:
            raise ValueError(f"restarts must be an integer >= 1, got {restarts!r}")
        if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not math.isfinite(eps) or not 0 <= eps <= 1:
            raise ValueError(f"eps must be in [0,1] image units, got {eps!r} (pixel units: divide by 255)")
        self.optimizer = optimizer
        self.objective = objective
        self.eps = float(eps)
        self.steps = steps
        self.rel_stepsize = rel_stepsize
        self.random_start = optimizer.default_random_start if random_start is None else bool(random_start)
        if restarts > 1 and not self.random_start:
            raise ValueError("restarts > 1 repeats the same deterministic run; set random_start=True")
        self.restarts = restarts
        self.seed = seed
        self.precision = as_precision(precision)
        self.channels_last = bool(channels_last)
        self.compile = bool(compile)
        self.seg_loss = SegLoss(seg_loss.value if isinstance(seg_loss, SegLoss) else seg_loss)
        self.regression_loss = RegressionLoss(regression_loss.value if isinstance(regression_loss, RegressionLoss)
                                              else regression_loss)
        # (weakref to the model, what to call for it): torch.compile runs once per model.
        self._compiled: tuple[weakref.ref, Callable] | None = None

    def __repr__(self) -> str:
        return (f"MultiTaskAttack({self.objective.name}-{self.optimizer.name}, eps={self.eps:.6g}, "
                f"steps={self.steps}, random_start={self.random_start}, restarts={self.restarts}"
                f"{self._speed_repr()})")

    def _speed_repr(self) -> str:
        parts = [f", precision={self.precision.value}"] if self.precision is not Precision.fp32 else []
        parts += [f", seg_loss={self.seg_loss.value}"] * (self.seg_loss is not SegLoss.ce)
        parts += [f", regression_loss={self.regression_loss.value}"] * (self.regression_loss is not RegressionLoss.plain)
        parts += [", channels_last=True"] * self.channels_last + [", compile=True"] * self.compile
        return "".join(parts)

    def _net_for(self, model: torch.nn.Module, images: Tensor) -> Callable:
        """What the attack calls for ``model``: the model, or its compiled version (made and probed once).

        Compilation is lazy, so the first use compiles here, inside a probe of both
        graphs; a failure warns and the attack runs eagerly from then on.
        """
        if not self.compile:
            return model
        if self._compiled is not None and self._compiled[0]() is model:
            return self._compiled[1]
        net: Callable = model
        try:
            compiled = compile_model(model)
            with execution(model, self.precision, self.channels_last, net=compiled) as forward:
                _probe(forward, images)
            net = compiled
        except torch.OutOfMemoryError:
            raise
        except Exception as err:  # any compiler failure: fall back to eager
            reason = " ".join(str(err).split())[:200]
            warnings.warn(f"torch.compile failed for the attack ({type(err).__name__}: {reason}); "
                          "running eagerly", RuntimeWarning, stacklevel=3)
        self._compiled = (weakref.ref(model), net)
        return net

    def maximised_losses(self, losses: Mapping[str, Callable]) -> dict[str, Callable]:
        """The losses this attack maximises: ``losses`` with the seg_loss / regression_loss
        choice swapped in for each task whose kind has it (others keep their own)."""
        if self.seg_loss is SegLoss.ce and self.regression_loss is RegressionLoss.plain:
            return dict(losses)
        out = {}
        for task, fn in losses.items():
            if not hasattr(fn, "harder"):
                raise ValueError(f"seg_loss={self.seg_loss.value} / regression_loss={self.regression_loss.value} "
                                 f"need the project's task losses (mtl_attack.batches.attack_inputs); the loss "
                                 f"of task {task!r} is a plain function")
            out[task] = fn.harder(self.loss_name(fn.kind))
        return out

    def loss_name(self, kind: str) -> str:
        """The name of the loss this attack maximises for a task of meter kind ``kind``."""
        from .dense_losses import REGRESSION_KINDS

        if kind == "segmentation":
            return self.seg_loss.value
        return self.regression_loss.value if kind in REGRESSION_KINDS else RegressionLoss.plain.value

    @property
    def step_size_rel(self) -> float:
        """The step size as a fraction of eps."""
        if self.rel_stepsize is not None:
            return self.rel_stepsize
        return self.optimizer.default_rel_stepsize(self.steps)

    def __call__(self, model: torch.nn.Module, images: Tensor, targets: Mapping[str, object],
                 losses: Mapping[str, Callable], *, eps: float | None = None,
                 return_info: bool = False):
        """Adversarial images ``[B,3,H,W]`` in [0,1] with |x_adv - images|_inf <= eps.

        model(images) -> dict task -> output; losses[task](output, targets[task]) -> ``[B]``.
        eps overrides the attack's eps for this call. With return_info, returns
        (x_adv, info) where info["runs"] holds each restart's optimizer info
        (APGD: step_size [steps,B], objective and best [steps+1,B]).
        """
        eps = self.eps if eps is None else eps
        _check_inputs(images, targets, losses, eps)
        eps = float(eps)
        self.objective.check(list(losses))
        if eps == 0:
            x_adv, info = images.detach().clone(), {"runs": []}
            return (x_adv, info) if return_info else x_adv
        step = self.step_size_rel * eps
        generator = None
        if self.random_start and self.seed is not None:
            generator = torch.Generator(device=images.device)
            generator.manual_seed(int(self.seed))

        with eval_mode(model), torch.enable_grad():
            net = self._net_for(model, images)
            with execution(model, self.precision, self.channels_last, net=net) as forward:
                x_adv, runs = self._run(forward, images, targets, losses, eps, step, generator)
        if not torch.isfinite(x_adv).all():
            raise RuntimeError(f"{self!r} produced non-finite pixels; this is a bug, please report it")
        return (x_adv, {"runs": runs}) if return_info else x_adv

    def _run(self, forward, images, targets, losses, eps, step, generator):
        """The restarts loop, with ``forward`` as the model; returns (x_adv, runs)."""
        problem = AttackProblem(forward, images, targets, self.maximised_losses(losses), eps, self.steps)
        tasks = self.objective.attacked_tasks(problem.tasks)
        best_x, best_score, runs = None, None, []
        for _ in range(self.restarts):
            problem.begin_run()
            x0 = problem.random_start(generator) if self.random_start else problem.clean
            x_run, run_info = self.optimizer.run(problem, self.objective, x0, step, self.steps)
            runs.append(run_info)
            if self.restarts == 1:
                best_x = x_run
                break
            score = monitor_value(problem.losses(x_run), problem.clean_losses, tasks)
            if best_x is None:
                best_x, best_score = x_run, score
            else:
                better = score > best_score
                best_x = torch.where(better.reshape(-1, 1, 1, 1), x_run, best_x)
                best_score = torch.where(better, score, best_score)
        x_adv = problem.project(best_x).detach()
        return x_adv, runs

"""A user's multi-task network in the runner: built from its `_target_` config, wrapped to the
toolkit's conventions, checked against the dataset's tasks.

The wrapper (:class:`TaskOutputs`) takes RGB images in [0, 1] (what every attack
perturbs), converts them to the network's input convention (`model.input`), and
returns the network's outputs under the dataset's task names (`model.outputs`
renames keys; outputs that are not a task are dropped).
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from ..errors import UserError
from .inputs import InputNormalizer

__all__ = ["OWN_KEYS", "TaskOutputs", "constructor_args", "import_target", "build_custom", "check_outputs",
           "custom_entry"]

# Keys of the model config that are the runner's, not the constructor's.
OWN_KEYS = ("_target_", "checkpoint", "outputs", "input", "train", "label", "args")


def constructor_args(model_cfg) -> dict:
    """The user's constructor keyword arguments, as plain data: `model.args` plus every key added
    beside the schema's (`+model.<name>=value`), the latter winning."""
    from omegaconf import DictConfig, OmegaConf

    data = OmegaConf.to_container(model_cfg, resolve=True, enum_to_str=True) if isinstance(model_cfg, DictConfig) \
        else dict(model_cfg)
    return {**(data.get("args") or {}), **{k: v for k, v in data.items() if k not in OWN_KEYS}}


class TaskOutputs(nn.Module):
    """A user's network seen as the toolkit's model: [B, 3, H, W] RGB in [0, 1] -> {task: [B, C, h, w]}.

    net: the network; input_mode: "unit", "imagenet" or "caffe_bgr" (see models.inputs);
    outputs: the network's output key -> task name, for keys that differ; tasks: the task names kept.
    The network's weights are this module's `net.*` parameters.
    """

    def __init__(self, net: nn.Module, tasks: list[str], input_mode: str = "unit",
                 outputs: Mapping[str, str] | None = None):
        super().__init__()
        self.net = net
        self.normalizer = InputNormalizer(input_mode)
        self.rename = dict(outputs or {})
        self.tasks = list(tasks)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.net(self.normalizer(x))
        if not isinstance(out, Mapping):
            raise TypeError(f"{type(self.net).__name__}.forward returned {type(out).__name__}; "
                            "a multi-task network must return a dict of task outputs")
        named = {self.rename.get(k, k): v for k, v in out.items()}
        return {t: named[t] for t in self.tasks if t in named}


def import_target(target: str) -> Any:
    """The object that `target` ("package.module.Name") names; a UserError saying which of these
    went wrong: the package is not found (not installed or not on PYTHONPATH), a module in the path
    is missing, the module failed while importing (e.g. one of its own imports is missing), or it
    has no such name."""
    import importlib

    module, _, name = target.rpartition(".")
    if not module or not name:
        raise UserError(f"model._target_={target}: give the class's full path, e.g. my_pkg.nets.MyNet")
    try:
        found = importlib.import_module(module)
    except ModuleNotFoundError as err:
        missing = err.name or ""
        if missing == module.split(".")[0]:
            raise UserError(f"model._target_={target} cannot be imported: no module named {missing!r}; "
                            "put its package on PYTHONPATH or install it") from None
        if module == missing or module.startswith(missing + "."):
            parent, _, leaf = missing.rpartition(".")
            raise UserError(f"model._target_={target} cannot be imported: {parent} has no module {leaf!r}; "
                            "check the path") from None
        # The user's package was found; one of its own imports was not.
        raise UserError(f"model._target_={target}: importing {module} failed: {err} (an import inside the "
                        "package; install its dependencies, or a version of it that matches your "
                        "torch/torchvision)") from None
    except Exception as err:  # anything the module raises while it runs, ImportError included
        raise UserError(f"model._target_={target}: importing {module} failed ({type(err).__name__}: {err}); "
                        "fix the module or install a version that matches your torch/torchvision") from None
    try:
        return getattr(found, name)
    except AttributeError:
        raise UserError(f"model._target_={target} cannot be imported: module {module} has no {name!r}; "
                        "check the class name") from None


def build_custom(model_cfg, task_names: list[str], seed: int = 0) -> TaskOutputs:
    """Instantiate the user's class from `model_cfg` (`_target_` plus its constructor arguments)
    with torch seeded by `seed` (so its initial weights repeat), and wrap it; a class that cannot
    be imported or built, or is not an nn.Module, is a UserError."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    target = model_cfg._target_
    # Imported here, not by Hydra, whose failed lookup also logs an error of its own.
    import_target(str(target))
    args = constructor_args(model_cfg)
    torch.manual_seed(seed)
    try:
        net = instantiate({"_target_": target, **args})
    except InstantiationException as err:
        reason = err.__cause__ or err
        raise UserError(f"model._target_={target} with arguments {args} could not be built "
                        f"({type(reason).__name__}: {reason}); check the +model.<name>= arguments") from None
    if not isinstance(net, nn.Module):
        raise UserError(f"model._target_={target} built a {type(net).__name__}, not a torch nn.Module")
    mode = getattr(model_cfg.input, "value", model_cfg.input)
    return TaskOutputs(net, task_names, mode, dict(model_cfg.outputs or {}))


def check_outputs(model: TaskOutputs, tasks, input_size: int) -> None:
    """Run one zero image [1, 3, input_size, input_size] and check that every task has an output
    [1, channels, h, w]; a missing task or a wrong channel count is a UserError naming it."""
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            raw = model.net(model.normalizer(torch.zeros(1, 3, input_size, input_size)))
    except Exception as err:
        raise UserError(f"model._target_: the network failed on a 1x3x{input_size}x{input_size} input "
                        f"({type(err).__name__}: {err})") from None
    finally:
        model.train(training)
    if not isinstance(raw, Mapping):
        raise UserError(f"model._target_: forward returned {type(raw).__name__}; it must return a dict "
                        "{task name: tensor [B, C, h, w]}")
    named = {model.rename.get(k, k): v for k, v in raw.items()}
    for t in tasks:
        if t.name not in named:
            raise UserError(f"model: the network's outputs {sorted(raw)} lack task {t.name!r}; rename an output "
                            f"with +model.outputs.<key>={t.name}")
        y = named[t.name]
        if not isinstance(y, torch.Tensor) or y.dim() != 4 or y.shape[1] != t.channels:
            shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            raise UserError(f"model: output for task {t.name!r} has shape {shape}; it needs "
                            f"[B, {t.channels}, h, w] ({t.channels} channels)")


def custom_entry(model_cfg, model: nn.Module) -> dict[str, Any]:
    """The record's description of a user's model: class path, arguments, label, parameter count."""
    target = model_cfg._target_
    return {"kind": "custom", "class": target, "args": constructor_args(model_cfg),
            "label": model_cfg.label or target.rsplit(".", 1)[-1],
            "input": getattr(model_cfg.input, "value", model_cfg.input), "outputs": dict(model_cfg.outputs or {}),
            "params_torch": sum(p.numel() for p in model.parameters())}

"""Typed schema of the Hydra config, so typos fail at compose time.

The YAML files in conf/ fill these dataclasses; `register()` stores the schema
in Hydra's ConfigStore as `config_schema`, which conf/config.yaml lists first in
its defaults. Any key that is not a field here (in a YAML file or on the command
line) is then rejected by OmegaConf before the job starts.

Each default has one home: a field that every option of its group sets is
MISSING here (the YAML files are its source); a field with a default here is
not repeated in YAML unless an option changes it.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from .attacks.config import AttackConfig
from .data.formats import FORMATS
from .errors import UserError
from .paths import conf_dir  # noqa: F401  (re-exported: the CLI and tests take it from here)
from .tasks import TASK_KINDS

# The on-disk formats (mtl_attack.data.formats) and task kinds (mtl_attack.tasks.kinds) as
# enums, so a misspelled `dataset.format` or task kind fails at compose time with the choices.
DatasetFormat = Enum("DatasetFormat", {name: name for name in FORMATS})
TaskKindName = Enum("TaskKindName", {name: name for name in TASK_KINDS})


class BackboneName(Enum):
    resnet34 = "resnet34"
    mobilenetv2 = "mobilenetv2"


def _open_mapping(values: Any):
    """An empty mapping node of str keys that accepts new keys although Hydra locks the config
    (struct), so `model.outputs={a:b}` and `dataset.tasks={...}` work as typed, not only
    `+model.outputs.a=b`."""
    from omegaconf import DictConfig

    return lambda: DictConfig({}, key_type=str, element_type=values, ref_type=Dict[str, values],
                              flags={"struct": False})


@dataclass
class SynthConfig:
    """Rendered stand-in: image size in pixels, scene counts, scene seed."""

    height: int = MISSING
    width: int = MISSING
    n_train: int = MISSING
    n_test: int = MISSING
    seed: int = 0


@dataclass
class TaskSpec:
    """One declared task: its kind and the kind's options (mtl_attack.tasks.kinds lists which
    options each kind takes; unset options keep the kind's defaults)."""

    kind: TaskKindName = MISSING
    classes: Optional[int] = None  # segmentation: number of classes
    ignore: Optional[int] = None  # segmentation (folder format): stored label of unlabelled pixels (255)
    class_weights: Optional[Any] = None  # segmentation: C loss weights, or "stored" (the format's)
    metrics: Optional[str] = None  # full | errors (depth) | loss
    negate_x_on_flip: Optional[bool] = None  # normal: mirroring negates x (true)
    invalid: Optional[float] = None  # depth (folder format): stored value of missing depth (0)
    scale: Optional[float] = None  # depth (folder format): stored units per unit (1)
    channels: Optional[int] = None  # regression: channels of the map (1)


@dataclass
class DatasetConfig:
    name: str = MISSING
    # The on-disk format (mtl_attack.data.formats): nyuv2, taskonomy, nyuv2_mtan, cityscapes, folder.
    format: DatasetFormat = MISSING
    # The tasks stored with the data, by name and kind, in model-output order.
    tasks: Dict[str, TaskSpec] = field(default_factory=_open_mapping(TaskSpec))
    # Folder with the real data (nyu_v2_3task.json or taskonomy.json inside).
    root: Optional[str] = None
    # Set for the rendered datasets: they are made on first use in the cache.
    synthetic: Optional[SynthConfig] = None
    # Side of the square network input after the test resize / train crop (pixels).
    input_size: int = MISSING
    train_split: str = "train"
    test_split: str = "test"
    # Attack only the first N test images (None: all); the data and model are unchanged.
    test_limit: Optional[int] = None
    eval_batch_size: int = 16
    # Processes that make the training batches while the model trains (0: the training process).
    # One overlaps the augmentation with the steps (10% faster training on 2 CPU cores).
    num_workers: int = 1


@dataclass
class BackboneConfig:
    name: BackboneName = MISSING
    # Channels of each task's ASPP head (the paper's: 1024).
    head_width: int = MISSING
    # Scale of every backbone channel count (1.0 = the paper's backbone; 0.25 = the CPU miniature).
    width: float = 1.0


class LayoutPreset(Enum):
    all_shared = "all_shared"
    independent = "independent"
    random = "random"


@dataclass
class LayoutConfig:
    """Which TreeMTL layout: `spec` or `index` override `preset` (not both)."""

    preset: LayoutPreset = MISSING
    index: Optional[int] = None
    spec: Optional[str] = None
    seed: int = 0  # for preset=random


@dataclass
class AdversarialConfig:
    """Adversarial training (paper Alg. 2, Sec. 4.3): train on adversarial examples made on the fly.

    The defaults are the authors' recipe (their TrainWithAdv.py): eps 8, 10 attack
    steps, each iteration one clean step then one adversarial step on the same
    batch, the attack run in eval mode. attack=None trains clean (the default).
    """

    # An attack preset (mtl_attack.attacks.presets), e.g. dgba_pgd, total_fgsm, single_normal_pgd; None: clean training.
    attack: Optional[str] = None
    # L-infinity budget in pixel units out of 255, as the top-level eps.
    eps: float = 8.0
    # Attack iterations (FGSM always takes one); step eps/steps as in the attacks.
    steps: int = 10
    # Also take a clean step before the adversarial one each iteration (the authors' default).
    clean_step: bool = True
    # FAT's early-stopped PGD (Zhang et al. 2020): a sample stops fat_tau steps after it is
    # "fooled", i.e. its mean relative loss increase over the attacked tasks reaches fat_threshold
    # (the dense-task stand-in for misclassified). Off in the authors' code.
    fat: bool = False
    fat_tau: int = 0
    fat_threshold: float = 0.5


class LRSchedule(Enum):
    step = "step"  # multiply by lr_gamma every lr_step iterations (the paper's)
    cosine = "cosine"  # linear warm-up over `warmup` iterations, then cosine decay to 0


@dataclass
class TrainConfig:
    """Adam with a learning-rate schedule; every preset (conf/train) sets the recipe."""

    name: str = MISSING
    iterations: int = MISSING
    batch_size: int = MISSING
    lr: float = MISSING
    betas: List[float] = MISSING
    weight_decay: float = MISSING
    # Multiply the learning rate by lr_gamma every lr_step iterations.
    lr_step: int = MISSING
    lr_gamma: float = MISSING
    schedule: LRSchedule = LRSchedule.step
    warmup: int = 0  # iterations of linear warm-up (cosine schedule)
    # Train in the channels-last memory format (faster convolutions on CPUs and GPUs).
    channels_last: bool = False
    # torch CPU threads while training on the CPU; null = every usable core. Fixed per machine
    # because CPU results depend on the thread count; it enters the model's cache key.
    threads: Optional[int] = None
    # Training augmentation (random scale, mirror, crop); false: train images resized as the test ones.
    augment: bool = True
    # Range of the augmentation's random scale (1 = the stored scale after the pre-scale; the
    # paper's 0.5-1.5). [1, 1] keeps every training object at its test scale (mirror and crop only).
    scale_range: List[float] = field(default_factory=lambda: [0.5, 1.5])
    adversarial: AdversarialConfig = field(default_factory=AdversarialConfig)


@dataclass
class TransferConfig:
    """Black-box transfer (paper Table 6): craft on a surrogate model, evaluate the target on the result.

    surrogate: the surrogate's layout as all_shared (AS), independent (IND), a TreeMTL
    index (e.g. 0 or "#41") or a spec "[[{0,1,2}], ...]"; None = white-box (the target itself).
    The surrogate shares the target's dataset, backbone, train config and seed.
    """

    surrogate: Optional[str] = None


class ModelInput(Enum):
    """The input convention of a user's network (mtl_attack.models.inputs); attacks stay in [0,1]."""

    unit = "unit"  # RGB in [0, 1]
    imagenet = "imagenet"  # RGB, (x - ImageNet mean) / std
    caffe_bgr = "caffe_bgr"  # the authors' DeepLab models: BGR 0-255 minus the channel means


@dataclass
class ModelConfig:
    """Which network: the TreeMTL model of `backbone` and `layout` (`_target_` null, conf/model/tree.yaml),
    or a user's nn.Module class (`_target_`, conf/model/custom.yaml); keys added with
    `+model.<name>=value` are its constructor's keyword arguments."""

    # The user's class, e.g. my_pkg.nets.MyNet; null: the TreeMTL model.
    _target_: Optional[str] = None
    # Trained weights: a state_dict, or a dict holding one under "state_dict" (mtl-attack's files).
    checkpoint: Optional[str] = None
    # The user's model: its output key -> the dataset's task name, where they differ; set key by key
    # (+model.outputs.seg=segment_semantic) or as one mapping (model.outputs={seg:segment_semantic}).
    outputs: Dict[str, str] = field(default_factory=_open_mapping(str))
    # The user's model: the input convention it expects, applied by a wrapper.
    input: ModelInput = ModelInput.unit
    # The user's model: train it with the dataset's losses (cached like any model), or attack it as loaded.
    train: bool = True
    # The user's model: its name in tables and records (default: the class name).
    label: Optional[str] = None
    # The user's model: constructor keyword arguments given in a config file (a file cannot add
    # keys to this schema) or as model.args={width:4}; `+model.<name>=value` adds one beside them.
    args: Dict[str, Any] = field(default_factory=_open_mapping(Any))


class LoggerName(Enum):
    none = "none"
    wandb = "wandb"


@dataclass
class LoggerConfig:
    name: LoggerName = MISSING
    mode: str = "offline"
    project: str = "mtl-attack"
    entity: Optional[str] = None
    group: Optional[str] = None


@dataclass
class Config:
    dataset: DatasetConfig = MISSING
    backbone: BackboneConfig = MISSING
    layout: LayoutConfig = MISSING
    attack: AttackConfig = MISSING
    train: TrainConfig = MISSING
    model: ModelConfig = field(default_factory=ModelConfig)
    logger: LoggerConfig = MISSING
    transfer: TransferConfig = field(default_factory=TransferConfig)
    # The tasks the model is built for, trained, attacked and scored on (a subset of
    # dataset.tasks, kept in the dataset's order); null: every task of the dataset.
    tasks: Optional[List[str]] = None
    # L-infinity budget in pixel units out of 255 (eps=4 means 4/255 on [0,1] images).
    eps: float = 4.0
    seed: int = 0
    # Names the output folders (outputs/<name>/..., multirun/<name>/...) and the W&B group.
    name: str = "default"
    # WeightedTotal without attack.weights: grid-search them on this many train images.
    calibration_images: int = 32
    # Rerun sweep jobs whose folder already holds a finished record.
    force: bool = False
    # Rendered data and trained models; relative paths are taken from the launch folder.
    cache_dir: str = "${oc.env:MTL_ATTACK_CACHE,.cache}"
    # auto: the GPU when there is one, else the CPU; or a torch device name (cpu, cuda, cuda:1).
    device: str = "auto"


# Budgets above this many pixel units (out of 255) are allowed but warned about: the paper
# sweeps 1-16, and 64/255 already changes an image visibly.
EPS_WARN = 64.0


def check_eps(eps, key: str = "eps") -> float:
    """The budget in pixel units (out of 255): finite and in [0, 255]; warns above EPS_WARN."""
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps) or not 0 <= eps <= 255:
        raise UserError(f"{key}={eps}: the L-infinity budget is in pixel units out of 255 and must be a "
                        "finite number from 0 to 255 (eps=4 means 4/255)")
    if eps > EPS_WARN:
        print(f"warning: {key}={eps:g} pixel units is far above the paper's budgets (1 to 16); "
              "eps=4 means 4/255", file=sys.stderr)
    return float(eps)


def eps_to_unit(eps_pixels: float) -> float:
    """A config budget in pixel units out of 255 (eps=4) as the attacks take it, in [0,1] image units."""
    return float(eps_pixels) / 255.0


# Top-level settings that do not change a job's results: they are left out of sweep job
# folder names (conf/config.yaml reads this list through the `neutral_keys` resolver) and
# a finished record made with other values of them still counts when a sweep resumes.
NEUTRAL_KEYS = ("force", "device", "cache_dir", "logger", "name")


def neutral_override_keys() -> list[str]:
    """NEUTRAL_KEYS as Hydra override keys: each key and, for a group, each of its fields."""
    from dataclasses import fields

    groups = {"logger": LoggerConfig}
    keys: list[str] = []
    for key in NEUTRAL_KEYS:
        keys.append(key)
        if key in groups:
            keys.extend(f"{key}.{f.name}" for f in fields(groups[key]))
    return keys


def job_dirname(overrides: str, limit: int = 120) -> str:
    """A job folder name from its overrides (Hydra's override_dirname), safe as one path part.

    Slashes become underscores; names over `limit` characters keep their start and
    gain a hash of the whole, so long override lists stay unique and under 255 bytes.
    """
    import hashlib

    name = (overrides or "default").replace("/", "_")
    if len(name) <= limit:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:10]
    return f"{name[: limit - 11]}-{digest}"


def register() -> None:
    """Store the schema and the attack presets in Hydra's ConfigStore, and the `job_dirname`
    resolver (idempotent)."""
    from omegaconf import OmegaConf

    # Imported here: the preset table reads the dataset registry, which reads this module.
    from .attacks.presets import register_presets
    from .data.registry import task_names

    ConfigStore.instance().store(name="config_schema", node=Config)
    register_presets(ConfigStore.instance(), task_names())
    if not OmegaConf.has_resolver("job_dirname"):
        OmegaConf.register_new_resolver("job_dirname", job_dirname)
    if not OmegaConf.has_resolver("neutral_keys"):
        OmegaConf.register_new_resolver("neutral_keys", neutral_override_keys)


register()


def compose(overrides: list[str] | None = None, return_hydra_config: bool = False):
    """Compose the job config as run.py would, without starting a job (for the CLI and tests);
    with return_hydra_config the result also holds the `hydra` node."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=conf_dir(), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=list(overrides or []),
                             return_hydra_config=return_hydra_config)


def _prefix(override) -> str:
    from hydra.core.override_parser.types import OverrideType

    return {OverrideType.ADD: "+", OverrideType.FORCE_ADD: "++", OverrideType.DEL: "~"}.get(override.type, "")


def check_command_line(args: list[str]) -> None:
    """Compose the config of a command line's overrides before Hydra does, so a wrong type or an
    unknown choice stops with one line (a UserError) instead of Hydra's message. A sweep's values
    are tried one at a time, each beside the first value of the other sweeps; Hydra's own
    settings (hydra.*) and flags are left to Hydra."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from .errors import one_line

    lines = [a for a in args if "=" in a and not a.startswith("-") and not a.lstrip("+~").startswith("hydra")]
    try:
        parsed = OverridesParser.create().parse_overrides(lines)
    except HydraException as err:
        raise UserError(one_line(err)) from None
    options = [[o.input_line] if not o.is_sweep_override() else
               [f"{_prefix(o)}{o.key_or_group}={v}" for v in o.sweep_string_iterator()] for o in parsed]
    firsts = [opts[0] for opts in options]
    trials = [firsts] + [firsts[:i] + [v] + firsts[i + 1:] for i, opts in enumerate(options) for v in opts[1:]]
    for trial in trials:
        try:
            compose(trial)
        except (HydraException, OmegaConfBaseException) as err:
            cause = err.__cause__ or err
            words = one_line(cause).split(" full_key:")[0].split(" Config search path:")[0]
            bad = next((t for t in trial if t.split("=")[0].lstrip("+~") in one_line(err)), None)
            raise UserError(f"{bad}: {words}" if bad and not words.startswith(bad) else words) from None

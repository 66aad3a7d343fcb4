"""Test-wide safety (W&B never goes online, nothing writes outside tmp folders) and shared fixtures:
one torch thread, a tiny composed config with its data, a toy multi-task model."""
import os
import tempfile

import pytest
import torch
from torch import nn

from helpers import tiny
from mtl_attack.config import compose
from mtl_attack.floats import flush_denormals
from mtl_attack.parts import prepare

flush_denormals()  # the float mode of run.py and mtl-attack, before torch starts its threads

CPU = torch.device("cpu")

_WANDB_TMP = tempfile.mkdtemp(prefix="mtl-attack-wandb-")
for _var in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_CONFIG_DIR"):
    os.environ[_var] = _WANDB_TMP
os.environ["WANDB_MODE"] = "offline"
os.environ["WANDB_SILENT"] = "true"


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """A private cache folder for rendered data and models."""
    path = tmp_path / "cache"
    monkeypatch.setenv("MTL_ATTACK_CACHE", str(path))
    return path


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """Tiny tensors: extra intra-op threads only add contention on a busy 2-core machine (up to 50x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory):
    """A cache folder shared by the in-process tests (the tiny data is rendered once)."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def tiny_cfg(tiny_cache):
    """The default config shrunk to seconds (helpers.TINY), caching into `tiny_cache`."""
    return compose(tiny(cache_dir=tiny_cache))


@pytest.fixture(scope="session")
def tiny_parts(tiny_cfg):
    """The tiny job's data splits, tasks and layout (no model: tests build the ones they need)."""
    return prepare(tiny_cfg, CPU, progress=False, with_model=False)


class ToyMTL(nn.Module):
    """A shared conv trunk (BatchNorm and Dropout, so eval mode matters) and one 1x1 head per task.

    tasks: task name -> output channels; outputs keep the input resolution.
    """

    def __init__(self, tasks: dict[str, int], width: int = 8):
        super().__init__()
        self.trunk = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                                   nn.Dropout(0.2), nn.Conv2d(width, width, 3, padding=1), nn.ReLU())
        self.heads = nn.ModuleDict({name: nn.Conv2d(width, c, 1) for name, c in tasks.items()})

    def forward(self, x):
        h = self.trunk(x)
        return {name: head(h) for name, head in self.heads.items()}


@pytest.fixture
def toy_model():
    """A seeded ToyMTL whose tasks are named like no dataset's: "seg" (4 classes) and "depth" (1 channel)."""
    torch.manual_seed(0)
    return ToyMTL({"seg": 4, "depth": 1}).eval()

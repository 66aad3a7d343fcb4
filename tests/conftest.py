"""Test-wide safety: W&B never goes online and nothing writes outside tmp folders."""
import os
import tempfile

import pytest

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

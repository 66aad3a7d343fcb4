"""Shared tiny configurations for tests (seconds, not minutes, on 2 cores)."""
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# A rendered dataset, model and attack small enough for the CPU test suite.
TINY = [
    "dataset.synthetic.n_train=12",
    "dataset.synthetic.n_test=6",
    "dataset.synthetic.height=24",
    "dataset.synthetic.width=32",
    "dataset.input_size=16",
    "dataset.eval_batch_size=6",
    "backbone.head_width=4",
    "train.iterations=3",
    "train.batch_size=4",
    "train.threads=1",  # training sets its own thread count; one keeps tiny runs fast
    "attack.steps=2",
]


def tiny(*extra: str, cache_dir: Path | None = None) -> list[str]:
    out = list(TINY) + list(extra)
    if cache_dir is not None:
        out.append(f"cache_dir={cache_dir}")
    return out


def run_cli(args: list[str], cwd: Path, env_extra: dict | None = None, timeout: int = 600):
    """Run a command of this repo in a subprocess; returns CompletedProcess (text)."""
    env = dict(os.environ)
    env.update({"WANDB_MODE": "offline", "WANDB_SILENT": "true", "PYTHONUNBUFFERED": "1",
                "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0"})
    env.update(env_extra or {})
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)

"""Where the repository's files are (a leaf: imports nothing of the package)."""
from __future__ import annotations

from pathlib import Path


def conf_dir() -> str:
    """Absolute path of the repository's conf/ folder (the package is installed editable)."""
    path = Path(__file__).resolve().parents[2] / "conf"
    if not (path / "config.yaml").is_file():
        raise FileNotFoundError(
            f"no conf/config.yaml at {path}; install mtl-attack from its repository with `pip install -e .`"
        )
    return str(path)

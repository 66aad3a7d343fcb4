"""The one atomic writer: every file the package writes goes through `write_with`.

A temp file in the destination folder is written, flushed and fsynced, then
renamed over the destination, so a reader (or a crash) never sees half a file.
Permissions follow the umask like any ordinary file (0644 by default), not the
0600 of mkstemp.
"""
from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

__all__ = ["TMP_MARK", "temp_path", "write_with", "write_bytes", "write_text", "write_json", "write_csv",
           "write_figure", "write_torch"]

# Temp files are named `.<name>.tmp-<pid>-<random>` beside their destination.
TMP_MARK = ".tmp-"


def temp_path(final_path: Path) -> Path:
    """A fresh temp path beside `final_path` (`.<name>.tmp-<pid>-<random>`)."""
    return final_path.parent / f".{final_path.name}{TMP_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}"


def write_with(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> Path:
    """Call `write(binary file)` on a temp file beside `path`, then rename it to `path`; returns `path`.

    Creates missing parent folders. On any error the temp file is removed and `path` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    # os.open with 0o666 lets the umask decide permissions (mkstemp would force 0600).
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return write_with(path, lambda f: f.write(data))


def write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    return write_bytes(path, text.encode(encoding))


def write_json(path: str | os.PathLike, data: Any, indent: int | None = 2) -> Path:
    """JSON with the given indent; values JSON cannot hold are written as their str()."""
    return write_text(path, json.dumps(data, indent=indent, default=str))


def write_csv(path: str | os.PathLike, df, index: bool = False) -> Path:
    """A pandas DataFrame as CSV, by default without its index (parquet when `path` ends in .parquet)."""
    if str(path).endswith(".parquet"):
        return write_with(path, lambda f: df.to_parquet(f, index=index))
    return write_text(path, df.to_csv(index=index))


def write_figure(path: str | os.PathLike, fig, **savefig_kwargs) -> Path:
    """A matplotlib figure, in the format its suffix names (png, pdf, svg)."""
    fmt = Path(path).suffix.lstrip(".") or "png"
    return write_with(path, lambda f: fig.savefig(f, format=fmt, **savefig_kwargs))


def write_torch(path: str | os.PathLike, obj) -> Path:
    """`torch.save(obj)`: readers see the old file or the whole new one."""
    import torch  # only the model cache needs torch here

    return write_with(path, lambda f: torch.save(obj, f))

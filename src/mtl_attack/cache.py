"""Content-keyed cache entries (rendered datasets, trained models), built once under a lock.

A cache entry is a file or folder whose name carries a hash of everything that
determines its contents. It is built once: concurrent callers serialise on a
lock file, the builder writes into a temporary path in the same folder, and the
result is renamed into place only when complete, so a path that exists is
always a finished entry.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path

from filelock import FileLock

from .atomic import TMP_MARK as _TMP_MARK

__all__ = ["content_key", "build_once"]


def content_key(obj: Mapping, length: int = 12) -> str:
    """A stable short hex hash of a JSON-serialisable mapping.

    Keys are sorted at every level, so insertion order does not matter; tuples
    and lists hash alike. `length` hex characters of the SHA-256 are returned.
    """
    if not isinstance(obj, Mapping):
        raise ValueError(f"content_key needs a mapping, got {type(obj).__name__}")
    try:
        text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ValueError(f"content_key needs plain JSON values (str, int, float, bool, None, lists, dicts): {err}") from err
    return hashlib.sha256(text.encode("ascii")).hexdigest()[:length]


def _tmp_prefix(final_path: Path) -> str:
    return f".{final_path.name}{_TMP_MARK}"


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink()
        except FileNotFoundError:
            pass


def _clean_leftovers(final_path: Path) -> None:
    # Called with the lock held: every builder of this entry holds the same lock,
    # so any temp path still lying here belongs to a build that died.
    prefix = _tmp_prefix(final_path)
    for p in final_path.parent.glob(prefix + "*"):
        _remove(p)


def build_once(final_path: str | os.PathLike, build: Callable[[Path], None]) -> Path:
    """Return `final_path`, calling `build(tmp_path)` first if it does not exist yet.

    `tmp_path` does not exist when `build` is called; build must create it (a
    file or a folder) and return. It is then renamed to `final_path`. The
    build runs under a `filelock.FileLock` on `final_path + ".lock"`, so of
    several concurrent callers (threads or processes) only the first builds and
    the others wait and reuse. If `build` raises, its temp path is removed and
    the error propagates; `final_path` stays absent. Temp paths left by a
    crashed build (named `.<name>.tmp-*`) are removed by the next builder.
    """
    final_path = Path(final_path)
    if final_path.exists():
        return final_path
    final_path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(final_path) + ".lock"):
        if final_path.exists():
            return final_path
        _clean_leftovers(final_path)
        tmp_path = final_path.parent / f"{_tmp_prefix(final_path)}{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            build(tmp_path)
            if not tmp_path.exists():
                raise RuntimeError(f"build for {final_path} returned without creating {tmp_path}")
            os.replace(tmp_path, final_path)
        except BaseException:
            _remove(tmp_path)
            raise
    return final_path

"""Content keys, build-once cache entries and atomic writes (mtl_attack.cache)."""
from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import threading
import time
from pathlib import Path

import pytest
import torch

from mtl_attack.atomic import write_bytes as atomic_write_bytes
from mtl_attack.atomic import write_text as atomic_write_text
from mtl_attack.atomic import write_torch as atomic_torch_save
from mtl_attack.cache import build_once, content_key


def test_content_key_is_sha256_of_sorted_compact_json():
    obj = {"b": [1, 2.5, None], "a": {"y": True, "x": "s"}}
    text = '{"a":{"x":"s","y":true},"b":[1,2.5,null]}'
    assert content_key(obj) == hashlib.sha256(text.encode()).hexdigest()[:12]


def test_content_key_order_independent_and_value_sensitive():
    a = {"kind": "nyuv2", "n": 3, "nested": {"p": 1, "q": 2}}
    b = {"nested": {"q": 2, "p": 1}, "n": 3, "kind": "nyuv2"}
    assert content_key(a) == content_key(b)
    assert content_key(a) != content_key({**a, "n": 4})
    assert content_key(a, length=20) == content_key(b, length=20) and len(content_key(a, length=20)) == 20


@pytest.mark.parametrize("bad", [[1, 2], {"x": object()}, {"x": float("nan")}])
def test_content_key_rejects_non_json(bad):
    with pytest.raises(ValueError):
        content_key(bad)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name)


def test_build_once_builds_file_then_reuses(tmp_path):
    calls = []

    def build(tmp: Path) -> None:
        calls.append(tmp)
        assert not tmp.exists() and tmp.parent == tmp_path
        tmp.write_text("v1")

    final = tmp_path / "entry.txt"
    assert build_once(final, build) == final
    assert build_once(final, build) == final
    assert len(calls) == 1 and final.read_text() == "v1"
    assert _leftovers(tmp_path) == []


def test_build_once_builds_directories(tmp_path):
    def build(tmp: Path) -> None:
        (tmp / "sub").mkdir(parents=True)
        (tmp / "sub" / "f.txt").write_text("x")

    final = build_once(tmp_path / "dataset", build)
    assert (final / "sub" / "f.txt").read_text() == "x"
    assert _leftovers(tmp_path) == []


def test_failed_build_leaves_nothing_and_next_call_builds(tmp_path):
    final = tmp_path / "entry"

    def broken(tmp: Path) -> None:
        tmp.mkdir()
        (tmp / "half").write_text("partial")
        raise RuntimeError("crash mid-build")

    with pytest.raises(RuntimeError, match="crash mid-build"):
        build_once(final, broken)
    assert not final.exists() and _leftovers(tmp_path) == []
    build_once(final, lambda tmp: tmp.mkdir())
    assert final.is_dir()


def test_build_that_creates_nothing_is_an_error(tmp_path):
    with pytest.raises(RuntimeError, match="without creating"):
        build_once(tmp_path / "entry", lambda tmp: None)
    assert not (tmp_path / "entry").exists()


def test_leftover_temp_of_a_crashed_build_is_cleaned_and_ignored(tmp_path):
    final = tmp_path / "entry"
    crashed = tmp_path / ".entry.tmp-999-deadbeef"
    crashed.mkdir()
    (crashed / "half").write_text("partial")
    build_once(final, lambda tmp: tmp.write_text("done"))
    assert final.read_text() == "done" and not crashed.exists()


def test_concurrent_threads_build_once(tmp_path):
    final = tmp_path / "entry.txt"
    builds = []
    barrier = threading.Barrier(3)
    results = []

    def build(tmp: Path) -> None:
        builds.append(1)
        time.sleep(0.2)  # long enough for the others to reach the lock
        tmp.write_text("built")

    def worker() -> None:
        barrier.wait()
        results.append(build_once(final, build))

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(builds) == 1 and results == [final] * 3 and final.read_text() == "built"


def _process_build(final: str, log: str, start) -> None:
    def build(tmp: Path) -> None:
        with open(log, "a") as f:
            f.write("built\n")
        time.sleep(0.3)
        tmp.write_text("ok")

    start.wait()
    build_once(Path(final), build)


def test_concurrent_processes_build_once(tmp_path):
    ctx = mp.get_context("fork")
    final, log = tmp_path / "entry.txt", tmp_path / "log.txt"
    start = ctx.Event()
    procs = [ctx.Process(target=_process_build, args=(str(final), str(log), start)) for _ in range(2)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(30)
    assert [p.exitcode for p in procs] == [0, 0]
    assert log.read_text() == "built\n" and final.read_text() == "ok"


def test_atomic_writes_replace_content_without_temp_files(tmp_path):
    p = tmp_path / "deep" / "f.bin"
    atomic_write_bytes(p, b"\x00\x01")
    assert p.read_bytes() == b"\x00\x01"
    atomic_write_text(p, "h\u00e9llo")
    assert p.read_text(encoding="utf-8") == "h\u00e9llo"
    assert _leftovers(p.parent) == []


def test_atomic_torch_save_round_trip_and_failure_keeps_old_file(tmp_path):
    p = tmp_path / "ckpt.pt"
    atomic_torch_save(p, {"w": torch.arange(3.0)})
    assert torch.equal(torch.load(p, weights_only=True)["w"], torch.arange(3.0))
    with pytest.raises(Exception):
        atomic_torch_save(p, {"f": lambda: 0})  # lambdas cannot be pickled
    assert torch.equal(torch.load(p, weights_only=True)["w"], torch.arange(3.0))
    assert _leftovers(tmp_path) == []


def test_json_round_trip_of_key_contents_is_what_is_hashed():
    # The key covers exactly the JSON form: a tuple and a list give the same key.
    assert content_key({"s": (1, 2)}) == content_key({"s": [1, 2]})
    assert json.loads(json.dumps({"s": (1, 2)})) == {"s": [1, 2]}

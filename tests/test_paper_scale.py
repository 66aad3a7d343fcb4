"""The paper-scale path users take on GPUs, run end to end on a few real-format files: the paper's
DeepLab-ResNet34 at width 1 with 1024-wide heads, the paper's input size and training recipe
(two iterations), a two-step attack. About 75 s on 2 CPU cores (README, Set up); marked `slow`."""
import json

import numpy as np
import pytest

from helpers import REPO, run_cli
from mtl_attack.data import formats

pytestmark = pytest.mark.slow


def _normals(rng, h, w):
    n = rng.normal(size=(h, w, 3))
    n[..., 2] = -np.abs(n[..., 2]) - 0.5  # facing the camera
    return n / np.linalg.norm(n, axis=-1, keepdims=True)


def write_nyuv2(root, n_train=2, n_test=2, h=480, w=640):
    """AdaShare's NYUv2 layout at its real size (480x640): PNGs, depth .npy and the split json."""
    rng = np.random.default_rng(0)
    splits = {"train": [], "test": []}
    for split, n in (("train", n_train), ("test", n_test)):
        for i in range(n):
            seg = rng.integers(0, 40, (h, w)).astype(np.uint8)
            seg[:8] = 255
            splits[split].append(formats.write_nyuv2_sample(
                str(root), f"{split}{i}", rng.integers(0, 256, (h, w, 3), dtype=np.uint8), seg,
                _normals(rng, h, w), np.ones((h, w), bool), rng.uniform(0.5, 8.0, (h, w)).astype(np.float32)))
    formats.write_split_json(str(root), "nyuv2", splits)
    return root


def write_taskonomy(root, n_train=2, n_test=2, h=256, w=256):
    """TreeMTL's Tiny-Taskonomy layout (256x256 maps, the split json, the class weights)."""
    rng = np.random.default_rng(1)
    splits = {"train": [], "test": []}
    for split, n in (("train", n_train), ("test", n_test)):
        for i in range(n):
            splits[split].append(formats.write_taskonomy_sample(
                str(root), f"{split}{i}", rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
                rng.integers(0, 17, (h, w)).astype(np.uint8), _normals(rng, h, w),
                rng.uniform(0.5, 8.0, (h, w)), np.ones((h, w), bool), rng.uniform(-1, 1, (h, w)),
                rng.uniform(-1, 1, (h, w))))
    splits["test_small"] = splits["test"][:1]
    formats.write_split_json(str(root), "taskonomy", splits)
    formats.write_semseg_prior(str(root), [1.0] * 17)
    return root


def _run(tmp_path, *overrides):
    args = [str(REPO / "run.py"), "backbone=resnet34", "train=paper", "attack.steps=2", "logger=none",
            "train.threads=2", f"cache_dir={tmp_path / 'cache'}", "hydra.run.dir=job", *overrides]
    out = run_cli(args, cwd=tmp_path, env_extra={"OMP_NUM_THREADS": "2"}, timeout=1800)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads((tmp_path / "job" / "record.json").read_text())


def test_nyuv2_at_paper_scale(tmp_path):
    root = write_nyuv2(tmp_path / "nyu")
    rec = _run(tmp_path, "dataset=nyuv2", f"dataset.root={root}", "train.iterations=2", "train.batch_size=2",
               "dataset.eval_batch_size=2")
    assert rec["status"] == "done"
    assert rec["config"]["dataset"]["input_size"] == 321 and rec["config"]["backbone"]["head_width"] == 1024
    assert rec["model"]["params_paper_M"] == pytest.approx(21.28, abs=0.01)  # the paper's AS #Params
    assert list(rec["arp"]["per_task"]) == ["segment_semantic", "normal", "depth_zbuffer"]
    assert rec["stats"]["images"] == 2 and np.isfinite(rec["arp"]["overall"])


def test_taskonomy_at_paper_scale(tmp_path):
    root = write_taskonomy(tmp_path / "tk")
    rec = _run(tmp_path, "dataset=taskonomy", f"dataset.root={root}", "train.iterations=1", "train.batch_size=2",
               "dataset.eval_batch_size=2")
    assert rec["status"] == "done"
    assert rec["config"]["dataset"]["input_size"] == 224
    assert list(rec["arp"]["per_task"]) == ["segment_semantic", "normal", "depth_zbuffer", "keypoints2d",
                                            "edge_texture"]

"""The user's own data: `dataset=folder` with declared tasks, its reader, its checks, and a run on it."""
import json

import numpy as np
import pytest
from PIL import Image

from helpers import REPO, run_cli
from mtl_attack.config import compose
from mtl_attack.data import build_dataset
from mtl_attack.data.build import check_files
from mtl_attack.data.formats import FORMATS
from mtl_attack.data.registry import selected_tasks
from mtl_attack.errors import UserError

TASKS = "dataset.tasks={seg:{kind:segmentation,classes:3},depth:{kind:depth,scale:1000},edges:{kind:regression}}"
SPECS = {"seg": {"kind": "segmentation", "classes": 3}, "depth": {"kind": "depth", "scale": 1000.0},
         "edges": {"kind": "regression"}}


def write_folder(root, n_train=6, n_test=4, h=12, w=16, seed=0):
    """A folder dataset: PNG pictures, 8-bit label PNGs (3 classes, 255 unlabelled), 16-bit
    millimetre depth PNGs (0 = missing) and 8-bit edge PNGs. Returns root."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        for d in ("image", "seg", "depth", "edges"):
            (root / split / d).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            stem = f"img{i:03d}"
            image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            seg = np.zeros((h, w), np.uint8)
            seg[:, w // 2:] = 1
            seg[: h // 3] = 2
            seg[0, 0] = 255
            depth = (1000 + 100 * np.arange(w))[None].repeat(h, 0).astype(np.uint16)
            depth[-1, -1] = 0
            Image.fromarray(image).save(root / split / "image" / f"{stem}.png")
            Image.fromarray(seg).save(root / split / "seg" / f"{stem}.png")
            Image.fromarray(depth).save(root / split / "depth" / f"{stem}.png")
            Image.fromarray(np.full((h, w), 51, np.uint8)).save(root / split / "edges" / f"{stem}.png")
    return root


def _cfg(root, *extra):
    return compose(["dataset=folder", f"dataset.root={root}", TASKS, *extra])


def test_the_folder_reader_decodes_each_kind_with_its_options(tmp_path):
    root = write_folder(tmp_path / "mine")
    listing = FORMATS["folder"].list_split(str(root), "test", SPECS)
    assert len(listing.entries) == 4 and listing.entries[0] == [
        "test/image/img000.png", "test/seg/img000.png", "test/depth/img000.png", "test/edges/img000.png"]
    sample = FORMATS["folder"].read(str(root), listing.entries[0], "test", listing.source, SPECS)
    seg, depth, edges = (sample["targets"][t] for t in ("seg", "depth", "edges"))
    assert seg[0, 0] == 255 and not sample["valid"]["seg"][0, 0] and seg[-1, -1] == 1 and seg[0, 1] == 2
    assert depth[0, 0] == pytest.approx(1.0) and depth[0, 3] == pytest.approx(1.3)  # millimetres / 1000
    assert depth[-1, -1] == 0 and not sample["valid"]["depth"][-1, -1]
    assert edges[0, 0] == pytest.approx(51 / 255)
    item = build_dataset("folder", str(root), "test", SPECS, input_size=12)[0]
    assert item["image"].shape == (3, 12, 12) and item["targets"]["depth"].shape == (1, 12, 12)
    assert item["targets"]["seg"].dtype.is_floating_point is False


def test_preflight_reads_every_file_of_both_splits(tmp_path):
    root = write_folder(tmp_path / "mine")
    cfg = _cfg(root)
    assert check_files(cfg.dataset, selected_tasks(cfg)) == (6 + 4) * 4


@pytest.mark.parametrize("damage, words", [
    (lambda r: (r / "train/depth/img002.png").unlink(), "train/depth/img002.png or .npy does not exist"),
    (lambda r: Image.fromarray(np.zeros((12, 16), np.uint8)).save(r / "test/seg/extra.png"),
     "test/seg/extra.png has no picture in"),
    (lambda r: (r / "test/edges/img001.png").write_bytes(b"not a png"), "test/edges/img001.png cannot be read"),
    (lambda r: Image.fromarray(np.zeros((10, 16), np.uint8)).save(r / "train/seg/img005.png"),
     "train/seg/img005.png is 10x16 but its picture"),
    (lambda r: Image.fromarray(np.full((12, 16), 7, np.uint8)).save(r / "test/seg/img003.png"),
     "test/seg/img003.png holds label 7, outside the declared classes 0-2"),
    (lambda r: (r / "test/notes.txt").write_text("x") and (r / "test/image/notes.txt").write_text("x"),
     "test/image/notes.txt is not a .png or .jpg or .jpeg or .npy file"),
])
def test_a_bad_file_stops_preflight_in_one_line_naming_it(tmp_path, damage, words):
    root = write_folder(tmp_path / "mine")
    damage(root)
    cfg = _cfg(root)
    with pytest.raises(UserError) as err:
        check_files(cfg.dataset, selected_tasks(cfg))
    assert words in str(err.value) and "\n" not in str(err.value)


def test_a_folder_dataset_without_declared_tasks_is_refused_with_how_to_declare_them(tmp_path):
    root = write_folder(tmp_path / "mine")
    out = run_cli([str(REPO / "run.py"), "dataset=folder", f"dataset.root={root}", "logger=none",
                   f"cache_dir={tmp_path / 'cache'}"], cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "declares no tasks" in lines[0] and "dataset.tasks={" in lines[0]


def test_a_two_output_user_model_trains_and_is_attacked_on_a_folder_dataset(tmp_path):
    root = write_folder(tmp_path / "mine", n_train=8, n_test=4, h=16, w=16)
    args = [str(REPO / "run.py"), "dataset=folder", f"dataset.root={root}",
            "dataset.tasks={seg:{kind:segmentation,classes:3},depth:{kind:depth,scale:1000}}",
            "dataset.input_size=16", "dataset.eval_batch_size=4", "model=custom", "model._target_=user_nets.TwoTask",
            "model.args={width:4}", "train.iterations=3", "train.batch_size=4", "train.threads=1", "attack.steps=2",
            "logger=none", f"cache_dir={tmp_path / 'cache'}", "hydra.run.dir=job"]
    out = run_cli(args, cwd=tmp_path, env_extra={"PYTHONPATH": str(REPO / "tests")})
    assert out.returncode == 0, out.stderr[-2000:]
    rec = json.loads((tmp_path / "job" / "record.json").read_text())
    assert rec["status"] == "done"
    assert list(rec["arp"]["per_task"]) == ["seg", "depth"]
    per_task = rec["arp"]["per_task"]
    assert rec["arp"]["overall"] == pytest.approx((per_task["seg"] + per_task["depth"]) / 2)
    assert set(rec["metrics"]["clean"]["depth"]) == {"abs_err", "rel_err", "delta_1", "delta_2", "delta_3"}

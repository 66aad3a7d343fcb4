"""Cityscapes as MTAN / LibMTL store it, and its rendered stand-in (rooms in Cityscapes' format)."""
import numpy as np
import pytest

from helpers import tiny
from mtl_attack.config import compose
from mtl_attack.data import build_dataset
from mtl_attack.data.formats import FORMATS, cityscapes
from mtl_attack.data.labels import NYU40_CLASSES, ROOM7_CLASSES, nyu40_to_room7
from mtl_attack.data.registry import config_task_specs
from mtl_attack.pipeline import Job, run

SPECS = config_task_specs("cityscapes")


def _write(root, split, n, h=4, w=8):
    for i in range(n):
        image = np.full((h, w, 3), i / 10, np.float32)
        label = np.arange(h * w).reshape(h, w) % 7
        label[0, 0] = -1
        depth = np.linspace(0.0, 2.0, h * w, dtype=np.float32).reshape(h, w)  # depth[0, 0] = 0: invalid
        cityscapes.LAYOUT.write(str(root), split, i, image, label, depth)


def test_the_reader_maps_ignored_labels_and_invalid_depth(tmp_path):
    _write(tmp_path, "val", 2)
    listing = FORMATS["cityscapes"].list_split(str(tmp_path), "val", SPECS)
    assert listing.entries[1] == ["val/image/1.npy", "val/label/1.npy", "val/depth/1.npy"]
    sample = FORMATS["cityscapes"].read(str(tmp_path), listing.entries[1], "val", listing.source, SPECS)
    seg, depth = sample["targets"]["segmentation"], sample["targets"]["depth"]
    assert seg[0, 0] == 255 and not sample["valid"]["segmentation"][0, 0]
    assert seg[0, 1:].tolist() == [1, 2, 3, 4, 5, 6, 0]
    assert not sample["valid"]["depth"][0, 0] and depth[-1, -1] == pytest.approx(2.0)
    assert np.asarray(sample["image"]).max() == pytest.approx(0.1)
    item = build_dataset("cityscapes", str(tmp_path), "val", SPECS, input_size=4)[0]
    assert set(item["targets"]) == {"segmentation", "depth"}


@pytest.mark.parametrize("damage, words", [
    (lambda r: (r / "val/depth/1.npy").unlink(), "has no 1.npy, which"),
    (lambda r: np.save(r / "val/label/0.npy", np.full((4, 8), 9.0, np.float32)), "holds label 9.0; expected classes 0-6"),
])
def test_bad_files_are_named(tmp_path, damage, words):
    _write(tmp_path, "val", 2)
    damage(tmp_path)
    with pytest.raises((ValueError, FileNotFoundError)) as err:
        listing = FORMATS["cityscapes"].list_split(str(tmp_path), "val", SPECS)
        for entry in listing.entries:
            FORMATS["cityscapes"].read(str(tmp_path), entry, "val", listing.source, SPECS)
    assert words in str(err.value)


def test_the_stand_in_groups_nyu40_into_seven_room_classes():
    seg = np.array([[NYU40_CLASSES.index(n) for n in ("floor", "wall", "ceiling", "bed", "chair", "books",
                                                         "person")] + [255]], np.uint8)
    assert nyu40_to_room7(seg).tolist() == [[0, 1, 2, 3, 4, 5, 6, -1]]
    assert len(ROOM7_CLASSES) == 7


def test_a_tiny_job_on_the_cityscapes_stand_in(tmp_path):
    cfg = compose(tiny("dataset=synth_rooms_cityscapes", "dataset.synthetic.width=48", "logger=none",
                       cache_dir=tmp_path / "cache"))
    rec = run(cfg, Job(tmp_path / "job", "cs", "cs"), progress=False)
    assert rec["status"] == "done", rec["error"]
    assert list(rec["arp"]["per_task"]) == ["segmentation", "depth"]
    assert set(rec["metrics"]["clean"]["depth"]) == {"abs_err", "rel_err"}
    root = next((tmp_path / "cache" / "data").glob("synthetic-cityscapes-*"))
    assert len(list((root / "val" / "label").glob("*.npy"))) == 6

"""Known-answer tests of the NYUv2 (AdaShare's and MTAN's copies) / Tiny-Taskonomy on-disk formats and datasets.

Tiny hand-made samples (24x32, twelve 8x8 blocks, one value per block) are
written with the writers and read back through the readers and datasets.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from mtl_attack import tasks as T
from mtl_attack.data import build_dataset, formats
from mtl_attack.data.datasets import (
    augment_sample,
    bilinear_resize,
    flip_sample,
    nearest_resize,
    pad_crop_sample,
    resize_sample,
    sample_to_tensors,
    train_prescale_factor,
)
from mtl_attack.data.registry import config_task_specs

# The declared tasks (name -> options) each format is read with: those of its dataset config.
NYU = config_task_specs("nyuv2")
TK = config_task_specs("taskonomy")
MTAN = config_task_specs("nyuv2_mtan")
SPECS = {"nyuv2": NYU, "taskonomy": TK, "nyuv2_mtan": MTAN}


def kinds_of(specs: dict) -> dict:
    """task -> (TaskKind, options), as the geometry functions take them."""
    return {t: (T.TASK_KINDS[o["kind"]], o) for t, o in specs.items()}


def nyu_tensors(root: str, paths, tasks=tuple(NYU)):
    """A read NYUv2 sample as (image, targets, masks) tensors at the stored size."""
    return sample_to_tensors(formats.nyuv2.sample_from_decoded(formats.read_nyuv2_sample(root, paths)), tasks)

H, W, B = 24, 32, 8  # image size and block side: 3 x 4 blocks, block k = row * 4 + col
NB = (H // B) * (W // B)
VOID_BLOCK, BAD_NORMAL_BLOCK, BAD_DEPTH_BLOCK = 5, 6, 7


def block_map() -> np.ndarray:
    """[H,W] int block index of every pixel."""
    r = np.arange(H)[:, None] // B
    c = np.arange(W)[None, :] // B
    return r * (W // B) + c


COLOURS = np.array([(20 + 15 * k, 200 - 10 * k, 50 + 7 * k) for k in range(NB)], np.uint8)
NORMALS = np.array([((k % 4 - 1.5) / 2, (k // 4 - 1) / 2, 1.0) for k in range(NB)], np.float64)
NORMALS /= np.linalg.norm(NORMALS, axis=1, keepdims=True)
DEPTHS = np.array([0.5 + 0.25 * k for k in range(NB)], np.float32)
DEPTHS[BAD_DEPTH_BLOCK] = 0.0
NYU_CLASSES = np.array([(3 * k) % 40 for k in range(NB)])
NYU_CLASSES[VOID_BLOCK] = 255
TK_CLASSES = np.array([k % 17 for k in range(NB)])
TK_CLASSES[VOID_BLOCK] = 255
KEYPOINTS = np.array([-1 + 2 * k / (NB - 1) for k in range(NB)])
EDGES = -KEYPOINTS


def nyu_arrays(shift: int = 0):
    k = (block_map() + shift) % NB
    rgb = COLOURS[k]
    seg = NYU_CLASSES[k].astype(np.uint8)
    normal = NORMALS[k].astype(np.float32)
    normal_valid = k != BAD_NORMAL_BLOCK
    depth = DEPTHS[k]
    return rgb, seg, normal, normal_valid, depth


def tk_arrays(shift: int = 0):
    k = (block_map() + shift) % NB
    return (
        COLOURS[k],
        TK_CLASSES[k].astype(np.uint8),
        NORMALS[k].astype(np.float32),
        DEPTHS[k],
        k != BAD_DEPTH_BLOCK,
        KEYPOINTS[k].astype(np.float32),
        EDGES[k].astype(np.float32),
    )


@pytest.fixture()
def nyu_root(tmp_path):
    root = str(tmp_path / "nyu")
    splits = {"train": [], "test": []}
    for i, split in enumerate(["train", "train", "test", "test"]):
        splits[split].append(formats.write_nyuv2_sample(root, f"{i:04d}", *nyu_arrays(shift=i)))
    formats.write_split_json(root, "nyuv2", splits)
    return root


@pytest.fixture()
def tk_root(tmp_path):
    root = str(tmp_path / "tk")
    splits = {"train": [], "test": [], "test_small": []}
    for i, split in enumerate(["train", "train", "test", "test"]):
        splits[split].append(formats.write_taskonomy_sample(root, f"s{i}", *tk_arrays(shift=i)))
    splits["test_small"] = splits["test"][:1]
    formats.write_split_json(root, "taskonomy", splits)
    formats.write_semseg_prior(root, np.linspace(0.5, 2.0, 17))
    return root


# --------------------------------------------------------------------------- files and readers


def test_nyuv2_layout_and_raw_encoding(nyu_root):
    with open(os.path.join(nyu_root, "nyu_v2_3task.json")) as f:
        splits = json.load(f)
    assert splits["test"][0] == ["img/0002.png", "seg/0002.png", "normal_mask/0002.png", "depth/0002.npy"]
    assert len(splits["train"]) == 2
    k = block_map() + 2
    raw = np.array(Image.open(os.path.join(nyu_root, "normal_mask/0002.png")))
    assert (raw[k % NB == BAD_NORMAL_BLOCK] == 255).all()  # invalid -> white
    want = np.rint((NORMALS[0] + 1) / 2 * 255)  # block 0 sits where k == 0 (mod NB)
    assert (raw[k % NB == 0] == want).all()
    assert Image.open(os.path.join(nyu_root, "seg/0002.png")).mode == "L"
    assert np.load(os.path.join(nyu_root, "depth/0002.npy")).dtype == np.float32


def test_nyuv2_reader_known_values(nyu_root):
    with open(os.path.join(nyu_root, "nyu_v2_3task.json")) as f:
        paths = json.load(f)["test"][0]
    d = formats.read_nyuv2_sample(nyu_root, paths)
    rgb, seg, normal, normal_valid, depth = nyu_arrays(shift=2)
    assert (d["image"] == rgb).all()
    assert (d["seg"] == seg).all() and (d["seg"] == 255).any()
    assert (d["normal_valid"] == normal_valid).all() and not normal_valid.all()
    assert np.abs(d["normal"][normal_valid] - normal[normal_valid]).max() < 0.01
    assert (d["normal"][~normal_valid] == 0).all()
    assert np.allclose(np.linalg.norm(d["normal"][normal_valid], axis=-1), 1, atol=1e-6)
    assert (d["depth"] == depth).all()  # npy float32: exact
    assert (d["depth_valid"] == (depth > 3e-5)).all() and not d["depth_valid"].all()


def test_taskonomy_raw_encoding_and_reader(tk_root):
    with open(os.path.join(tk_root, "taskonomy.json")) as f:
        paths = json.load(f)["test"][0]
    assert paths == [f"{d}/s2.png" for d in formats.TASKONOMY_DIRS]
    k = (block_map() + 2) % NB
    seg_raw = np.array(Image.open(os.path.join(tk_root, paths[1])))
    assert (seg_raw == np.where(k == VOID_BLOCK, 0, TK_CLASSES[k] + 1)).all()
    dep_im = Image.open(os.path.join(tk_root, paths[3]))
    assert dep_im.mode == "I;16"
    dep_raw = np.array(dep_im)
    assert (dep_raw[k == BAD_DEPTH_BLOCK] == 65535).all()
    assert dep_raw[k == 0][0] == 256  # 0.5 m * 512

    d = formats.read_taskonomy_sample(tk_root, paths)
    rgb, seg, normal, depth_m, depth_valid, kp, ed = tk_arrays(shift=2)
    assert (d["image"] == rgb).all()
    assert (d["seg"] == seg).all() and (d["seg"] == 255).any()
    for blk in range(NB):
        px = k == blk
        if blk == BAD_DEPTH_BLOCK:
            assert not d["depth_valid"][px].any() and (d["depth"][px] == 0).all()
            assert not d["normal_valid"][px].any()  # normal mask = depth mask
            continue
        raw = round(float(DEPTHS[blk]) * 512)
        assert np.allclose(d["depth"][px], math.log(1 + raw) / math.log(2**16), rtol=0, atol=1e-7)
    assert (d["normal_valid"] == depth_valid).all()
    assert np.abs(d["normal"][depth_valid] - normal[depth_valid]).max() < 0.01
    assert np.abs(d["keypoints2d"] - kp).max() <= 1 / (0.005 * 2**16) + 1e-6  # half a 16-bit step
    assert np.abs(d["edge_texture"] - ed).max() <= 1 / (0.08 * 2**16) + 1e-6
    assert d["keypoints2d"].min() == -1 and d["keypoints2d"].max() == 1


def test_grey_and_white_normals_are_invalid(tmp_path):
    """AdaShare's grey (127 / 128) normal pixels decode to ~zero vectors: invalid, like white."""
    raw = np.array([[[255, 255, 255], [127, 127, 127]], [[128, 128, 128], [204, 128, 230]]], np.uint8)
    v = np.array([204 * 2 - 255, 128 * 2 - 255, 230 * 2 - 255]) / 255.0  # (0.6, 1/255, 205/255)
    want = v / np.linalg.norm(v)
    normal, valid = formats.decode_normal_png(raw)
    assert valid.tolist() == [[False, False], [False, True]]
    assert (normal[~valid] == 0).all() and np.allclose(normal[1, 1], want, atol=1e-6)
    # Taskonomy decoding (white not special): only the greys drop out
    normal, valid = formats.decode_normal_png(raw, white_is_invalid=False)
    assert valid.tolist() == [[True, False], [False, True]]
    assert np.allclose(normal[0, 0], np.full(3, 3**-0.5), atol=1e-6) and (normal[~valid] == 0).all()
    # the same through a PNG file and the NYUv2 reader
    root = str(tmp_path)
    paths = formats.write_nyuv2_sample(root, "g", np.zeros((2, 2, 3), np.uint8), np.zeros((2, 2), np.uint8),
                                       np.zeros((2, 2, 3), np.float32), np.zeros((2, 2), bool), np.ones((2, 2), np.float32))
    Image.fromarray(raw).save(os.path.join(root, paths[2]))
    d = formats.read_nyuv2_sample(root, paths)
    assert d["normal_valid"].tolist() == [[False, False], [False, True]]
    assert (d["normal"][~d["normal_valid"]] == 0).all() and np.allclose(d["normal"][1, 1], want, atol=1e-6)


def test_clipped_16bit_codec_known_answers():
    raw = np.array([0, 164, 328, 1000, 65535], np.uint16)
    out = formats.decode_clipped_16bit(raw, 0.005)
    assert out[0] == -1 and out[2] == 1 and out[3] == 1 and out[4] == 1  # clipped above 0.005
    assert abs(out[1] - (164 / 65536 / 0.005 * 2 - 1)) < 1e-6
    t = np.linspace(-1, 1, 9)
    assert np.abs(formats.decode_clipped_16bit(formats.encode_clipped_16bit(t, 0.08), 0.08) - t).max() < 2e-4


def test_semseg_prior_roundtrip(tk_root):
    w = formats.read_semseg_prior(tk_root)
    assert w.dtype == np.float32 and w.shape == (17,)
    assert np.allclose(w, np.linspace(0.5, 2.0, 17))
    with pytest.raises(ValueError, match="17"):
        formats.write_semseg_prior(tk_root, [1.0] * 16)


# --------------------------------------------------------------------------- datasets, test mode


def test_nyuv2_test_items_resize_to_input_size(nyu_root):
    ds = build_dataset("nyuv2", nyu_root, "test", NYU, input_size=16)
    assert len(ds) == 2 and ds.tasks == ("segment_semantic", "normal", "depth_zbuffer") and ds.class_weights is None
    item = ds[0]
    S = 16
    assert item["image"].shape == (3, S, S) and item["image"].dtype == torch.float32
    t, m = item["targets"], item["masks"]
    assert t["segment_semantic"].shape == (S, S) and t["segment_semantic"].dtype == torch.int64
    assert t["normal"].shape == (3, S, S) and t["depth_zbuffer"].shape == (1, S, S)
    assert all(v.shape == (S, S) and v.dtype == torch.bool for v in m.values())
    # labels: nearest with source index floor(dst * in / out)
    iy = np.floor(np.arange(S) * H / S).astype(int)
    ix = np.floor(np.arange(S) * W / S).astype(int)
    rgb, seg, normal, normal_valid, depth = nyu_arrays(shift=2)
    assert (t["segment_semantic"].numpy() == seg[np.ix_(iy, ix)]).all()
    assert (m["segment_semantic"].numpy() == (seg[np.ix_(iy, ix)] != 255)).all()
    assert (m["normal"].numpy() == normal_valid[np.ix_(iy, ix)]).all()
    assert (t["depth_zbuffer"][0].numpy() == depth[np.ix_(iy, ix)]).all()
    nv = m["normal"].numpy()
    got = t["normal"].permute(1, 2, 0).numpy()
    assert np.abs(got[nv] - normal[np.ix_(iy, ix)][nv]).max() < 0.01 and (got[~nv] == 0).all()
    # image: bilinear (half-pixel centres); where both source neighbours lie in one block it is that colour
    k = (block_map() + 2) % NB
    sy, sx = (np.arange(S) + 0.5) * H / S - 0.5, (np.arange(S) + 0.5) * W / S - 0.5
    checked = 0
    for i in range(S):
        for j in range(S):
            ys = {int(np.clip(np.floor(sy[i]), 0, H - 1)), int(np.clip(np.ceil(sy[i]), 0, H - 1))}
            xs = {int(np.clip(np.floor(sx[j]), 0, W - 1)), int(np.clip(np.ceil(sx[j]), 0, W - 1))}
            blocks = {k[y, x] for y in ys for x in xs}
            if len(blocks) == 1:
                want = COLOURS[blocks.pop()] / 255.0
                assert np.allclose(item["image"][:, i, j].numpy(), want, atol=1e-6)
                checked += 1
    assert checked > S * S // 2


def test_nyuv2_default_input_size_is_321(nyu_root):
    assert build_dataset("nyuv2", nyu_root, "test", NYU)[1]["image"].shape == (3, 321, 321)


def test_taskonomy_test_items_and_collate(tk_root):
    ds = build_dataset("taskonomy", tk_root, "test", TK, input_size=16)
    assert ds.base_size == 18  # round(16 * 256 / 224)
    assert torch.allclose(ds.class_weights, torch.linspace(0.5, 2.0, 17))
    assert len(build_dataset("taskonomy", tk_root, "test_small", TK, input_size=16)) == 1
    batch = next(iter(DataLoader(ds, batch_size=2)))
    assert batch["image"].shape == (2, 3, 16, 16)
    assert batch["targets"]["keypoints2d"].shape == (2, 1, 16, 16)
    assert batch["masks"]["edge_texture"].shape == (2, 16, 16) and batch["masks"]["edge_texture"].all()
    # labels pass two nearest resizes: 24x32 -> 18x18 -> 16x16
    iy = np.floor(np.arange(18) * H / 18).astype(int)[np.floor(np.arange(16) * 18 / 16).astype(int)]
    ix = np.floor(np.arange(18) * W / 18).astype(int)[np.floor(np.arange(16) * 18 / 16).astype(int)]
    k = ((block_map() + 2) % NB)[np.ix_(iy, ix)]
    t, m = batch["targets"], batch["masks"]
    assert (t["segment_semantic"][0].numpy() == TK_CLASSES[k]).all()
    valid = k != BAD_DEPTH_BLOCK
    assert (m["depth_zbuffer"][0].numpy() == valid).all() and (m["normal"][0].numpy() == valid).all()
    raw = np.rint(DEPTHS[k] * 512)
    want = np.where(valid, np.log1p(raw) / np.log(2**16), 0)
    assert np.allclose(t["depth_zbuffer"][0, 0].numpy(), want, atol=1e-7)
    assert np.abs(t["edge_texture"][0, 0].numpy() - EDGES[k]).max() < 2e-4


def test_taskonomy_paths_relative_to_split_folder(tmp_path):
    """TreeMTL lists Taskonomy paths relative to root/train or root/test."""
    root = str(tmp_path / "tk2")
    rel = formats.write_taskonomy_sample(os.path.join(root, "test"), "a", *tk_arrays())
    formats.write_split_json(root, "taskonomy", {"train": [], "test": [rel], "test_small": []})
    formats.write_semseg_prior(root, np.ones(17))
    item = build_dataset("taskonomy", root, "test", TK, input_size=8)[0]
    assert item["image"].shape == (3, 8, 8)


# --------------------------------------------------------------------------- datasets, train mode


def identify_blocks(image: torch.Tensor) -> np.ndarray:
    """Block index of each pixel whose colour is exactly a block colour, else -1."""
    img = np.rint(image.permute(1, 2, 0).numpy() * 255).astype(int)
    exact = np.abs(image.permute(1, 2, 0).numpy() * 255 - img).max(-1) < 1e-3
    out = np.full(img.shape[:2], -1)
    for blk in range(NB):
        out[exact & (img == COLOURS[blk]).all(-1)] = blk
    return out


def test_train_augmentation_keeps_alignment_and_flips_normals(nyu_root):
    S = 20
    ds = build_dataset("nyuv2", nyu_root, "train", NYU, input_size=S, augment=True, seed=3)
    flips = set()
    for epoch in range(8):
        ds.set_epoch(epoch)
        for idx in range(len(ds)):
            item = ds[idx]
            assert item["image"].shape == (3, S, S)
            rng = np.random.default_rng((3, epoch, idx))  # documented draw order: scale, flip, ...
            rng.random()
            flipped = rng.random() > 0.5
            flips.add(flipped)
            blk = identify_blocks(item["image"])
            seen = blk >= 0
            assert seen.sum() > 20
            t, m = item["targets"], item["masks"]
            seg = t["segment_semantic"].numpy()
            assert (seg[seen] == NYU_CLASSES[blk[seen]]).all()
            assert (t["depth_zbuffer"][0].numpy()[seen] == DEPTHS[blk[seen]]).all()
            nv = seen & m["normal"].numpy()
            want = NORMALS[blk[nv]].copy()
            if flipped:
                want[:, 0] *= -1
            got = t["normal"].permute(1, 2, 0).numpy()[nv]
            assert np.abs(got - want).max() < 0.01
            # padding: black image, seg ignored, everything masked
            pad = (item["image"] == 0).all(0).numpy()
            assert (seg[pad] == 255).all() and not any(v.numpy()[pad].any() for v in m.values())
            assert (t["depth_zbuffer"][0].numpy()[pad] == 0).all()
    assert flips == {True, False}


def test_train_prescale_factor_known_answers():
    assert train_prescale_factor(480, 64) == pytest.approx(64 / 321)  # real NYUv2 at input 64
    assert train_prescale_factor(480, 321) == 1.0  # the paper's setting: unchanged
    assert train_prescale_factor(64, 64) == 1.0  # rendered stand-in stored at the input size: never upscaled
    assert train_prescale_factor(960, 321) == pytest.approx(0.5)


def _random_nyuv2_split(root: str, h: int, w: int, rng, normal_valid) -> tuple[str, list]:
    """One random NYUv2-format sample of h x w written under root, listed as both train and test."""
    normal = rng.normal(size=(h, w, 3)).astype(np.float32)
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
    paths = formats.write_nyuv2_sample(
        root, "a", rng.integers(0, 256, (h, w, 3), dtype=np.uint8), rng.integers(0, 40, (h, w), dtype=np.uint8),
        normal, normal_valid, rng.uniform(0.5, 5.0, (h, w)).astype(np.float32))
    formats.write_split_json(root, "nyuv2", {"train": [paths], "test": [paths]})
    return root, paths


def test_nyuv2_train_crop_comes_from_prescaled_image(tmp_path):
    """Real-size (480x640) NYUv2 at input 64: the crop is cut from the image shrunk by 64/321 (96x128)."""
    rng = np.random.default_rng(0)
    h, w = 480, 640
    root, paths = _random_nyuv2_split(str(tmp_path / "nyu480"), h, w, rng, rng.random((h, w)) > 0.1)

    def by_hand(size, prescaled_hw, seed):
        image, targets, masks = nyu_tensors(root, paths, ("segment_semantic", "normal", "depth_zbuffer"))
        if prescaled_hw is not None:
            image, targets, masks = resize_sample(image, targets, masks, prescaled_hw, kinds_of(NYU))
        return augment_sample(image, targets, masks, size, np.random.default_rng((seed, 0, 0)), kinds_of(NYU))

    def same(item, want):
        img, tg, mk = want
        return torch.equal(item["image"], img) and torch.equal(item["targets"]["segment_semantic"], tg["segment_semantic"]) and all(
            torch.equal(item["targets"][t], tg[t] * mk[t]) and torch.equal(item["masks"][t], mk[t]) for t in ("normal", "depth_zbuffer"))

    item = build_dataset("nyuv2", root, "train", NYU, input_size=64, augment=True, seed=5)[0]
    assert item["image"].shape == (3, 64, 64)
    assert same(item, by_hand(64, (96, 128), 5))  # round(480 * 64/321), round(640 * 64/321)
    assert not torch.equal(item["image"], by_hand(64, None, 5)[0])  # not cut from the full-size image
    item = build_dataset("nyuv2", root, "train", NYU, input_size=321, augment=True, seed=5)[0]
    assert same(item, by_hand(321, None, 5))  # the paper's input: no pre-scale


def test_train_augmentation_is_deterministic_under_seed(tk_root):
    a = build_dataset("taskonomy", tk_root, "train", TK, input_size=16, augment=True, seed=7)
    b = build_dataset("taskonomy", tk_root, "train", TK, input_size=16, augment=True, seed=7)

    def same(x, y):
        return torch.equal(x["image"], y["image"]) and all(torch.equal(x["targets"][t], y["targets"][t]) for t in a.tasks)

    assert same(a[0], b[0]) and same(a[1], b[1])
    draws = []
    for e in range(4):
        a.set_epoch(e)
        draws.append(a[0])
    assert not all(same(draws[0], d) for d in draws[1:])


@pytest.mark.parametrize("kind", ["nyuv2", "taskonomy"])
def test_decoded_memo_gives_the_items_of_fresh_reads(kind, nyu_root, tk_root, monkeypatch):
    """Items served from the in-memory decode equal items read from disk, over epochs of
    augmentation (so nothing writes into the kept arrays); a pickled dataset starts empty;
    a budget of 0 keeps nothing."""
    import pickle
    from mtl_attack.data import datasets

    root = nyu_root if kind == "nyuv2" else tk_root
    kept = build_dataset(kind, root, "train", SPECS[kind], input_size=16, augment=True, seed=3)
    monkeypatch.setattr(datasets, "MEMO_BYTES", 0)
    fresh = build_dataset(kind, root, "train", SPECS[kind], input_size=16, augment=True, seed=3)
    monkeypatch.undo()
    for epoch in range(3):
        kept.set_epoch(epoch)
        fresh.set_epoch(epoch)
        for i in range(len(kept)):
            x, y = kept[i], fresh[i]
            assert torch.equal(x["image"], y["image"])
            assert all(torch.equal(x["targets"][t], y["targets"][t]) and torch.equal(x["masks"][t], y["masks"][t])
                       for t in kept.tasks)
    assert len(kept._memo) == len(kept) and not fresh._memo
    assert pickle.loads(pickle.dumps(kept))._memo == {}
    test = build_dataset(kind, root, "test", SPECS[kind], input_size=16)
    assert torch.equal(test[0]["image"], test[0]["image"]) and len(test._memo) == 1


def test_pad_crop_and_flip_known_answer():
    image = torch.arange(6, dtype=torch.float32).reshape(1, 2, 3).repeat(3, 1, 1) + 1
    targets = {
        "segment_semantic": torch.tensor([[1, 2, 3], [4, 5, 6]]),
        "normal": torch.tensor([[[0.6] * 3] * 2, [[0.0] * 3] * 2, [[0.8] * 3] * 2]),
    }
    masks = {t: torch.ones(2, 3, dtype=torch.bool) for t in targets}
    kinds = kinds_of(NYU)  # the normal task negates x when mirrored (negate_x_on_flip defaults to true)
    img, tg, mk = pad_crop_sample(image, targets, masks, (4, 3), (0, 0), kinds)  # pad 1 row above and below
    assert img[0, :, 0].tolist() == [0, 1, 4, 0]
    assert tg["segment_semantic"][:, 0].tolist() == [255, 1, 4, 255]
    assert mk["normal"][:, 0].tolist() == [False, True, True, False]
    _, tf, _ = flip_sample(image, targets, masks, kinds)
    assert tf["segment_semantic"][0].tolist() == [3, 2, 1]
    assert torch.allclose(tf["normal"][0], torch.full((2, 3), -0.6)) and torch.allclose(tf["normal"][2], torch.full((2, 3), 0.8))
    assert nearest_resize(torch.arange(4)[None], (1, 2)).tolist() == [[0, 2]]


# --------------------------------------------------------------------------- errors


def one_line(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg
    return msg


def test_missing_root_and_json(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        build_dataset("nyuv2", str(tmp_path / "nope"), "test", NYU)
    assert "nope" in one_line(e) and "dataset.root" in one_line(e)
    with pytest.raises(FileNotFoundError) as e:
        build_dataset("taskonomy", str(tmp_path), "test", TK)
    assert "taskonomy.json" in one_line(e)
    with pytest.raises(ValueError) as e:
        build_dataset("nyuv3", str(tmp_path), "test", NYU)
    assert "nyuv2" in one_line(e)


def test_unknown_split_and_bad_split_json(nyu_root, tmp_path):
    with pytest.raises(ValueError) as e:
        build_dataset("nyuv2", nyu_root, "val", NYU)
    assert "val" in one_line(e) and "test" in one_line(e)
    with pytest.raises(ValueError):
        formats.write_split_json(str(tmp_path), "nyuv2", {"train": [], "tset": []})
    with pytest.raises(ValueError):
        formats.write_split_json(str(tmp_path), "nyuv2", {"train": [["a", "b"]], "test": []})


def test_missing_listed_file(nyu_root):
    os.remove(os.path.join(nyu_root, "seg", "0003.png"))
    ds = build_dataset("nyuv2", nyu_root, "test", NYU, input_size=8)
    ds[0]  # other samples still load
    with pytest.raises(FileNotFoundError) as e:
        ds[1]
    msg = one_line(e)
    assert os.path.join("seg", "0003.png") in msg and "nyu_v2_3task.json (test)" in msg


@pytest.mark.parametrize(
    "which, array, needle",
    [
        ("seg/0002.png", np.zeros((H, W, 3), np.uint8), "8-bit single-channel"),  # RGB seg
        ("seg/0002.png", np.zeros((H, W), np.uint16), "8-bit single-channel"),  # 16-bit seg
        ("seg/0002.png", np.zeros((H, W - 2), np.uint8), "maps must match"),  # wrong shape
        ("seg/0002.png", np.full((H, W), 41, np.uint8), "classes 0-39"),  # bad label
        ("normal_mask/0002.png", np.zeros((H, W), np.uint8), "8-bit RGB"),  # gray normal
        ("img/0002.png", np.zeros((H, W), np.uint8), "8-bit RGB"),  # gray image
    ],
)
def test_nyuv2_wrong_encoding(nyu_root, which, array, needle):
    Image.fromarray(array).save(os.path.join(nyu_root, which))
    with pytest.raises(ValueError) as e:
        build_dataset("nyuv2", nyu_root, "test", NYU, input_size=8)[0]
    msg = one_line(e)
    assert which.split("/")[-1] in msg and needle in msg


def test_nyuv2_bad_depth_npy(nyu_root):
    path = os.path.join(nyu_root, "depth", "0002.npy")
    np.save(path, np.zeros((H, W), np.int32))
    with pytest.raises(ValueError) as e:
        build_dataset("nyuv2", nyu_root, "test", NYU, input_size=8)[0]
    assert "0002.npy" in one_line(e) and "float" in one_line(e)
    with open(path, "wb") as f:
        f.write(b"not a numpy file")
    with pytest.raises(ValueError) as e:
        build_dataset("nyuv2", nyu_root, "test", NYU, input_size=8)[0]
    assert "0002.npy" in one_line(e)


def test_taskonomy_8bit_depth_rejected(tk_root):
    Image.fromarray(np.zeros((H, W), np.uint8)).save(os.path.join(tk_root, "depth_zbuffer", "s2.png"))
    with pytest.raises(ValueError) as e:
        build_dataset("taskonomy", tk_root, "test", TK, input_size=8)[0]
    assert "s2.png" in one_line(e) and "16-bit" in one_line(e)


def test_taskonomy_missing_prior(tk_root):
    os.remove(os.path.join(tk_root, "semseg_prior_factor.npy"))
    with pytest.raises(FileNotFoundError) as e:
        build_dataset("taskonomy", tk_root, "test", TK)
    assert "semseg_prior_factor.npy" in one_line(e)


def test_writer_rejects_bad_arrays(tmp_path):
    rgb, seg, normal, normal_valid, depth = nyu_arrays()
    with pytest.raises(ValueError, match="seg"):
        formats.write_nyuv2_sample(str(tmp_path), "x", rgb, seg.astype(np.int32), normal, normal_valid, depth)
    with pytest.raises(ValueError, match="must match"):
        formats.write_nyuv2_sample(str(tmp_path), "x", rgb, seg[:, :-1], normal, normal_valid, depth)
    with pytest.raises(ValueError, match="stem"):
        formats.write_nyuv2_sample(str(tmp_path), "a/b", rgb, seg, normal, normal_valid, depth)
    assert not os.path.exists(tmp_path / "img")


# --------------------------------------------------------------------------- MTAN / LibMTL NYUv2 (.npy folders)

# One hand-made 4x4 sample: label -1 at (0, 0), depth 0 at (1, 1), an all-zero normal at (2, 2).
MH = MW = 4


def mtan_arrays(i: int):
    r, c = np.mgrid[0:MH, 0:MW]
    image = ((r * MW + c + 1) / 20.0 + 0.1 * i)[..., None] * np.array([1.0, 0.5, 0.25])
    label = ((r * MW + c + i) % 13).astype(np.float32)
    label[0, 0] = -1
    depth = (0.5 + 0.25 * (r * MW + c) + i).astype(np.float32)[..., None]
    depth[1, 1] = 0.0
    normal = np.zeros((MH, MW, 3), np.float32)
    normal[...] = (0.0, 0.0, -1.0)
    normal[r > c] = (0.6, 0.0, -0.8)  # unit in float32 up to rounding
    normal[2, 2] = 0.0
    return image.astype(np.float32), label, depth, normal


def write_mtan_by_hand(root, split: str, numbers) -> None:
    """np.save straight into root/split/{image,label,depth,normal}/<i>.npy (not through the writer)."""
    for i in numbers:
        for folder, arr in zip(formats.MTAN_DIRS, mtan_arrays(i)):
            os.makedirs(os.path.join(root, split, folder), exist_ok=True)
            np.save(os.path.join(root, split, folder, f"{i}.npy"), arr)


@pytest.fixture()
def mtan_root(tmp_path):
    root = str(tmp_path / "mtan")
    write_mtan_by_hand(root, "train", range(2))
    write_mtan_by_hand(root, "val", range(2))
    return root


def test_mtan_listing_scans_numbered_files(mtan_root):
    open(os.path.join(mtan_root, "val", "image", "notes.txt"), "w").close()  # not a numbered .npy: ignored
    listing = formats.list_mtan_split(mtan_root, "val")
    assert listing.entries == [[f"val/{d}/{i}.npy" for d in ("image", "label", "depth", "normal")] for i in range(2)]
    assert listing.source == os.path.join(mtan_root, "val") and listing.alt_dirs == ()
    ds = build_dataset("nyuv2_mtan", mtan_root, "val", MTAN, input_size=4)
    assert len(ds) == 2 and ds.tasks == ("segment_semantic", "normal", "depth_zbuffer") and ds.class_weights is None
    assert ds.sample_paths(1) == listing.entries[1]


def test_mtan_item_targets_and_masks_exact(mtan_root):
    item = build_dataset("nyuv2_mtan", mtan_root, "val", MTAN, input_size=4)[1]  # stored at the input size: no resize
    image, label, depth, normal = mtan_arrays(1)
    t, m = item["targets"], item["masks"]
    assert torch.equal(item["image"], torch.from_numpy(image).permute(2, 0, 1))  # float kept as stored
    seg = t["segment_semantic"].numpy()
    assert seg[0, 0] == 255 and not m["segment_semantic"][0, 0]  # -1 -> the project's ignore 255
    keep = np.ones((MH, MW), bool)
    keep[0, 0] = False
    assert (seg[keep] == label[keep]).all() and m["segment_semantic"].numpy()[keep].all()
    assert seg[keep].max() <= 12
    dv = np.ones((MH, MW), bool)
    dv[1, 1] = False
    assert (m["depth_zbuffer"].numpy() == dv).all()
    assert (t["depth_zbuffer"][0].numpy() == np.where(dv, depth[..., 0], 0)).all()
    nv = np.ones((MH, MW), bool)
    nv[2, 2] = False
    assert (m["normal"].numpy() == nv).all()
    got = t["normal"].permute(1, 2, 0).numpy()
    assert (got[~nv] == 0).all() and np.abs(got[nv] - normal[nv]).max() < 1e-6
    assert np.allclose(np.linalg.norm(got[nv], axis=-1), 1, atol=1e-6)


def test_mtan_test_resize_of_a_non_square_picture(tmp_path):
    """288x384-like 6x8 pictures become S x S: labels nearest (floor(dst * in / out)), image bilinear."""
    root = str(tmp_path / "wide")
    rng = np.random.default_rng(0)
    label = rng.integers(-1, 13, (6, 8)).astype(np.float32)
    normal = rng.normal(size=(6, 8, 3)).astype(np.float32)
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
    image = rng.random((6, 8, 3)).astype(np.float32)
    for split in ("train", "val"):
        formats.write_mtan_sample(root, split, 0, image, label, rng.uniform(0.5, 4, (6, 8)), normal)
    item = build_dataset("nyuv2_mtan", root, "val", MTAN, input_size=4)[0]
    iy, ix = np.arange(4) * 6 // 4, np.arange(4) * 8 // 4
    want = label[np.ix_(iy, ix)]
    assert (item["targets"]["segment_semantic"].numpy() == np.where(want < 0, 255, want)).all()
    assert torch.allclose(item["image"], bilinear_resize(torch.from_numpy(image).permute(2, 0, 1), (4, 4)))


def test_mtan_default_input_size_is_288(mtan_root):
    assert build_dataset("nyuv2_mtan", mtan_root, "val", MTAN)[0]["image"].shape == (3, 288, 288)


def test_mtan_train_prescale_reference():
    assert train_prescale_factor(288, 288, (288, 288)) == 1.0  # LibMTL's stored scale: unchanged
    assert train_prescale_factor(288, 64, (288, 288)) == pytest.approx(64 / 288)  # crop at the test scale
    assert train_prescale_factor(64, 64, (288, 288)) == 1.0  # the rendered stand-in


def test_mtan_writer_roundtrip(tmp_path):
    root = str(tmp_path)
    image, label, depth, normal = mtan_arrays(0)
    rel = formats.write_mtan_sample(root, "train", 7, image, label.astype(np.int64), depth[..., 0], normal)
    assert rel == [f"train/{d}/7.npy" for d in formats.MTAN_DIRS]
    stored = [np.load(os.path.join(root, p)) for p in rel]
    assert [a.shape for a in stored] == [(MH, MW, 3), (MH, MW), (MH, MW, 1), (MH, MW, 3)]
    assert all(a.dtype == np.float32 for a in stored)
    d = formats.read_mtan_sample(root, rel)
    assert d["image"].dtype == np.float32 and (d["image"] == image).all()
    assert d["seg"][0, 0] == 255 and d["seg"].dtype == np.uint8
    with pytest.raises(ValueError, match="0-12"):
        formats.write_mtan_sample(root, "train", 8, image, label + 13, depth, normal)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        formats.write_mtan_sample(root, "train", 8, image * 255, label, depth, normal)
    with pytest.raises(ValueError, match="folder name"):
        formats.write_mtan_sample(root, "a/b", 8, image, label, depth, normal)


def _expect_one_line(exc, fn, *needles):
    with pytest.raises(exc) as e:
        fn()
    msg = one_line(e)
    for n in needles:
        assert n in msg, msg
    return msg


def test_mtan_missing_and_mismatched_files(mtan_root):
    val = os.path.join(mtan_root, "val")
    os.remove(os.path.join(val, "label", "1.npy"))
    _expect_one_line(FileNotFoundError, lambda: build_dataset("nyuv2_mtan", mtan_root, "val", MTAN),
                     os.path.join(val, "label"), "1.npy", "same numbers")
    np.save(os.path.join(val, "label", "1.npy"), mtan_arrays(1)[1])
    np.save(os.path.join(val, "depth", "2.npy"), mtan_arrays(1)[2])  # a number the other folders lack
    _expect_one_line(ValueError, lambda: build_dataset("nyuv2_mtan", mtan_root, "val", MTAN),
                     os.path.join(val, "depth"), "2.npy")
    for d in formats.MTAN_DIRS:  # numbers 0 and 2 in every folder: a gap
        os.replace(os.path.join(val, d, "1.npy"), os.path.join(val, d, "2.npy"))
    _expect_one_line(FileNotFoundError, lambda: build_dataset("nyuv2_mtan", mtan_root, "val", MTAN),
                     os.path.join(val, "image"), "no 1.npy", "0..N-1")


def test_mtan_missing_folders(mtan_root, tmp_path):
    _expect_one_line(FileNotFoundError, lambda: build_dataset("nyuv2_mtan", mtan_root, "test", MTAN),
                     os.path.join(mtan_root, "test"), "train, val", "dataset.test_split")
    _expect_one_line(FileNotFoundError, lambda: build_dataset("nyuv2_mtan", str(tmp_path / "nope"), "val", MTAN),
                     "nope", "dataset.root", "train/ and val/")
    import shutil

    shutil.rmtree(os.path.join(mtan_root, "train", "normal"))
    _expect_one_line(FileNotFoundError, lambda: build_dataset("nyuv2_mtan", mtan_root, "train", MTAN),
                     os.path.join(mtan_root, "train", "normal"), "image/, label/, depth/, normal/")
    for d in formats.MTAN_DIRS:
        shutil.rmtree(os.path.join(mtan_root, "val", d))
        os.makedirs(os.path.join(mtan_root, "val", d))
    _expect_one_line(ValueError, lambda: build_dataset("nyuv2_mtan", mtan_root, "val", MTAN),
                     os.path.join(mtan_root, "val", "image"), "no numbered .npy")


_BAD_MTAN = {
    "label 13": ("label", lambda a: a + 13, ValueError, "classes 0-12"),
    "fractional label": ("label", lambda a: a + 0.5, ValueError, "classes 0-12"),
    "label of another size": ("label", lambda a: a[:, :-1], ValueError, "maps must match"),
    "0-255 image": ("image", lambda a: a * 255, ValueError, "[0, 1]"),
    "gray image": ("image", lambda a: a[..., 0], ValueError, "HxWx3"),
    "integer image": ("image", lambda a: (a * 255).astype(np.uint8), ValueError, "float HxWx3"),
    "negative depth": ("depth", lambda a: a - 10, ValueError, ">= 0"),
    "integer depth": ("depth", lambda a: a.astype(np.int32), ValueError, "float HxW"),
    "0-255 normal": ("normal", lambda a: (a + 1) / 2 * 255, ValueError, "unit vectors"),
    "2-channel normal": ("normal", lambda a: a[..., :2], ValueError, "HxWx3"),
}


@pytest.mark.parametrize("case", list(_BAD_MTAN))
def test_mtan_bad_file_is_one_line_error(mtan_root, case):
    folder, change, exc, needle = _BAD_MTAN[case]
    path = os.path.join(mtan_root, "val", folder, "1.npy")
    np.save(path, change(np.load(path)))
    ds = build_dataset("nyuv2_mtan", mtan_root, "val", MTAN, input_size=4)
    ds[0]  # the other sample still loads
    _expect_one_line(exc, lambda: ds[1], path, needle)


def test_mtan_unreadable_npy(mtan_root):
    path = os.path.join(mtan_root, "val", "depth", "0.npy")
    with open(path, "wb") as f:
        f.write(b"not a numpy file")
    _expect_one_line(ValueError, lambda: build_dataset("nyuv2_mtan", mtan_root, "val", MTAN)[0], path, ".npy")


def test_check_files_lists_the_mtan_folders(mtan_root):
    from mtl_attack.config import compose
    from mtl_attack.data.build import check_files
    from mtl_attack.errors import UserError

    from mtl_attack.data.registry import selected_tasks

    cfg = compose(["dataset=nyuv2_mtan", f"dataset.root={mtan_root}"])
    ds, tasks = cfg.dataset, selected_tasks(cfg)
    assert ds.test_split == "val" and ds.input_size == 288
    assert check_files(ds, tasks) == 2 * 2 * 4  # train and val, 2 samples of 4 files each
    np.save(os.path.join(mtan_root, "val", "image", "1.npy"), np.zeros((MH, MW), np.float32))
    _expect_one_line(UserError, lambda: check_files(ds, tasks), os.path.join("val", "image", "1.npy"), "HxWx3")
    os.remove(os.path.join(mtan_root, "train", "depth", "0.npy"))
    _expect_one_line(UserError, lambda: check_files(ds, tasks), os.path.join(mtan_root, "train", "depth"), "0.npy")
    wrong = compose(["dataset=nyuv2_mtan", f"dataset.root={mtan_root}", "dataset.test_split=test"]).dataset
    _expect_one_line(UserError, lambda: check_files(wrong, tasks, splits=("test",)), "dataset.test_split")


def test_json_kinds_list_through_the_same_listing(nyu_root, tk_root):
    listing = formats.list_json_split(nyu_root, "nyuv2", "test")
    assert listing.entries == json.load(open(os.path.join(nyu_root, formats.NYUV2_JSON)))["test"]
    assert listing.source.endswith("nyu_v2_3task.json (test)")
    assert formats.list_json_split(tk_root, "taskonomy", "test_small").alt_dirs == ("test",)


def test_synth_mtan_config_runs_through_prepare(tmp_path):
    from helpers import tiny

    from mtl_attack.config import compose
    from mtl_attack.parts import prepare

    cfg = compose(tiny("dataset=synth_nyuv2_mtan", cache_dir=tmp_path / "cache"))
    assert cfg.dataset.format.value == "nyuv2_mtan" and cfg.dataset.test_split == "val"
    parts = prepare(cfg, torch.device("cpu"), progress=False)
    assert (parts.root / "val" / "image" / "5.npy").is_file() and not (parts.root / "val" / "image" / "6.npy").exists()
    assert len(parts.train) == 12 and len(parts.test) == 6
    assert [t.channels for t in parts.tasks] == [13, 3, 1]
    batch = next(iter(DataLoader(parts.test, batch_size=6)))
    assert batch["image"].shape == (6, 3, 16, 16)
    with torch.no_grad():
        out = parts.model(batch["image"])
    for task in parts.tasks:
        meter = task.meter()
        meter.update(out[task.name], batch["targets"][task.name], batch["masks"][task.name])
        scores = meter.compute()
        assert list(scores) == list(task.metrics) and all(math.isfinite(v) for v in scores.values())
    assert list(parts.tasks[2].metrics) == ["abs_err", "rel_err"]


def test_scale_range_one_crops_the_stored_picture_unresampled(tmp_path):
    """train.scale_range=[1, 1]: every training item is an exact window of the stored picture
    or of its mirror (no resampling); the paper's range resamples."""
    rng = np.random.default_rng(1)
    h, w = 24, 32
    root, paths = _random_nyuv2_split(str(tmp_path / "nyu"), h, w, rng, np.ones((h, w), bool))
    stored = nyu_tensors(root, paths, ("segment_semantic",))[0]
    windows = {tuple(img[:, :, left:left + 24].flatten().tolist())
               for img in (stored, stored.flip(-1)) for left in range(w - 24 + 1)}
    ds = build_dataset("nyuv2", root, "train", NYU, input_size=24, augment=True, seed=0, scale_range=(1.0, 1.0))
    paper = build_dataset("nyuv2", root, "train", NYU, input_size=24, augment=True, seed=0)
    inside = []
    for epoch in range(6):
        ds.set_epoch(epoch), paper.set_epoch(epoch)
        assert tuple(ds[0]["image"].flatten().tolist()) in windows
        inside.append(tuple(paper[0]["image"].flatten().tolist()) in windows)
    assert not all(inside)


def test_scale_range_and_augment_reach_the_train_split_and_the_key(tmp_path):
    from helpers import tiny
    from mtl_attack.config import compose
    from mtl_attack.data.build import build_splits, prepare_root
    from mtl_attack.data.registry import selected_tasks
    from mtl_attack.models.layout import all_shared
    from mtl_attack.training import checkpoint_path, model_key

    paper = compose(tiny("train.scale_range=[0.5,1.5]", cache_dir=tmp_path))
    none = compose(tiny("train.scale_range=[1,1]", cache_dir=tmp_path))
    root = prepare_root(paper.dataset, tmp_path, progress=False)
    train, _ = build_splits(none.dataset, root, selected_tasks(none), none.train.augment, tuple(none.train.scale_range))
    assert train.scale_range == (1.0, 1.0) and train.augment
    plain, test = build_splits(paper.dataset, root, selected_tasks(paper), augment=False)
    assert torch.equal(plain[0]["image"],
                       build_dataset("nyuv2", root, "train", selected_tasks(paper), paper.dataset.input_size)[0]["image"])
    layout = all_shared(3)
    assert model_key(paper, layout)["train"]["scale_range"] == [0.5, 1.5]
    assert model_key(none, layout)["train"]["scale_range"] == [1.0, 1.0]
    assert checkpoint_path(tmp_path, model_key(none, layout)) != checkpoint_path(tmp_path, model_key(paper, layout))


@pytest.mark.parametrize("bad", ["[0,1]", "[1.5,1.0]", "[1.0]", "[1,2,3]"])
def test_bad_scale_range_stops_before_any_work(bad, tmp_path):
    from helpers import tiny
    from mtl_attack.config import compose
    from mtl_attack.errors import UserError
    from mtl_attack.preflight import preflight

    with pytest.raises(UserError, match=r"train.scale_range=.* must be two scales 0 < low <= high"):
        preflight(compose(tiny(f"train.scale_range={bad}", cache_dir=tmp_path)))
    assert not (tmp_path / "data").exists()

"""The procedural renderer and the rendered datasets on disk (mtl_attack.data.synth)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mtl_attack.data import formats, synth
from mtl_attack.data.synth import (
    NYU13_CLASSES,
    NYU40_CLASSES,
    NYU40_TO_NYU13,
    TASKONOMY_CLASSES,
    edge_target,
    ensure_synthetic,
    generate_dataset,
    intrinsics,
    keypoint_target,
    render_scene,
    save_sample_grid,
    scene_seed,
)

H, W = 32, 40
N_CLASSES = {"nyuv2": 40, "taskonomy": 17}


@pytest.fixture(scope="module")
def scenes():
    return {(kind, s): render_scene(s, H, W, kind) for kind in ("nyuv2", "taskonomy") for s in range(4)}


def _rays(h: int, w: int) -> np.ndarray:
    """Camera rays [H,W,3] with unit z, from the intrinsics (pixel centres at +0.5)."""
    k = intrinsics(h, w)
    u = (np.arange(w) + 0.5 - k[0, 2]) / k[0, 0]
    v = (np.arange(h) + 0.5 - k[1, 2]) / k[1, 1]
    return np.stack(np.broadcast_arrays(u[None, :], v[:, None], np.ones((h, w))), -1)


# ----------------------------------------------------------------------------- known answers for the pieces
def test_intrinsics_known_values():
    k = intrinsics(32, 40)
    assert np.allclose(k, [[32.0, 0, 20.0], [0, 32.0, 16.0], [0, 0, 1]])  # f = 0.8 * width


def test_ray_primitive_intersections_known_answers():
    o = np.zeros(3)
    d = np.array([[0.0], [0.0], [1.0]])  # one ray along +z, component-major [3,1]
    sphere = synth._sphere((0, 0, 5), 1.0)
    t, n = synth._hit_sphere(sphere, o, d, 1e-6)
    assert t[0] == pytest.approx(4.0) and np.allclose(n[:, 0], [0, 0, -1])
    box = synth._box((0, 0, 5), (1, 1, 1))
    t, n = synth._hit_box(box, o, d, 1e-6)
    assert t[0] == pytest.approx(4.0) and np.allclose(n[:, 0], [0, 0, -1])
    # A box yawed by 90 degrees with half extents (2, 1, 0.5) shows its 2 m side along z.
    t, n = synth._hit_box(synth._box((0, 0, 5), (2, 1, 0.5), np.pi / 2), o, d, 1e-6)
    assert t[0] == pytest.approx(3.0) and np.allclose(n[:, 0], [0, 0, -1])
    cyl = synth._cyl(0.0, 5.0, 1.0, -1.0, 1.0)
    t, n = synth._hit_cyl(cyl, o, d, 1e-6)
    assert t[0] == pytest.approx(4.0) and np.allclose(n[:, 0], [0, 0, -1])
    # From above, straight down onto the top cap at y = 1.
    t, n = synth._hit_cyl(cyl, np.array([0.0, 4.0, 5.0]), np.array([[0.0], [-1.0], [0.0]]), 1e-6)
    assert t[0] == pytest.approx(3.0) and np.allclose(n[:, 0], [0, 1, 0])
    # Misses are infinite.
    t, _ = synth._hit_sphere(sphere, o, np.array([[1.0], [0.0], [0.0]]), 1e-6)
    assert np.isinf(t[0])


def test_edge_and_keypoint_targets_known_answers():
    flat = np.full((20, 20), 0.5)
    assert np.all(edge_target(flat) == -1) and np.all(keypoint_target(flat) == -1)
    step = np.zeros((20, 20))
    step[:, 10:] = 1.0  # a straight vertical edge: strong edge, no corner
    e = edge_target(step)
    assert np.all(e[:, 9:11] == 1.0) and np.all(e[:, :6] == -1) and np.all(e[:, 15:] == -1)
    assert np.all(keypoint_target(step) == -1)  # Harris R < 0 along a straight edge
    square = np.zeros((30, 30))
    square[6:24, 6:24] = 1.0
    kp = keypoint_target(square)
    assert kp[6, 6] == 1.0 and kp[23, 23] == 1.0 and kp[6, 23] == 1.0  # corners saturate
    assert np.all(kp[12:18, 12:18] == -1) and np.all(kp[14, :] == -1)  # inside, and across two straight edges
    assert np.all(kp[0:2, :] == -1)  # far away


def test_class_weights_median_frequency():
    w = synth.class_weights(np.array([600, 300, 100, 0]))
    # frequencies 0.6, 0.3, 0.1 over seen classes, median 0.3; unseen -> 1
    assert np.allclose(w, [0.5, 1.0, 3.0, 1.0])


# ----------------------------------------------------------------------------- renderer invariants
@pytest.mark.parametrize("kind", ["nyuv2", "taskonomy"])
def test_render_shapes_ranges_and_validity(scenes, kind):
    any_invalid = False
    for s in range(4):
        out = scenes[kind, s]
        assert out["rgb"].dtype == np.uint8 and out["rgb"].shape == (H, W, 3)
        assert out["seg"].dtype == np.uint8 and out["seg"].shape == (H, W)
        assert out["seg"].max() < N_CLASSES[kind]  # every pixel has a class, none void
        assert out["depth"].dtype == np.float32 and out["normal"].dtype == np.float32
        dv, nv = out["depth_valid"], out["normal_valid"]
        assert np.all(out["depth"][dv] > 0) and np.all(out["depth"][~dv] == 0)
        assert dv.mean() > 0.8
        any_invalid |= bool((~dv).any())
        norms = np.linalg.norm(out["normal"], axis=-1)
        assert np.allclose(norms[nv], 1.0, atol=1e-5) and np.all(norms[~nv] == 0)
        # Normals face the camera: negative dot product with the viewing ray.
        facing = (out["normal"] * _rays(H, W)).sum(-1)
        assert np.all(facing[nv] < 0)
        if kind == "nyuv2":
            assert np.array_equal(nv, dv)
        else:
            assert nv.all()
            for key in ("keypoints2d", "edge_texture"):
                assert out[key].dtype == np.float32 and out[key].shape == (H, W)
                assert out[key].min() >= -1 and out[key].max() <= 1
            assert out["edge_texture"].max() > -1  # rooms have edges
    assert any_invalid, "no simulated depth dropouts in 4 scenes"


def test_room_classes_are_the_nyu_and_taskonomy_names(scenes):
    seen = set()
    for s in range(4):
        seen |= {NYU40_CLASSES[c] for c in np.unique(scenes["nyuv2", s]["seg"])}
    assert {"wall", "floor"} <= seen
    assert len(TASKONOMY_CLASSES) == 17 and len(NYU40_CLASSES) == 40


@pytest.mark.parametrize("kind", ["nyuv2", "taskonomy"])
def test_normals_match_back_projected_depth_on_planes(kind):
    h, w = 48, 64
    checked = 0
    for s in range(3):
        out = render_scene(s, h, w, kind)
        pts = out["depth"][..., None] * _rays(h, w)  # 3-D points in camera coordinates
        du = pts[1:-1, 2:] - pts[1:-1, :-2]
        dv = pts[2:, 1:-1] - pts[:-2, 1:-1]
        est = np.cross(dv, du)  # x right, y down, z forward: dv x du points at the camera
        est /= np.linalg.norm(est, axis=-1, keepdims=True) + 1e-12
        n, seg, valid = out["normal"], out["seg"], out["depth_valid"]
        # Interior pixels of a planar room surface: the whole 3x3 neighbourhood
        # shares class and normal, and has valid depth.
        same = np.ones((h - 2, w - 2), bool)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                sl = (slice(1 + dy, h - 1 + dy), slice(1 + dx, w - 1 + dx))
                same &= (seg[sl] == seg[1:-1, 1:-1]) & valid[sl]
                same &= np.abs(n[sl] - n[1:-1, 1:-1]).max(-1) < 1e-6
        room = np.isin(seg[1:-1, 1:-1], [0] if kind == "taskonomy" else [0, 1, 21])
        sel = same & room
        cos = (est * n[1:-1, 1:-1]).sum(-1)[sel]
        assert cos.size > 100
        assert cos.min() > 0.99
        checked += cos.size
    assert checked > 1000


def test_same_seed_same_bytes_different_seed_differs():
    a = render_scene(5, H, W, "taskonomy")
    b = render_scene(np.random.SeedSequence(5), H, W, "taskonomy")
    c = render_scene(6, H, W, "taskonomy")
    assert all(a[k].tobytes() == b[k].tobytes() for k in a)
    assert a["rgb"].tobytes() != c["rgb"].tobytes() and a["depth"].tobytes() != c["depth"].tobytes()


def test_screen_rectangle_culling_changes_nothing(monkeypatch):
    fast = render_scene(11, H, W, "nyuv2")
    monkeypatch.setattr(synth, "_screen_rect", lambda c, r, k, h, w: (0, h, 0, w))  # test every pixel
    slow = render_scene(11, H, W, "nyuv2")
    assert all(fast[k].tobytes() == slow[k].tobytes() for k in fast)


@pytest.mark.parametrize("call, match", [
    (lambda: render_scene(0, H, W, "cityscapes"), "unknown synthetic dataset kind"),
    (lambda: render_scene(0, H, W, "nyuv2_mtan"), "unknown synthetic dataset kind"),  # a format, not a scene kind
    (lambda: generate_dataset("/nonexistent", "nyuv3", 1, 1, H, W, 0), "unknown synthetic dataset kind"),
    (lambda: render_scene(0, 2, W, "nyuv2"), "too small"),
    (lambda: render_scene("zero", H, W, "nyuv2"), "seed"),
    (lambda: generate_dataset("/nonexistent", "nyuv2", 0, 1, H, W, 0), "n_train must be an integer >= 1"),
    (lambda: generate_dataset("/nonexistent", "nyuv2", 1, 1, H, W, -1), "seed must be an integer >= 0"),
])
def test_bad_input_stops_with_one_line_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_rendered_normals_never_encode_to_grey(scenes):
    """Valid rendered normals decode to (near) unit vectors, far above the grey-invalid threshold."""
    for (kind, _), out in scenes.items():
        raw = formats.encode_normal_png(out["normal"], out["normal_valid"] if kind == "nyuv2" else None)
        nv = out["normal_valid"]
        norms = np.linalg.norm(raw.astype(np.float64) / 255 * 2 - 1, axis=-1)
        assert norms[nv].min() > 0.99 > formats.NORMAL_MIN_NORM
        _, valid = formats.decode_normal_png(raw, white_is_invalid=kind == "nyuv2")
        assert np.array_equal(valid, nv)


# ----------------------------------------------------------------------------- datasets on disk
def test_nyuv2_dataset_reads_back_as_rendered(tmp_path):
    root = generate_dataset(tmp_path / "nyu", "nyuv2", 3, 2, H, W, seed=7, workers=1, progress=False)
    splits = formats.read_split_json(str(root), "nyuv2")
    assert len(splits["train"]) == 3 and len(splits["test"]) == 2
    for split, i in (("train", 2), ("test", 1)):
        got = formats.read_nyuv2_sample(str(root), splits[split][i])
        want = render_scene(scene_seed(7, "nyuv2", split, i), H, W, "nyuv2")
        assert np.array_equal(got["image"], want["rgb"]) and np.array_equal(got["seg"], want["seg"])
        assert np.array_equal(got["depth_valid"], want["depth_valid"])
        assert np.array_equal(got["depth"], want["depth"])
        assert np.array_equal(got["normal_valid"], want["normal_valid"])
        assert np.abs(got["normal"] - want["normal"]).max() < 0.01  # 8-bit encoding
    meta = json.loads((root / "synthetic.json").read_text())
    assert meta["renderer_version"] == synth.RENDERER_VERSION and meta["seed"] == 7


def test_taskonomy_dataset_reads_back_as_rendered(tmp_path):
    root = generate_dataset(tmp_path / "tk", "taskonomy", 3, 5, H, W, seed=1, workers=1, progress=False)
    splits = formats.read_split_json(str(root), "taskonomy")
    assert [len(splits[k]) for k in ("train", "test", "test_small")] == [3, 5, 1]
    assert splits["test_small"] == splits["test"][:1]
    got = formats.read_taskonomy_sample(str(root), splits["test"][3], split="test")
    want = render_scene(scene_seed(1, "taskonomy", "test", 3), H, W, "taskonomy")
    assert np.array_equal(got["image"], want["rgb"]) and np.array_equal(got["seg"], want["seg"])
    assert np.array_equal(got["depth_valid"], want["depth_valid"])
    expected_depth = np.log1p(np.round(want["depth"] * 512.0)) / np.log(2.0**16)
    assert np.allclose(got["depth"][got["depth_valid"]], expected_depth[want["depth_valid"]], atol=1e-5)
    assert np.abs(got["keypoints2d"] - want["keypoints2d"]).max() < 0.01  # 16-bit, clipped range
    assert np.abs(got["edge_texture"] - want["edge_texture"]).max() < 0.01
    prior = formats.read_semseg_prior(str(root))
    meta = json.loads((root / "synthetic.json").read_text())
    assert np.allclose(prior, synth.class_weights(np.array(meta["train_pixels_per_class"])))
    assert np.all(prior > 0)


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_dataset_bytes_do_not_depend_on_worker_count(tmp_path):
    one = generate_dataset(tmp_path / "a", "taskonomy", 12, 4, 16, 16, seed=3, workers=1, progress=False)
    two = generate_dataset(tmp_path / "b", "taskonomy", 12, 4, 16, 16, seed=3, workers=2, progress=False)
    a, b = _tree_bytes(one), _tree_bytes(two)
    assert len(a) == 6 * 16 + 3 and a == b


def test_ensure_synthetic_renders_once_and_keys_by_parameters(tmp_path, monkeypatch):
    calls = []
    real = synth.generate_dataset

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(synth, "generate_dataset", counting)
    a = ensure_synthetic(tmp_path, "nyuv2", 2, 1, H, W, seed=0, progress=False)
    again = ensure_synthetic(tmp_path, "nyuv2", 2, 1, H, W, seed=0, progress=False)
    other = ensure_synthetic(tmp_path, "nyuv2", 2, 1, H, W, seed=1, progress=False)
    assert a == again != other and len(calls) == 2
    assert a.name.startswith(f"synthetic-nyuv2-{H}x{W}-")
    assert (a / formats.NYUV2_JSON).is_file()
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_ensure_synthetic_crash_leaves_no_finished_looking_folder(tmp_path, monkeypatch):
    def crashing(root, *args, **kwargs):
        Path(root).mkdir(parents=True)
        (Path(root) / formats.NYUV2_JSON).write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(synth, "generate_dataset", crashing)
    with pytest.raises(KeyboardInterrupt):
        ensure_synthetic(tmp_path, "nyuv2", 2, 1, H, W, seed=0, progress=False)
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == []


def test_sample_grid_has_a_column_per_label(tmp_path):
    nyu = save_sample_grid("nyuv2", tmp_path / "nyu.png", n=2, size=(H, W))
    tk_root = generate_dataset(tmp_path / "tk", "taskonomy", 1, 2, H, W, seed=0, workers=1, progress=False)
    tk = save_sample_grid(tk_root, tmp_path / "tk.png", n=2)
    with Image.open(nyu) as a, Image.open(tk) as b:
        assert a.format == b.format == "PNG"
        assert a.size[1] == b.size[1]  # two rows each
        assert b.size[0] / a.size[0] == pytest.approx(6 / 4, rel=0.05)  # 6 columns vs 4
    both = save_sample_grid(["nyuv2", "taskonomy"], tmp_path / "both.png", n=1, size=(H, W))
    with Image.open(both) as c, Image.open(tk) as b:
        assert c.size == b.size  # one row per kind, the union of the columns
    with pytest.raises(FileNotFoundError, match="neither"):
        save_sample_grid(tmp_path, tmp_path / "x.png")


# ----------------------------------------------------------------------------- the MTAN / LibMTL NYUv2 format
# NYU-40 -> NYU-13 as published (1-based, index 0 = unknown): ankurhanda/nyuv2-meta-data class13Mapping.mat.
PUBLISHED_40_TO_13 = [0, 12, 5, 6, 1, 4, 9, 10, 12, 13, 6, 8, 6, 13, 10, 6, 13, 6, 7, 7, 5, 7, 3, 2, 6, 11,
                      7, 7, 7, 7, 7, 7, 6, 7, 7, 7, 7, 7, 7, 6, 7]


def test_nyu40_to_nyu13_is_the_standard_mapping():
    assert NYU40_TO_NYU13.tolist() == [m - 1 for m in PUBLISHED_40_TO_13[1:]]
    name13 = {c40: NYU13_CLASSES[NYU40_TO_NYU13[i]] for i, c40 in enumerate(NYU40_CLASSES)}
    assert {k: name13[k] for k in ("wall", "door", "blinds", "curtain", "bookshelf", "television", "floor mat",
                                   "ceiling", "books", "lamp", "otherfurniture")} == {
        "wall": "wall", "door": "wall", "blinds": "window", "curtain": "window", "bookshelf": "furniture",
        "television": "tv", "floor mat": "floor", "ceiling": "ceiling", "books": "books", "lamp": "objects",
        "otherfurniture": "furniture"}
    # wall, door, window, void / television, otherfurniture, otherprop, ceiling
    seg = np.array([[0, 7, 8, 255], [24, 38, 39, 21]], np.uint8)
    assert synth.nyu40_to_nyu13(seg).tolist() == [[11, 11, 12, -1], [10, 5, 6, 2]]


def test_nyuv2_mtan_dataset_holds_the_nyuv2_scenes(tmp_path):
    root = generate_dataset(tmp_path / "mtan", "nyuv2_mtan", 3, 2, H, W, seed=7, workers=1, progress=False)
    assert sorted(p.name for p in root.iterdir()) == ["synthetic.json", "train", "val"]  # no split json
    meta = json.loads((root / "synthetic.json").read_text())
    assert meta["classes"] == list(NYU13_CLASSES) and len(meta["train_pixels_per_class"]) == 13
    counts = np.zeros(13, np.int64)
    for folder, split, n in (("train", "train", 3), ("val", "test", 2)):
        listing = formats.list_mtan_split(str(root), folder)
        assert len(listing.entries) == n
        for i, entry in enumerate(listing.entries):
            want = render_scene(scene_seed(7, "nyuv2", split, i), H, W, "nyuv2")  # the synth_nyuv2 scene
            stored = [np.load(root / p) for p in entry]
            assert [a.shape for a in stored] == [(H, W, 3), (H, W), (H, W, 1), (H, W, 3)]
            assert all(a.dtype == np.float32 for a in stored)
            assert np.array_equal(stored[0], want["rgb"].astype(np.float32) / 255)
            assert np.array_equal(stored[1], NYU40_TO_NYU13[want["seg"]].astype(np.float32))
            assert np.array_equal(stored[2][..., 0], want["depth"]) and np.array_equal(stored[3], want["normal"])
            got = formats.read_mtan_sample(str(root), entry)
            seg = got["seg"]
            assert ((seg <= 12) | (seg == 255)).all()
            assert np.array_equal(got["depth_valid"], want["depth_valid"]) and not got["depth_valid"].all()
            assert np.array_equal(got["normal_valid"], want["normal_valid"])
            assert np.allclose(np.linalg.norm(got["normal"][got["normal_valid"]], axis=-1), 1, atol=1e-5)
            assert (got["normal"][~got["normal_valid"]] == 0).all()
            if split == "train":
                counts += np.bincount(seg[seg != 255], minlength=13)
    assert meta["train_pixels_per_class"] == counts.tolist()
    assert scene_seed(7, "nyuv2_mtan", "test", 1).entropy == scene_seed(7, "nyuv2", "test", 1).entropy
    assert scene_seed(7, "nyuv2_mtan", "test", 1).spawn_key == scene_seed(7, "nyuv2", "test", 1).spawn_key


def test_every_renderable_kind_is_a_renderer_format():
    from mtl_attack.data.formats import FORMATS

    assert {k for k, fmt in FORMATS.items() if fmt.rendered is not None} == set(synth.KINDS)
    assert set(synth.SCENE_KINDS) < set(synth.KINDS)


def test_ensure_synthetic_mtan_folder(tmp_path):
    root = ensure_synthetic(tmp_path, "nyuv2_mtan", 2, 1, H, W, seed=0, progress=False)
    assert root.name.startswith(f"synthetic-nyuv2_mtan-{H}x{W}-")
    assert len(formats.list_mtan_split(str(root), "val").entries) == 1
    assert save_sample_grid(root, tmp_path / "grid.png", n=1).is_file()  # a folder of this format too
    shown = synth._display_sample(formats.read_mtan_sample(str(root), formats.list_mtan_split(str(root), "val").entries[0]))
    assert shown["rgb"].max() > 0.2 and shown["seg"].max() <= 12  # float image shown as stored

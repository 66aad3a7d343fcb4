"""A procedurally rendered stand-in for NYUv2 and Tiny-Taskonomy.

Each scene is a closed box room (floor, ceiling, four walls) with furniture
made of boxes (optionally yawed), spheres and vertical cylinders, seen by a
pinhole camera at chest height (1.3-1.5 m), random yaw, pitch and slight roll. Every pixel's
ray is cast against the room and each primitive with a z-buffer, giving exact
per-pixel labels:

- depth: z-distance along the camera axis in metres (as NYUv2's depth), 0
  where the simulated sensor dropped out (grazing or far surfaces, speckle).
- normal: unit surface normal in CAMERA coordinates, OpenCV axes: x right,
  y down, z forward (into the scene). Normals face the camera, so their dot
  product with the viewing ray is negative (a wall straight ahead is
  (0, 0, -1); the floor seen from above points up, i.e. has negative y).
- seg: the class of the surface hit (NYU-40 ids 0-39, or 17 Taskonomy ids);
  no pixel is void.
- rgb: per-class two-colour procedural texture evaluated on the 3-D hit point,
  Lambertian shading from one point light with cast shadows plus ambient,
  Gaussian sensor noise, uint8.
- Taskonomy only: keypoints2d (Harris corner response of the noise-free
  grayscale image) and edge_texture (Sobel gradient magnitude), each clipped
  at a fixed saturation level and mapped to [-1, 1] (-1 = no response).

Scene i of a dataset is rendered from a seed derived from (dataset seed, scene
kind, split, i), so a dataset's bytes do not depend on the number of workers.
`generate_dataset` writes the real on-disk formats through one interface: each
format's `Rendered` entry (:mod:`mtl_attack.data.formats`) names the scene family it
shows and writes one rendered scene, so the same loader reads rendered and real data;
`ensure_synthetic` keeps one copy per parameter set in a cache folder.

Formats (:data:`KINDS`) and scenes (:data:`SCENE_KINDS`): "nyuv2_mtan" (MTAN's /
LibMTL's NYUv2 copy) renders the very scenes of "nyuv2" (same seeds, pixels,
depth and normals); its labels map the NYU-40 classes onto NYU-13 with
:data:`NYU40_TO_NYU13`, its test scenes go to the val/ folder and its image is
the same 8-bit picture stored as float32 /255. "cityscapes" renders the same rooms
with their classes grouped into seven (:data:`~mtl_attack.data.labels.ROOM7_CLASSES`)
and depth only: a stand-in in Cityscapes' format, not street scenes.
"""
from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import atomic
from ..cache import build_once, content_key
from ..pictures import _hsv_to_rgb, grid_png, image_picture, task_picture
from .formats import FORMATS

__all__ = [
    "RENDERER_VERSION",
    "KINDS",
    "SCENE_KINDS",
    "NYU40_CLASSES",
    "NYU13_CLASSES",
    "NYU40_TO_NYU13",
    "nyu40_to_nyu13",
    "TASKONOMY_CLASSES",
    "render_scene",
    "generate_dataset",
    "ensure_synthetic",
    "save_sample_grid",
    "scene_seed",
]

# Bump whenever rendered bytes change: it is part of the cache key.
RENDERER_VERSION = 2

SCENE_KINDS = ("nyuv2", "taskonomy")  # scene families: classes, materials, seeds


def _renderable() -> dict:
    """Format name -> its :class:`~mtl_attack.data.formats.Rendered` (the formats the renderer writes)."""
    return {name: f.rendered for name, f in FORMATS.items() if f.rendered is not None}


KINDS = tuple(_renderable())  # the on-disk formats the renderer writes

from .labels import (NYU13_CLASSES, NYU40_CLASSES, NYU40_TO_NYU13, TASKONOMY_CLASSES,  # noqa: E402,F401
                     class_weights, nyu40_to_nyu13)
_CLASSES = {"nyuv2": NYU40_CLASSES, "taskonomy": TASKONOMY_CLASSES}

FOCAL_FRACTION = 0.8  # focal length / image width: ~64 deg horizontal field of view, like a Kinect
AMBIENT = 0.35
LIGHT_GAIN = 1.1  # diffuse light reaching a surface facing it at distance 0
LIGHT_FALLOFF_M2 = 16.0  # squared distance (m^2) at which the light has halved
KEYPOINT_SATURATION = 5e-5  # Harris response mapped to +1 (~ the 99.7th percentile on rendered scenes)
EDGE_SATURATION = 0.15  # gray-level change per pixel mapped to +1 (~ the 99.5th percentile)
_SPLIT_CODE = {"train": 0, "test": 1}
_KIND_CODE = {"nyuv2": 0, "taskonomy": 1}
_N_ROOM_MATERIALS = 3  # wall, floor, ceiling; object class c uses material 3 + c


def _check_kind(kind: str, kinds: tuple[str, ...] = KINDS) -> str:
    if kind not in kinds:
        raise ValueError(f"unknown synthetic dataset kind {kind!r}; use one of {', '.join(kinds)}")
    return kind


def _cls(kind: str, name: str) -> int:
    return _CLASSES[kind].index(name)


# ----------------------------------------------------------------------------- materials
@dataclass(frozen=True)
class _Materials:
    """Per-material texture parameters; row m is material m."""

    color_a: np.ndarray  # [M,3] in [0,1]
    color_b: np.ndarray  # [M,3]
    pattern: np.ndarray  # [M] 0 noise, 1 stripes, 2 checker, 3 grain
    freq: np.ndarray  # [M] cycles per metre
    direction: np.ndarray  # [M,3] unit stripe direction
    offset: np.ndarray  # [M,3] metres, keeps lattice boundaries off axis-aligned planes


def _make_materials(kind: str) -> _Materials:
    # Fixed per kind (not per scene), so a class looks alike across images.
    n = _N_ROOM_MATERIALS + len(_CLASSES[kind])
    rng = np.random.default_rng(1000 + _KIND_CODE[kind])
    hsv = np.stack([rng.uniform(0, 1, n), rng.uniform(0.25, 0.8, n), rng.uniform(0.35, 0.9, n)], 1)
    color_a = _hsv_to_rgb(hsv)
    hsv_b = hsv.copy()
    hsv_b[:, 0] = (hsv_b[:, 0] + rng.uniform(-0.12, 0.12, n)) % 1.0
    hsv_b[:, 2] = np.clip(hsv_b[:, 2] * rng.uniform(0.45, 0.8, n), 0, 1)
    color_b = _hsv_to_rgb(hsv_b)
    pattern = rng.integers(0, 4, n)
    freq = rng.uniform(2.0, 7.0, n)
    direction = rng.normal(size=(n, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    offset = rng.uniform(0.1, 0.9, (n, 3))
    # Room surfaces: pale wallpaper with vertical stripes, wooden floor, white ceiling. The
    # stripes' perspective shows each wall's orientation and distance, as real rooms' textures do
    # (plain walls, half the pixels, left the miniature 2 degrees and 7 points of delta_1 worse).
    color_a[0], color_b[0], pattern[0], freq[0] = (0.80, 0.76, 0.68), (0.60, 0.56, 0.50), 1, 4.0
    direction[0] = (np.sqrt(0.5), 0.0, np.sqrt(0.5))  # varies along both wall directions, not up
    color_a[1], color_b[1], pattern[1], freq[1] = (0.62, 0.45, 0.30), (0.42, 0.28, 0.17), 3, 4.0
    direction[1] = (1.0, 0.0, 0.05)
    direction[1] /= np.linalg.norm(direction[1])
    color_a[2], color_b[2], pattern[2], freq[2] = (0.93, 0.93, 0.92), (0.85, 0.85, 0.84), 0, 1.0
    return _Materials(color_a, color_b, pattern, freq, direction, offset)


_MATERIALS = {k: _make_materials(k) for k in SCENE_KINDS}
# Pseudo-noise: a few fixed plane waves (cheap, smooth, deterministic).
_NOISE_W = np.random.default_rng(7).normal(size=(4, 3)) * 1.7
_NOISE_PHASE = np.random.default_rng(8).uniform(0, 2 * np.pi, 4)


def _noise(q: np.ndarray) -> np.ndarray:
    """Smooth pseudo-noise in about [-1, 1] at 3-D points q [3,N]."""
    return np.sin(_NOISE_W @ q + _NOISE_PHASE[:, None]).sum(0) * 0.4


# ----------------------------------------------------------------------------- geometry
@dataclass
class _Prim:
    kind: str  # "box" | "sphere" | "cyl"
    center: np.ndarray  # [3] world; for cyl the axis point at mid height
    size: np.ndarray  # box: half extents [3]; sphere: [r]; cyl: [r, half height]
    yaw: float = 0.0  # box only, rotation about the vertical axis

    def bound_radius(self) -> float:
        if self.kind == "box":
            return float(np.linalg.norm(self.size))
        if self.kind == "sphere":
            return float(self.size[0])
        return float(np.hypot(self.size[0], self.size[1]))


@dataclass
class _Object:
    cls: int
    prims: list[_Prim]
    center: np.ndarray = field(default_factory=lambda: np.zeros(3))
    radius: float = 0.0

    def finish(self) -> "_Object":
        lo = np.min([p.center - p.bound_radius() for p in self.prims], 0)
        hi = np.max([p.center + p.bound_radius() for p in self.prims], 0)
        self.center = (lo + hi) / 2
        self.radius = float(max(np.linalg.norm(p.center - self.center) + p.bound_radius() for p in self.prims))
        return self


def _rot_y(yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _safe(d: np.ndarray) -> np.ndarray:
    # Axis-parallel rays: a tiny component keeps slab maths finite with the right sign.
    return np.where(np.abs(d) < 1e-12, np.where(d < 0, -1e-12, 1e-12), d)


def _col(o: np.ndarray) -> np.ndarray:
    return o[:, None] if o.ndim == 1 else o


# Intersections take origins o [3] or [3,N] and directions d [3,N] (world,
# component-major for speed) and return t [N] (inf on a miss; hits need
# t > t_min) and the world normal [3,N] of the surface hit (unnormalised at
# exact box edges; callers normalise).
def _hit_box(p: _Prim, o: np.ndarray, d: np.ndarray, t_min: float):
    rot = _rot_y(p.yaw)  # local -> world
    q = rot.T @ (_col(o) - p.center[:, None])
    dl = _safe(rot.T @ d)
    half = p.size[:, None]
    t1 = (-half - q) / dl
    t2 = (half - q) / dl
    tmin = np.minimum(t1, t2)
    tmax = np.maximum(t1, t2)
    tnear = np.maximum(np.maximum(tmin[0], tmin[1]), tmin[2])
    tfar = np.minimum(np.minimum(tmax[0], tmax[1]), tmax[2])
    t = np.where((tnear <= tfar) & (tnear > t_min), tnear, np.inf)
    n_local = np.where(tmin == tnear, -np.sign(dl), 0.0)
    return t, rot @ n_local


def _hit_sphere(p: _Prim, o: np.ndarray, d: np.ndarray, t_min: float):
    oc = _col(o) - p.center[:, None]
    a = (d * d).sum(0)
    b = (oc * d).sum(0)
    c = (oc * oc).sum(0) - p.size[0] ** 2
    disc = b * b - a * c
    t = (-b - np.sqrt(np.maximum(disc, 0.0))) / a
    t = np.where((disc >= 0) & (t > t_min), t, np.inf)
    return t, (oc + np.where(np.isfinite(t), t, 0.0) * d) / p.size[0]


def _hit_cyl(p: _Prim, o: np.ndarray, d: np.ndarray, t_min: float):
    r, hh = p.size
    oc = _col(o) - p.center[:, None]
    ox, oy, oz = oc
    dx, dy, dz = d
    a = np.maximum(dx * dx + dz * dz, 1e-18)
    b = ox * dx + oz * dz
    c = ox * ox + oz * oz - r * r
    disc = b * b - a * c
    ts = (-b - np.sqrt(np.maximum(disc, 0.0))) / a
    ts = np.where((disc >= 0) & (ts > t_min) & (np.abs(oy + ts * dy) <= hh), ts, np.inf)
    cap_y = np.where(dy < 0, hh, -hh)  # the cap facing the ray
    tc = (cap_y - oy) / _safe(dy)
    cx, cz = ox + tc * dx, oz + tc * dz
    tc = np.where((tc > t_min) & (cx * cx + cz * cz <= r * r), tc, np.inf)
    use_cap = tc < ts
    ts_f = np.where(np.isfinite(ts), ts, 0.0)
    n = np.stack([
        np.where(use_cap, 0.0, (ox + ts_f * dx) / r),
        np.where(use_cap, np.sign(cap_y), 0.0),
        np.where(use_cap, 0.0, (oz + ts_f * dz) / r),
    ])
    return np.minimum(ts, tc), n


_HIT = {"box": _hit_box, "sphere": _hit_sphere, "cyl": _hit_cyl}


# ----------------------------------------------------------------------------- scene sampling
@dataclass
class _Scene:
    room: np.ndarray  # [3] extents (x, height, z); the room spans [0, room]
    cam_pos: np.ndarray  # [3]
    cam_rot: np.ndarray  # [3,3] camera -> world (columns: right, down, forward)
    light: np.ndarray  # [3]
    objects: list[_Object]
    room_classes: tuple[int, int, int]  # class of wall, floor, ceiling
    tint: np.ndarray  # [M,3] per-scene colour jitter per material
    noise_sigma: float


def _box(center, half, yaw=0.0) -> _Prim:
    return _Prim("box", np.asarray(center, float), np.asarray(half, float), float(yaw))


def _sphere(center, r) -> _Prim:
    return _Prim("sphere", np.asarray(center, float), np.array([float(r)]))


def _cyl(x, z, r, y0, y1) -> _Prim:
    return _Prim("cyl", np.array([x, (y0 + y1) / 2, z], float), np.array([float(r), (y1 - y0) / 2]))


def _local(x, z, yaw, lx, lz):
    """World xz of a point given in an object's yawed frame."""
    c, s = np.cos(yaw), np.sin(yaw)
    return x + c * lx + s * lz, z - s * lx + c * lz


def _legs(x, z, yaw, hx, hz, y1, w):
    out = []
    for sx in (-1, 1):
        for sz in (-1, 1):
            px, pz = _local(x, z, yaw, sx * (hx - w), sz * (hz - w))
            out.append(_box((px, y1 / 2, pz), (w, y1 / 2, w), yaw))
    return out


# Builders: (rng, x, z, yaw, y0) -> (primitives, footprint radius, top surface height or None)
def _b_block(lo, hi):
    def build(rng, x, z, yaw, y0):
        hx, hy, hz = rng.uniform(lo, hi) / 2
        return [_box((x, y0 + hy, z), (hx, hy, hz), yaw)], np.hypot(hx, hz), y0 + 2 * hy
    return build


def _b_table(rng, x, z, yaw, y0):
    hx, hz = rng.uniform(0.4, 0.9), rng.uniform(0.3, 0.55)
    h = rng.uniform(0.65, 0.8)
    top = _box((x, h - 0.025, z), (hx, 0.025, hz), yaw)
    return [top] + _legs(x, z, yaw, hx, hz, h - 0.05, 0.03), np.hypot(hx, hz), h


def _b_desk(rng, x, z, yaw, y0):
    hx, hz, h = rng.uniform(0.5, 0.8), rng.uniform(0.3, 0.4), 0.75
    prims = [_box((x, h - 0.03, z), (hx, 0.03, hz), yaw)]
    for sx in (-1, 1):
        px, pz = _local(x, z, yaw, sx * (hx - 0.02), 0.0)
        prims.append(_box((px, (h - 0.06) / 2, pz), (0.02, (h - 0.06) / 2, hz), yaw))
    return prims, np.hypot(hx, hz), h


def _b_chair(rng, x, z, yaw, y0):
    hw, seat = rng.uniform(0.2, 0.26), rng.uniform(0.42, 0.5)
    prims = [_box((x, seat - 0.03, z), (hw, 0.03, hw), yaw)] + _legs(x, z, yaw, hw, hw, seat - 0.06, 0.02)
    bx, bz = _local(x, z, yaw, 0.0, -hw + 0.025)
    back = rng.uniform(0.35, 0.5)
    prims.append(_box((bx, seat + back / 2, bz), (hw, back / 2, 0.025), yaw))
    return prims, np.hypot(hw, hw), None


def _b_sofa(rng, x, z, yaw, y0):
    hx, hz = rng.uniform(0.7, 1.1), rng.uniform(0.4, 0.5)
    prims = [_box((x, 0.22, z), (hx, 0.22, hz), yaw)]
    bx, bz = _local(x, z, yaw, 0.0, -hz + 0.1)
    prims.append(_box((bx, 0.6, bz), (hx, 0.2, 0.1), yaw))
    for sx in (-1, 1):
        ax, az = _local(x, z, yaw, sx * (hx - 0.1), 0.0)
        prims.append(_box((ax, 0.31, az), (0.1, 0.31, hz), yaw))
    return prims, np.hypot(hx, hz), None


def _b_bed(rng, x, z, yaw, y0):
    hx, hz, hy = rng.uniform(0.5, 0.95), rng.uniform(0.95, 1.05), rng.uniform(0.22, 0.3)
    prims = [_box((x, hy, z), (hx, hy, hz), yaw)]
    bx, bz = _local(x, z, yaw, 0.0, -hz + 0.04)
    prims.append(_box((bx, 0.5, bz), (hx, 0.5, 0.04), yaw))
    return prims, np.hypot(hx, hz), None


def _b_cylinder(r_lo, r_hi, h_lo, h_hi):
    def build(rng, x, z, yaw, y0):
        r, h = rng.uniform(r_lo, r_hi), rng.uniform(h_lo, h_hi)
        return [_cyl(x, z, r, y0, y0 + h)], r, y0 + h
    return build


def _b_ball(r_lo, r_hi):
    def build(rng, x, z, yaw, y0):
        r = rng.uniform(r_lo, r_hi)
        return [_sphere((x, y0 + r, z), r)], r, None
    return build


def _b_lamp(rng, x, z, yaw, y0):
    h = rng.uniform(1.3, 1.7)
    return [_cyl(x, z, 0.02, 0.0, h), _cyl(x, z, 0.2, h, h + 0.3)], 0.2, None


def _b_toilet(rng, x, z, yaw, y0):
    tx, tz = _local(x, z, yaw, 0.0, -0.3)
    return [_cyl(x, z, 0.2, 0.0, 0.42), _box((tx, 0.6, tz), (0.22, 0.2, 0.09), yaw)], 0.4, None


def _b_plant(rng, x, z, yaw, y0):
    r = rng.uniform(0.12, 0.2)
    h = rng.uniform(0.25, 0.4)
    rf = rng.uniform(0.25, 0.4)
    return [_cyl(x, z, r, y0, y0 + h), _sphere((x, y0 + h + rf * 0.8, z), rf)], max(r, rf), None


def _b_person(rng, x, z, yaw, y0):
    h = rng.uniform(1.3, 1.6)
    return [_cyl(x, z, 0.18, 0.0, h), _sphere((x, h + 0.13, z), 0.12)], 0.2, None


def _b_pillar(rng, x, z, yaw, y0):
    r = rng.uniform(0.15, 0.3)
    return [_cyl(x, z, r, 0.0, 10.0)], r, None  # clipped by the ceiling


# Wall-mounted things: (width, height, bottom height, thickness) ranges.
def _wall(w, h, bottom, thick=(0.02, 0.04)):
    return ("wall", w, h, bottom, thick)


_CATALOGUE = {
    "nyuv2": {
        "floor": {
            "cabinet": _b_block((0.5, 0.7, 0.4), (1.2, 1.9, 0.6)), "bed": _b_bed, "chair": _b_chair, "sofa": _b_sofa,
            "table": _b_table, "bookshelf": _b_block((0.8, 1.5, 0.3), (1.2, 2.0, 0.4)),
            "counter": _b_block((1.4, 0.88, 0.55), (2.4, 0.95, 0.65)), "desk": _b_desk,
            "dresser": _b_block((0.8, 0.8, 0.45), (1.5, 1.2, 0.55)),
            "refrigerator": _b_block((0.65, 1.7, 0.65), (0.8, 1.9, 0.75)),
            "night stand": _b_block((0.4, 0.45, 0.35), (0.55, 0.65, 0.45)),
            "toilet": _b_toilet, "lamp": _b_lamp, "bathtub": _b_block((1.5, 0.5, 0.7), (1.7, 0.6, 0.8)),
            "person": _b_person, "otherstructure": _b_pillar,
            "otherfurniture": _b_cylinder(0.2, 0.4, 0.4, 0.75),
            "floor mat": _b_block((0.8, 0.01, 0.6), (2.0, 0.015, 1.4)),
        },
        "small": {
            "box": _b_block((0.2, 0.15, 0.2), (0.5, 0.45, 0.5)), "otherprop": _b_ball(0.1, 0.3),
            "bag": _b_ball(0.15, 0.25), "books": _b_block((0.15, 0.05, 0.2), (0.3, 0.2, 0.3)),
        },
        "wall": {
            "door": _wall((0.8, 0.95), (1.95, 2.1), (0.0, 0.0)), "window": _wall((0.8, 1.6), (1.0, 1.4), (0.8, 1.0)),
            "picture": _wall((0.3, 0.9), (0.3, 0.7), (1.1, 1.5)), "whiteboard": _wall((1.2, 2.0), (0.9, 1.2), (0.8, 1.0)),
            "television": _wall((0.8, 1.3), (0.5, 0.8), (1.0, 1.2), (0.05, 0.08)),
            "mirror": _wall((0.4, 0.8), (0.8, 1.4), (0.5, 0.8)), "blinds": _wall((0.8, 1.5), (1.0, 1.5), (0.8, 1.0)),
            "curtain": _wall((0.6, 1.2), (1.9, 2.2), (0.05, 0.1), (0.04, 0.08)),
        },
    },
    "taskonomy": {
        "floor": {
            "chair": _b_chair, "couch": _b_sofa, "potted plant": _b_plant, "bed": _b_bed, "dining table": _b_table,
            "toilet": _b_toilet, "refrigerator": _b_block((0.65, 1.7, 0.65), (0.8, 1.9, 0.75)),
            "oven": _b_block((0.55, 0.85, 0.55), (0.65, 0.95, 0.65)),
            "sink": _b_block((0.5, 0.85, 0.45), (0.9, 0.95, 0.6)),
        },
        "small": {
            "bottle": _b_cylinder(0.035, 0.05, 0.2, 0.32), "vase": _b_cylinder(0.06, 0.12, 0.2, 0.45),
            "microwave": _b_block((0.45, 0.26, 0.32), (0.55, 0.32, 0.4)),
            "toaster": _b_block((0.25, 0.17, 0.15), (0.32, 0.22, 0.2)),
            "book": _b_block((0.15, 0.03, 0.2), (0.25, 0.06, 0.3)),
        },
        "wall": {
            "tv": _wall((0.8, 1.3), (0.5, 0.8), (1.0, 1.2), (0.05, 0.08)),
            "clock": _wall((0.25, 0.4), (0.25, 0.4), (1.6, 1.9)),
        },
    },
}


def _sample_scene(rng: np.random.Generator, kind: str) -> _Scene:
    classes = _CLASSES[kind]
    cat = _CATALOGUE[kind]
    room = np.array([rng.uniform(3.0, 7.0), rng.uniform(2.4, 3.2), rng.uniform(3.0, 8.0)])
    # A hand-held camera at chest height: the floor's perspective then gives depth's scale.
    cam = np.array([rng.uniform(0.5, room[0] - 0.5), rng.uniform(1.3, 1.5), rng.uniform(0.5, room[2] - 0.5)])
    # Look roughly towards the room centre, as people photograph rooms.
    yaw = np.arctan2(room[0] / 2 - cam[0], room[2] / 2 - cam[2]) + rng.uniform(-0.9, 0.9)
    pitch, roll = rng.uniform(-0.45, 0.05), rng.uniform(-0.04, 0.04)
    fwd = np.array([np.cos(pitch) * np.sin(yaw), np.sin(pitch), np.cos(pitch) * np.cos(yaw)])
    right = np.cross(fwd, [0.0, 1.0, 0.0])
    right /= np.linalg.norm(right)
    down = np.cross(fwd, right)
    right, down = np.cos(roll) * right + np.sin(roll) * down, -np.sin(roll) * right + np.cos(roll) * down
    rot = np.stack([right, down, fwd], 1)
    light = np.array([rng.uniform(0.3, room[0] - 0.3), room[1] - 0.15, rng.uniform(0.3, room[2] - 0.3)])

    objects: list[_Object] = []
    footprints: list[tuple[float, float, float]] = []  # x, z, radius
    supports: list[tuple[float, float, float, float]] = []  # x, z, radius, top height
    names = list(cat["floor"])
    n_floor = min(len(names), int(rng.integers(3, 7)))
    for name in rng.permutation(names)[:n_floor]:
        build = cat["floor"][name]
        for _ in range(20):
            if rng.random() < 0.7:  # mostly in view
                ang = yaw + rng.uniform(-0.6, 0.6)
                dist = rng.uniform(1.2, 4.5)
                x, z = cam[0] + dist * np.sin(ang), cam[2] + dist * np.cos(ang)
            else:
                x, z = rng.uniform(0, room[0]), rng.uniform(0, room[2])
            obj_yaw = rng.choice([0.0, np.pi / 2, np.pi, -np.pi / 2])  # mostly aligned with the walls
            obj_yaw += rng.uniform(-0.5, 0.5) if rng.random() < 0.3 else 0.0
            prims, rad, top = build(rng, x, z, obj_yaw, 0.0)
            ok = rad + 0.05 < x < room[0] - rad - 0.05 and rad + 0.05 < z < room[2] - rad - 0.05
            ok = ok and np.hypot(x - cam[0], z - cam[2]) > rad + 0.6
            ok = ok and all(np.hypot(x - fx, z - fz) > 0.9 * (rad + fr) for fx, fz, fr in footprints)
            if name == "otherstructure":
                ok = ok and np.hypot(x - light[0], z - light[2]) > rad + 0.4
            if ok:
                if name != "floor mat":
                    footprints.append((x, z, rad))
                if top is not None and name != "floor mat":
                    supports.append((x, z, rad, top))
                objects.append(_Object(_cls(kind, str(name)), prims).finish())
                break

    small = list(cat["small"])
    for name in rng.permutation(small)[: int(rng.integers(1, 3))]:
        build = cat["small"][name]
        if supports and rng.random() < 0.8:
            sx, sz, srad, top = supports[int(rng.integers(len(supports)))]
            ang, dist = rng.uniform(0, 2 * np.pi), rng.uniform(0, 0.35) * srad
            x, z, y0 = sx + dist * np.sin(ang), sz + dist * np.cos(ang), top
        else:
            x, z, y0 = rng.uniform(0.5, room[0] - 0.5), rng.uniform(0.5, room[2] - 0.5), 0.0
            if np.hypot(x - cam[0], z - cam[2]) < 0.8:
                continue
        prims, _, _ = build(rng, x, z, rng.uniform(0, np.pi), y0)
        objects.append(_Object(_cls(kind, str(name)), prims).finish())

    walls = list(cat["wall"])
    used: list[tuple[int, float, float]] = []
    for name in rng.permutation(walls)[: int(rng.integers(1, 4))]:
        _, wr, hr, br, tr = cat["wall"][name]
        w, h, bottom, th = rng.uniform(*wr), rng.uniform(*hr), rng.uniform(*br), rng.uniform(*tr)
        for _ in range(10):
            side = int(rng.integers(4))  # 0: x=0, 1: x=max, 2: z=0, 3: z=max
            length = room[2] if side < 2 else room[0]
            if w + 0.3 > length:
                continue
            s = rng.uniform(w / 2 + 0.15, length - w / 2 - 0.15)
            if any(u == side and abs(s - us) < (w + uw) / 2 + 0.1 for u, us, uw in used):
                continue
            y = bottom + h / 2
            if side < 2:
                x = th / 2 if side == 0 else room[0] - th / 2
                prim = _box((x, y, s), (th / 2, h / 2, w / 2))
            else:
                z = th / 2 if side == 2 else room[2] - th / 2
                prim = _box((s, y, z), (w / 2, h / 2, th / 2))
            used.append((side, s, w))
            objects.append(_Object(_cls(kind, str(name)), [prim]).finish())
            break

    room_classes = (
        (_cls(kind, "wall"), _cls(kind, "floor"), _cls(kind, "ceiling")) if kind == "nyuv2"
        else (_cls(kind, "background"),) * 3
    )
    n_mat = _N_ROOM_MATERIALS + len(classes)
    tint = rng.uniform(0.8, 1.2, (n_mat, 1)) * rng.uniform(0.93, 1.07, (n_mat, 3))
    return _Scene(room, cam, rot, light, objects, room_classes, tint, float(rng.uniform(0.004, 0.02)))


# ----------------------------------------------------------------------------- image filters
def _conv_sep(img: np.ndarray, kx: np.ndarray, ky: np.ndarray) -> np.ndarray:
    """Separable 2-D correlation with edge replication; img [H,W]."""
    rx, ry = len(kx) // 2, len(ky) // 2
    p = np.pad(img, ((0, 0), (rx, rx)), mode="edge")
    w = img.shape[1]
    tmp = sum(k * p[:, i:i + w] for i, k in enumerate(kx))
    p = np.pad(tmp, ((ry, ry), (0, 0)), mode="edge")
    h = img.shape[0]
    return sum(k * p[i:i + h] for i, k in enumerate(ky))


def _gauss(sigma: float) -> np.ndarray:
    r = max(1, int(np.ceil(2.5 * sigma)))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    return k / k.sum()


_SMOOTH = np.array([1.0, 2.0, 1.0]) / 4.0
_DIFF = np.array([-1.0, 0.0, 1.0]) / 2.0


def _sobel(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Image gradients (per pixel) along x and y, Sobel-smoothed."""
    return _conv_sep(gray, _DIFF, _SMOOTH), _conv_sep(gray, _SMOOTH, _DIFF)


def keypoint_target(gray: np.ndarray) -> np.ndarray:
    """Harris corner response of a [H,W] gray image in [0,1], mapped to [-1,1].

    R = det(S) - 0.04 tr(S)^2 of the Gaussian(1.0)-windowed structure tensor S;
    negative R (edges, flat) is 0, R >= KEYPOINT_SATURATION is 1; then 2x-1.
    """
    gx, gy = _sobel(gray)
    g = _gauss(1.0)
    sxx, syy, sxy = (_conv_sep(a, g, g) for a in (gx * gx, gy * gy, gx * gy))
    r = sxx * syy - sxy * sxy - 0.04 * (sxx + syy) ** 2
    return (np.clip(r / KEYPOINT_SATURATION, 0.0, 1.0) * 2.0 - 1.0).astype(np.float32)


def edge_target(gray: np.ndarray) -> np.ndarray:
    """Sobel gradient magnitude of a [H,W] gray image in [0,1], mapped to [-1,1].

    The image is first smoothed with a Gaussian (0.7 px); a gray-level change
    of EDGE_SATURATION per pixel or more maps to 1; then 2x-1.
    """
    g = _gauss(0.7)
    gx, gy = _sobel(_conv_sep(gray, g, g))
    return (np.clip(np.hypot(gx, gy) / EDGE_SATURATION, 0.0, 1.0) * 2.0 - 1.0).astype(np.float32)


# ----------------------------------------------------------------------------- rendering
def _as_rng(rng_or_seed) -> np.random.Generator:
    if isinstance(rng_or_seed, np.random.Generator):
        return rng_or_seed
    if isinstance(rng_or_seed, (int, np.integer, np.random.SeedSequence)) and not isinstance(rng_or_seed, bool):
        return np.random.default_rng(rng_or_seed)
    raise ValueError(f"render_scene needs a seed (int or SeedSequence) or numpy Generator, got {type(rng_or_seed).__name__}")


def intrinsics(height: int, width: int) -> np.ndarray:
    """The 3x3 pinhole matrix used for a [height, width] render.

    Pixel (row v, column u) has its centre at (u + 0.5, v + 0.5), so its ray in
    camera coordinates is ((u + 0.5 - cx) / f, (v + 0.5 - cy) / f, 1).
    """
    f = FOCAL_FRACTION * width
    return np.array([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]])


def _screen_rect(center_cam: np.ndarray, radius: float, k: np.ndarray, height: int, width: int):
    """Conservative pixel rectangle (v0, v1, u0, u1) covering a sphere, or None if off screen."""
    x, y, z = center_cam
    if z - radius <= 1e-3:
        return 0, height, 0, width
    f, cx, cy = k[0, 0], k[0, 2], k[1, 2]
    lo = lambda a: min((a - radius) / (z - radius), (a - radius) / (z + radius))  # noqa: E731
    hi = lambda a: max((a + radius) / (z - radius), (a + radius) / (z + radius))  # noqa: E731
    u0 = max(0, int(np.floor(f * lo(x) + cx - 0.5)))
    u1 = min(width, int(np.ceil(f * hi(x) + cx - 0.5)) + 1)
    v0 = max(0, int(np.floor(f * lo(y) + cy - 0.5)))
    v1 = min(height, int(np.ceil(f * hi(y) + cy - 0.5)) + 1)
    if u0 >= u1 or v0 >= v1:
        return None
    return v0, v1, u0, u1


def _albedo(points: np.ndarray, mat: np.ndarray, kind: str, tint: np.ndarray) -> np.ndarray:
    """Texture colour [3,N] at world points [3,N] of materials [N]."""
    m = _MATERIALS[kind]
    q = (points + m.offset.T[:, mat]) * m.freq[mat]
    s = (q * m.direction.T[:, mat]).sum(0)
    noise = _noise(q)
    stripes = 0.5 + 0.5 * np.tanh(4.0 * np.sin(2 * np.pi * s))
    checker = (np.floor(q).astype(np.int64).sum(0) & 1).astype(float)
    grain = 0.5 + 0.5 * np.sin(2 * np.pi * s + 1.2 * noise)
    plain = np.clip(0.5 + 0.45 * noise, 0.0, 1.0)
    v = np.choose(m.pattern[mat], [plain, stripes, checker, grain])
    col = m.color_a.T[:, mat] * (1 - v) + m.color_b.T[:, mat] * v
    fine = 1.0 + 0.05 * _noise(points * 23.0)
    return col * tint.T[:, mat] * fine


def render_scene(rng_or_seed, height: int, width: int, kind: str) -> dict[str, np.ndarray]:
    """Render one random room scene.

    Returns numpy arrays: rgb uint8 [H,W,3]; depth float32 [H,W] metres (z along
    the camera axis, 0 where invalid); depth_valid bool [H,W]; normal float32
    [H,W,3] unit, camera coordinates x right / y down / z forward, facing the
    camera (0 where invalid); normal_valid bool [H,W] (NYUv2: = depth_valid;
    Taskonomy: all True); seg uint8 [H,W] class ids; intrinsics float64 [3,3];
    and for kind "taskonomy" keypoints2d and edge_texture float32 [H,W] in [-1,1].
    kind is a scene kind (:data:`SCENE_KINDS`).
    """
    _check_kind(kind, SCENE_KINDS)
    if int(height) < 4 or int(width) < 4:
        raise ValueError(f"render size {height}x{width} is too small; use at least 4x4 pixels")
    height, width = int(height), int(width)
    rng = _as_rng(rng_or_seed)
    sc = _sample_scene(rng, kind)
    k = intrinsics(height, width)
    n_pix = height * width

    # Primary rays, component-major [3,H,W]; d has unit z in camera
    # coordinates, so the hit distance t along d is the z-depth.
    u = (np.arange(width) + 0.5 - k[0, 2]) / k[0, 0]
    v = (np.arange(height) + 0.5 - k[1, 2]) / k[1, 1]
    d_cam = np.stack(np.broadcast_arrays(u[None, :], v[:, None], np.ones((height, width))))
    d = sc.cam_rot @ d_cam.reshape(3, -1)
    o = sc.cam_pos

    # The room: the camera is inside, so the ray leaves through the nearest slab.
    d_s = _safe(d)
    t_axis = np.where(d_s > 0, (sc.room - o)[:, None] / d_s, -o[:, None] / d_s)
    t = t_axis.min(0)
    normal = np.where(t_axis == t, -np.sign(d_s), 0.0)
    surf = np.where(t_axis[1] == t, np.where(d[1] < 0, 1, 2), 0)  # 0 wall, 1 floor, 2 ceiling
    cls = np.asarray(sc.room_classes)[surf]
    mat = surf.copy()

    # Objects, z-buffered; each primitive is tested only inside its screen rectangle.
    t2, c2, m2 = t.reshape(height, width), cls.reshape(height, width), mat.reshape(height, width)
    n2, d2 = normal.reshape(3, height, width), d.reshape(3, height, width)
    for obj in sc.objects:
        mat_id = _N_ROOM_MATERIALS + obj.cls
        for prim in obj.prims:
            rect = _screen_rect(sc.cam_rot.T @ (prim.center - o), prim.bound_radius(), k, height, width)
            if rect is None:
                continue
            v0, v1, u0, u1 = rect
            tp, npr = _HIT[prim.kind](prim, o, d2[:, v0:v1, u0:u1].reshape(3, -1), 1e-6)
            tp, npr = tp.reshape(v1 - v0, u1 - u0), npr.reshape(3, v1 - v0, u1 - u0)
            closer = tp < t2[v0:v1, u0:u1]
            t2[v0:v1, u0:u1][closer] = tp[closer]
            n2[:, v0:v1, u0:u1][:, closer] = npr[:, closer]
            c2[v0:v1, u0:u1][closer] = obj.cls
            m2[v0:v1, u0:u1][closer] = mat_id

    normal /= np.sqrt((normal * normal).sum(0))
    # Normals face the camera (guards spheres/caps seen at grazing angles).
    normal *= np.where((normal * d).sum(0) > 0, -1.0, 1.0)
    points = o[:, None] + t * d

    # Shading: Lambert from a point light with object shadows, plus ambient.
    to_light = sc.light[:, None] - points
    dist2 = (to_light * to_light).sum(0)
    lambert = np.maximum((normal * to_light).sum(0), 0.0) / np.sqrt(dist2)
    lit = lambert > 0
    origin = points + 2e-3 * normal
    shadow = np.zeros(n_pix, bool)
    for obj in sc.objects:
        # Only rays whose segment passes the object's bounding sphere are tested exactly.
        c = obj.center[:, None]
        s = np.clip(((c - origin) * to_light).sum(0) / dist2, 0.0, 1.0)
        gap = origin + s * to_light - c
        cand = np.flatnonzero(lit & ~shadow & ((gap * gap).sum(0) < obj.radius ** 2))
        if cand.size == 0:
            continue
        for prim in obj.prims:
            tp, _ = _HIT[prim.kind](prim, origin[:, cand], to_light[:, cand], 1e-4)
            shadow[cand[tp < 1.0]] = True
    irradiance = AMBIENT + LIGHT_GAIN * lambert * ~shadow / (1.0 + dist2 / LIGHT_FALLOFF_M2)
    clean = np.clip(_albedo(points, mat, kind, sc.tint) * irradiance, 0.0, 1.0)
    clean = clean.reshape(3, height, width).transpose(1, 2, 0)
    noisy = clean + rng.normal(0.0, sc.noise_sigma, clean.shape)
    rgb = np.clip(np.round(noisy * 255.0), 0, 255).astype(np.uint8)

    # Simulated sensor dropouts: grazing and far surfaces, plus sparse speckle.
    cos_view = -(normal * d).sum(0) / np.sqrt((d * d).sum(0))
    drop = rng.random(n_pix)
    invalid = ((cos_view < 0.12) & (drop < 0.6)) | ((t > 7.0) & (drop < 0.5)) | (drop < 0.002)
    depth_valid = ~invalid.reshape(height, width)
    depth = np.where(depth_valid, t.reshape(height, width), 0.0).astype(np.float32)

    n_cam = (sc.cam_rot.T @ normal).reshape(3, height, width).transpose(1, 2, 0)  # world -> camera
    normal_valid = depth_valid.copy() if kind == "nyuv2" else np.ones((height, width), bool)
    n_cam = np.where(normal_valid[..., None], n_cam, 0.0).astype(np.float32)

    out = {
        "rgb": rgb,
        "depth": depth,
        "depth_valid": depth_valid,
        "normal": n_cam,
        "normal_valid": normal_valid,
        "seg": cls.reshape(height, width).astype(np.uint8),
        "intrinsics": k,
    }
    if kind == "taskonomy":
        gray = clean @ np.array([0.299, 0.587, 0.114])
        out["keypoints2d"] = keypoint_target(gray)
        out["edge_texture"] = edge_target(gray)
    return out


# ----------------------------------------------------------------------------- datasets on disk
def scene_seed(seed: int, kind: str, split: str, index: int) -> np.random.SeedSequence:
    """The seed of scene `index` of `split` in a dataset of format `kind` made with `seed`.

    Depends only on these four values, so any worker can render any scene;
    formats of one scene kind share their scenes (nyuv2_mtan's are nyuv2's).
    """
    _check_kind(kind)
    if split not in _SPLIT_CODE:
        raise ValueError(f"unknown split {split!r}; use train or test")
    return np.random.SeedSequence([int(seed), _KIND_CODE[_renderable()[kind].scene], _SPLIT_CODE[split], int(index)])


def _render_and_write(job: tuple) -> tuple[str, int, list[str], np.ndarray]:
    root, kind, split, index, height, width, seed = job
    rendered = _renderable()[kind]
    out = render_scene(scene_seed(seed, kind, split, index), height, width, rendered.scene)
    paths, labels = rendered.write(str(root), split, index, out)
    n = len(rendered.classes)
    hist = np.bincount(labels[(labels >= 0) & (labels < n)].ravel(), minlength=n)
    return split, index, paths, hist


def _main_importable() -> bool:
    # Spawned workers re-import the main script; code piped on stdin cannot be.
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    return main_file is None or os.path.exists(main_file)


def _default_workers() -> int:
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    return max(1, min(n, 8))


def generate_dataset(root: str | os.PathLike, kind: str, n_train: int, n_test: int, height: int, width: int,
                     seed: int, workers: int | None = None, progress: bool = True,
                     n_test_small: int | None = None) -> Path:
    """Render a synthetic dataset into `root` in the real on-disk format of `kind`.

    Writes n_train + n_test scenes of height x width pixels with data.formats'
    writers, the split json (Taskonomy: also `test_small`, the first
    n_test_small test scenes, default max(1, n_test // 5), and
    semseg_prior_factor.npy with median-frequency weights of the training
    pixels; nyuv2_mtan: no json, the test scenes go to val/), and
    synthetic.json describing the parameters. Scene i of a split
    depends only on (seed, kind, split, i): the bytes do not depend on
    `workers` (processes; default: the usable CPUs, at most 8; 0 or 1 renders
    in this process). Returns root.
    """
    _check_kind(kind)
    for name, val, low in (("n_train", n_train, 1), ("n_test", n_test, 1), ("height", height, 8),
                           ("width", width, 8), ("seed", seed, 0)):
        if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < low:
            raise ValueError(f"synthetic dataset {name} must be an integer >= {low}, got {val!r}")
    if n_test_small is None:
        n_test_small = max(1, n_test // 5)
    if not 1 <= n_test_small <= n_test:
        raise ValueError(f"n_test_small must be between 1 and n_test={n_test}, got {n_test_small}")
    from ..progress import progress as progress_bar

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    jobs = [(str(root), kind, split, i, int(height), int(width), int(seed))
            for split, n in (("train", n_train), ("test", n_test)) for i in range(n)]
    paths: dict[str, list] = {"train": [None] * n_train, "test": [None] * n_test}
    rendered = _renderable()[kind]
    counts = np.zeros(len(rendered.classes), np.int64)
    workers = _default_workers() if workers is None else int(workers)
    workers = min(workers, max(1, len(jobs) // 8))  # tiny datasets: a pool costs more than it saves
    if workers > 1 and not sys.platform.startswith("linux") and not _main_importable():
        workers = 1
    bar = progress_bar(total=len(jobs), desc=f"rendering {kind} {height}x{width}", unit="img", enabled=progress)
    try:
        if workers <= 1:
            results = map(_render_and_write, jobs)
            _collect(results, paths, counts, bar)
        else:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            # Fork on Linux: workers only run numpy and PIL, and unlike spawn or
            # forkserver it neither re-runs the caller's main script (which breaks
            # scripts without a __main__ guard) nor re-imports torch per worker.
            # The executor raises (rather than hangs) if a worker dies.
            method = "fork" if sys.platform.startswith("linux") else "spawn"
            with ProcessPoolExecutor(workers, mp_context=mp.get_context(method), initializer=_die_with_parent) as pool:
                _collect(pool.map(_render_and_write, jobs, chunksize=8), paths, counts, bar)
    finally:
        bar.close()
    rendered.finish(str(root), paths, counts, n_test_small)
    meta = {"renderer_version": RENDERER_VERSION, "kind": kind, "n_train": int(n_train), "n_test": int(n_test),
            "n_test_small": int(n_test_small) if kind == "taskonomy" else None, "height": int(height),
            "width": int(width), "seed": int(seed), "classes": list(rendered.classes),
            "train_pixels_per_class": counts.tolist()}
    atomic.write_text(root / "synthetic.json", json.dumps(meta, indent=1))
    return root


def _die_with_parent() -> None:
    """Pool worker start-up: on Linux, ask the kernel to kill this worker when its parent dies, so
    a killed job leaves no orphan renderers holding its output pipes open."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
        except OSError:
            pass


def _collect(results, paths: dict, counts: np.ndarray, bar) -> None:
    for split, index, rel, hist in results:
        paths[split][index] = rel
        if split == "train":
            counts += hist
        bar.update(1)


def synthetic_key(kind: str, n_train: int, n_test: int, height: int, width: int, seed: int) -> dict:
    """Everything that determines a rendered dataset's bytes (the cache key's contents)."""
    return {"kind": kind, "n_train": int(n_train), "n_test": int(n_test), "height": int(height),
            "width": int(width), "seed": int(seed), "renderer_version": RENDERER_VERSION}


def ensure_synthetic(cache_dir: str | os.PathLike, kind: str, n_train: int, n_test: int, height: int, width: int,
                     seed: int, workers: int | None = None, progress: bool = True) -> Path:
    """The root of a rendered dataset inside `cache_dir`, rendering it on first use.

    The folder is `synthetic-<kind>-<H>x<W>-<content key>` (the key covers the
    arguments and RENDERER_VERSION, so a renderer change renders afresh). It is
    rendered into a temporary folder and renamed into place when complete,
    under a lock, so concurrent callers render once and a crash never leaves
    a folder that looks finished (see cache.build_once).
    """
    _check_kind(kind)
    key = synthetic_key(kind, n_train, n_test, height, width, seed)
    final = Path(cache_dir) / f"synthetic-{kind}-{int(height)}x{int(width)}-{content_key(key)}"
    return build_once(final, lambda tmp: generate_dataset(
        tmp, kind, n_train, n_test, height, width, seed, workers=workers, progress=progress))


# ----------------------------------------------------------------------------- sample grid
_GRID_COLUMNS = ("rgb", "seg", "normal", "depth", "keypoints2d", "edge_texture")


def _display_item(item: Mapping, kinds: Mapping) -> dict[str, np.ndarray]:
    """A dataset item (image [3,H,W], targets, masks) as pictures, one per task, drawn in its kind's
    colours (`kinds`: task -> kind name; :func:`mtl_attack.pictures.task_picture`)."""
    cells = {"rgb": image_picture(item["image"])}
    for task, target in item["targets"].items():
        cells[task] = task_picture(kinds.get(task, "regression"), target, item["masks"][task])
    return cells


def _display_sample(item) -> dict[str, np.ndarray]:
    """Normalise a render dict or a formats reader dict to display arrays (HWC / HW numpy)."""
    if not isinstance(item, Mapping):
        raise ValueError(f"save_sample_grid needs dict samples, got {type(item).__name__}")
    rgb = np.asarray(item["rgb"] if "rgb" in item else item["image"])
    out = {"rgb": rgb.astype(np.float32) / 255.0 if rgb.dtype == np.uint8 else rgb.astype(np.float32)}  # MTAN: float
    for key in ("seg", "normal", "normal_valid", "depth", "depth_valid", "keypoints2d", "edge_texture"):
        if key in item:
            out[key] = np.asarray(item[key])
    return out


def _picture(sample: dict, col: str) -> np.ndarray:
    """One column of a render or reader dict (:func:`_display_sample`) as a picture: seg, normal and
    depth in their kinds' colours, keypoints and edges grey from -1 to 1."""
    if col == "rgb":
        return sample["rgb"]
    if col == "seg":
        return task_picture("segmentation", sample["seg"])
    if col == "normal":
        return task_picture("normal", sample["normal"].transpose(2, 0, 1), sample.get("normal_valid"))
    if col == "depth":
        return task_picture("depth", sample["depth"], sample.get("depth_valid", sample["depth"] > 0))
    return task_picture("regression", sample[col], None, (-1.0, 1.0))


def save_sample_grid(root_or_samples, path: str | os.PathLike, n: int = 4, size: tuple[int, int] = (128, 128),
                     dpi: int = 80) -> Path:
    """Save a PNG grid: one row per sample, columns rgb and its maps (seg, normal, depth, ...).

    root_or_samples: a kind name ("nyuv2"/"taskonomy") or a list of them
    (render n scenes of each with seeds 0..n-1 at `size` = (H, W); the docs
    figure is save_sample_grid(["nyuv2", "taskonomy"],
    "docs/synthetic_samples.png", dpi=64)); a dataset folder (its first n test
    samples, read with data.formats); or a sequence / torch Dataset of samples
    (render_scene dicts, formats reader dicts, or dataset items with image,
    targets, masks) of which the first n are shown. Colours: seg by a fixed
    per-class palette (void black), normal as (n+1)/2 (invalid black), depth
    per image with viridis (invalid black), keypoints/edges gray from -1 to 1.
    """
    if isinstance(root_or_samples, str) and root_or_samples in SCENE_KINDS:
        root_or_samples = [root_or_samples]
    if isinstance(root_or_samples, (list, tuple)) and root_or_samples and all(
            isinstance(k, str) and k in SCENE_KINDS for k in root_or_samples):
        samples = [render_scene(i, size[0], size[1], k) for k in root_or_samples for i in range(n)]
    elif isinstance(root_or_samples, (str, os.PathLike)):
        samples = _read_root_samples(Path(root_or_samples), n)
    else:
        try:
            count = min(n, len(root_or_samples))
        except TypeError:
            raise ValueError("save_sample_grid needs a kind name, a dataset folder or a sequence of samples") from None
        samples = [root_or_samples[i] for i in range(count)]
    if not samples:
        raise ValueError("save_sample_grid got no samples to show")
    if "targets" in samples[0]:
        base = getattr(root_or_samples, "dataset", root_or_samples)  # a Subset's dataset
        kinds = {t: k.name for t, (k, _) in getattr(base, "kinds", {}).items()}
        rows = [_display_item(s, kinds) for s in samples]
    else:
        shown = [_display_sample(s) for s in samples]
        rows = [{col: _picture(s, col) for col in _GRID_COLUMNS if col in s} for s in shown]
    cols = list(dict.fromkeys(col for row in rows for col in row))
    cells = [[row.get(col) for col in cols] for row in rows]
    return atomic.write_bytes(path, grid_png(cells, cols, cell_inches=1.9, dpi=dpi))


def _read_root_samples(root: Path, n: int) -> list[dict]:
    from . import formats

    if (root / formats.NYUV2_JSON).is_file():
        kind, read = "nyuv2", lambda p: formats.read_nyuv2_sample(str(root), p)
    elif (root / formats.TASKONOMY_JSON).is_file():
        kind, read = "taskonomy", lambda p: formats.read_taskonomy_sample(str(root), p, split="test")
    elif (root / "val" / formats.MTAN_DIRS[0]).is_dir():
        entries = formats.list_mtan_split(str(root), "val").entries[:n]
        return [formats.read_mtan_sample(str(root), e) for e in entries]
    else:
        raise FileNotFoundError(f"{root} holds neither {formats.NYUV2_JSON}, {formats.TASKONOMY_JSON} nor "
                                "val/image/; pass a dataset folder")
    entries = formats.read_split_json(str(root), kind)["test"][:n]
    return [read(e) for e in entries]

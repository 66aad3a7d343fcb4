"""Pictures of images, ground truth and predictions in each task kind's conventional colours.

segmentation: a fixed colour per class (ignored pixels black); normal: the unit vector as RGB,
(n + 1) / 2 (invalid black); depth: viridis over a given range (invalid black); regression:
grey over a given range. Every picture is float RGB [H, W, 3] in [0, 1] (numpy), and
:func:`grid_png` lays them out with titles as one PNG.
"""
from __future__ import annotations

import io
from typing import Sequence

import numpy as np
import torch

__all__ = ["palette", "task_picture", "prediction_picture", "truth_scale", "value_range", "image_picture",
           "grid_png", "prediction_grid"]


def _hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    h, s, v = hsv[..., 0] * 6.0, hsv[..., 1], hsv[..., 2]
    i = np.floor(h).astype(int) % 6
    f = h - np.floor(h)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    table = np.stack([np.stack(c, -1) for c in ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))], 0)
    return np.take_along_axis(table, i[None, ..., None].repeat(3, -1), 0)[0]


def palette() -> np.ndarray:
    """A fixed colour per class id 0-254 (uint8 [256, 3], golden-ratio hues); 255 (ignored) is black."""
    rng = np.random.default_rng(3)
    hsv = np.stack([(np.arange(256) * 0.618034) % 1.0, rng.uniform(0.45, 0.9, 256), rng.uniform(0.55, 0.95, 256)], 1)
    pal = np.round(_hsv_to_rgb(hsv) * 255).astype(np.uint8)
    pal[255] = 0
    return pal


def _np(x) -> np.ndarray:
    return x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def value_range(target, valid=None) -> tuple[float, float]:
    """(low, high) of a depth or regression target's valid values ([C, H, W] or [H, W]), for a colour scale."""
    t = _np(target)
    t = t[0] if t.ndim == 3 else t
    m = np.ones(t.shape, bool) if valid is None else _np(valid).astype(bool)
    vals = t[m & np.isfinite(t)]
    return (float(vals.min()), float(vals.max())) if vals.size else (0.0, 1.0)


def task_picture(kind: str, value, valid=None, vrange: tuple[float, float] | None = None) -> np.ndarray:
    """One task's map as float RGB [H, W, 3] in [0, 1].

    kind: a task kind (segmentation, normal, depth, regression); value: a prediction [C, H, W]
    (segmentation logits: argmax) or a target (segmentation class ids [H, W]; others [C, H, W]);
    valid: bool [H, W] or None (every pixel); vrange: the colour scale of depth and regression
    maps (default the map's own valid range; give the ground truth's to compare maps).
    """
    v = _np(value)
    m = None if valid is None else _np(valid).astype(bool)
    if kind == "segmentation":
        labels = v.argmax(0) if v.ndim == 3 else v
        labels = np.where(m, labels, 255) if m is not None else labels
        return palette()[np.clip(labels.astype(np.int64), 0, 255)].astype(np.float32) / 255.0
    if kind == "normal":
        n = v[:3] / np.maximum(np.linalg.norm(v[:3], axis=0, keepdims=True), 1e-12)
        rgb = ((n + 1) / 2).transpose(1, 2, 0).clip(0, 1)
    else:
        plane = v[0] if v.ndim == 3 else v
        lo, hi = vrange if vrange is not None else value_range(plane, m)
        scaled = np.clip((plane - lo) / max(hi - lo, 1e-12), 0, 1)
        if kind == "depth":
            import matplotlib

            rgb = matplotlib.colormaps["viridis"](scaled)[..., :3]
        else:
            rgb = np.repeat(scaled[..., None], 3, axis=-1)
    if m is not None:
        rgb = np.where(m[..., None], rgb, 0.0)
    return rgb.astype(np.float32)


def truth_scale(kind: str, target, valid) -> tuple[float, float] | None:
    """The colour scale a task's maps share: the ground truth's valid range for depth and
    regression maps, None (fixed colours) for segmentation and normals."""
    return None if kind in ("segmentation", "normal") else value_range(target, valid)


def prediction_picture(kind: str, pred: torch.Tensor, size: tuple[int, int],
                       vrange: tuple[float, float] | None) -> np.ndarray:
    """A prediction [C, h, w] upsampled to the truth's `size` as the metrics do it, then drawn."""
    from .tasks import upsample_prediction

    return task_picture(kind, upsample_prediction(pred[None].float(), size)[0], None, vrange)


def image_picture(image) -> np.ndarray:
    """An image [3, H, W] in [0, 1] as float RGB [H, W, 3]."""
    return _np(image).transpose(1, 2, 0).clip(0, 1).astype(np.float32)


def grid_png(cells: Sequence[Sequence[np.ndarray | None]], col_titles: Sequence[str] = (),
             row_titles: Sequence[str] = (), cell_inches: float = 1.3, dpi: int = 80, title: str | None = None) -> bytes:
    """PNG bytes of a grid of pictures (rows of float RGB [H, W, 3]; None = an empty cell)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n_rows, n_cols = len(cells), max(len(r) for r in cells)
    fig = Figure(figsize=(cell_inches * n_cols + (0.9 if row_titles else 0), cell_inches * n_rows + 0.35
                          + (0.3 if title else 0)))
    FigureCanvasAgg(fig)
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    for r in range(n_rows):
        for c in range(n_cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if r == 0 and c < len(col_titles):
                ax.set_title(col_titles[c], fontsize=8)
            if c == 0 and r < len(row_titles):
                ax.set_ylabel(row_titles[r], fontsize=7, rotation=0, ha="right", va="center")
            pic = cells[r][c] if c < len(cells[r]) else None
            if pic is not None:
                ax.imshow(pic, interpolation="nearest")
    height = fig.get_figheight()
    if title:
        fig.suptitle(title, fontsize=9, y=1 - 0.04 / height, va="top")
    fig.tight_layout(pad=0.2, h_pad=0.4, w_pad=0.3, rect=(0, 0, 1, 1 - 0.3 / height) if title else None)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def prediction_grid(examples: Sequence[dict], tasks, title: str | None = None) -> bytes:
    """PNG bytes: one row per example, columns the image, the adversarial image and, per task, the
    ground truth, the clean prediction and the attacked prediction in the task kind's colours
    (depth and regression maps on the ground truth's scale).

    examples: dicts as :func:`mtl_attack.evaluation.evaluate` keeps them ("image", "adversarial"
    [3, H, W]; "targets", "masks", "clean_pred", "attacked_pred": task -> one image's maps);
    tasks: the job's :class:`~mtl_attack.tasks.Task` objects, in order.
    """
    if not examples:
        raise ValueError("no examples to draw")
    cols = ["image", "adversarial"]
    for t in tasks:
        cols += [f"{t.name}\ntruth", "clean", "attacked"]
    rows = []
    for e in examples:
        row = [image_picture(e["image"]), image_picture(e["adversarial"])]
        size = tuple(e["image"].shape[-2:])
        for t in tasks:
            target, mask = e["targets"][t.name], e["masks"][t.name]
            vrange = truth_scale(t.kind, target, mask)
            row += [task_picture(t.kind, target, mask, vrange)] + [
                prediction_picture(t.kind, e[k][t.name], size, vrange) for k in ("clean_pred", "attacked_pred")]
        rows.append(row)
    return grid_png(rows, cols, title=title, cell_inches=1.1)

"""Class tables of the rendered scenes and the label maps between them (pure numpy)."""
from __future__ import annotations

import numpy as np

# NYU-40 label order as in AdaShare's NYUv2 copy (0-based; 255 is void).
NYU40_CLASSES = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf",
    "picture", "counter", "blinds", "desk", "shelves", "curtain", "dresser", "pillow", "mirror", "floor mat",
    "clothes", "ceiling", "books", "refrigerator", "television", "paper", "towel", "shower curtain", "box", "whiteboard",
    "person", "night stand", "toilet", "sink", "lamp", "bathtub", "bag", "otherstructure", "otherfurniture", "otherprop",
)
# Taskonomy's 17 indoor semantic classes (COCO-derived), background first.
TASKONOMY_CLASSES = (
    "background", "bottle", "chair", "couch", "potted plant", "bed", "dining table", "toilet", "tv",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase",
)
# NYUv2's 13 classes in MTAN's label order (0-based; -1 is ignored).
NYU13_CLASSES = ("bed", "books", "ceiling", "chair", "floor", "furniture", "objects", "picture", "sofa", "table",
                 "tv", "wall", "window")
# NYU-40 id (0-based) -> NYU-13 id (0-based): the standard mapping (ankurhanda/nyuv2-meta-data
# class13Mapping.mat, 1-based there with 0 = unknown), e.g. door -> wall, blinds and curtain -> window.
NYU40_TO_NYU13 = np.array([11, 4, 5, 0, 3, 8, 9, 11, 12, 5, 7, 5, 12, 9, 5, 12, 5, 6, 6, 4,
                           6, 2, 1, 5, 10, 6, 6, 6, 6, 6, 6, 5, 6, 6, 6, 6, 6, 6, 5, 6], np.int64)

def nyu40_to_nyu13(seg: np.ndarray) -> np.ndarray:
    """NYU-40 class ids uint8 [H,W] (0-39, 255 void) -> MTAN labels float32 [H,W] (0-12, -1 ignored)."""
    table = np.full(256, -1.0, np.float32)
    table[: len(NYU40_TO_NYU13)] = NYU40_TO_NYU13
    return table[np.asarray(seg, np.uint8)]



# Seven room classes for the stand-in stored in Cityscapes' format: Cityscapes' 7 categories
# (flat, construction, object, nature, sky, human, vehicle) have no indoor counterpart, so the
# stand-in groups NYU-40 into seven room categories of its own.
ROOM7_CLASSES = ("flat", "wall", "ceiling", "furniture", "fixture", "object", "person")
_ROOM7_GROUPS = {
    0: ("floor", "floor mat"),
    1: ("wall", "door", "window", "blinds", "curtain", "otherstructure", "whiteboard", "picture", "mirror"),
    2: ("ceiling",),
    3: ("bed", "sofa", "table", "desk", "counter", "cabinet", "bookshelf", "dresser", "refrigerator", "bathtub",
        "otherfurniture", "shelves"),
    4: ("chair", "toilet", "sink", "night stand", "lamp"),
    6: ("person",),
}
# NYU-40 id (0-based) -> room-7 id; every class not grouped above is an object (5).
NYU40_TO_ROOM7 = np.full(len(NYU40_CLASSES), 5, np.int64)
for _group, _names in _ROOM7_GROUPS.items():
    for _name in _names:
        NYU40_TO_ROOM7[NYU40_CLASSES.index(_name)] = _group


def nyu40_to_room7(seg: np.ndarray) -> np.ndarray:
    """NYU-40 class ids uint8 [H,W] (0-39, 255 void) -> room-7 labels float32 [H,W] (0-6, -1 ignored)."""
    table = np.full(256, -1.0, np.float32)
    table[: len(NYU40_TO_ROOM7)] = NYU40_TO_ROOM7
    return table[np.asarray(seg, np.uint8)]


def class_weights(pixel_counts: np.ndarray, lo: float = 0.1, hi: float = 10.0) -> np.ndarray:
    """Median-frequency class weights: median(f over seen classes) / f_c, clipped to [lo, hi].

    pixel_counts: [C] pixels per class. Unseen classes get weight 1 (they never
    enter the loss). Returns float64 [C].
    """
    counts = np.asarray(pixel_counts, dtype=np.float64)
    seen = counts > 0
    w = np.ones_like(counts)
    if seen.any():
        freq = counts / counts.sum()
        w[seen] = np.clip(np.median(freq[seen]) / freq[seen], lo, hi)
    return w

"""The on-disk formats: one module each, and :data:`FORMATS`, the table of them.

Each module gives a :class:`~.base.Format`: its listing, its reader (sample ->
{task: target and valid mask}), its checks and, for the renderer, its writer.
Modules: :mod:`.nyuv2` (AdaShare), :mod:`.taskonomy` (TreeMTL), :mod:`.mtan`
(MTAN / LibMTL NYUv2), :mod:`.cityscapes` (MTAN / LibMTL Cityscapes; both on
:mod:`.npy`), :mod:`.folder` (the user's own data); shared codecs in :mod:`.common`.
Adding a format: one module with its FORMAT, one line in :data:`FORMATS`, one
YAML in conf/dataset/.

Each module's docstring shows its layout on disk: nyuv2 (a split json and PNG /
.npy maps), taskonomy (a split json, 16-bit PNGs, class weights), nyuv2_mtan and
cityscapes (numbered .npy files in train/ and val/), folder (root/<split>/image/
and root/<split>/<task>/, files matched by name).

Listing a split (:class:`SplitListing`: one path list per sample, and where the
list came from, named in errors): the json formats read their split json
(:func:`list_json_split`), the .npy formats and the folder format scan their folders.

The folder names follow AdaShare's NYUv2 sample copy (img, seg, normal_mask,
depth) and Taskonomy's task names.

Resolving a path listed in a split json (first existing candidate wins):
an absolute path that exists is used as is; otherwise the path (leading "/"
stripped) is joined onto root, as AdaShare does; for Taskonomy it is then
tried under root/train (split "train") or root/test (splits "test",
"test_small"), as TreeMTL's loader does.

Facts from the authors' loaders (TreeMTL data/nyuv2_dataloader_adashare.py
and data/taskonomy_dataloader_adashare.py, the same as MTLAttack-DGBA
data/nyuv2_dataloader_adashare.py and AdaShare dataloaders/*.py; losses in
TreeMTL data/pixel2pixel_loss.py):

- NYUv2 test: image and labels resized to a crop_h x crop_w square (321x321,
  aspect ratio not kept); image bilinear (cv2 default), labels nearest.
- NYUv2 train: scale s = U[0.5, 1.5), size int(h*s) x int(w*s) (image
  bilinear, labels nearest); mirror with p = 0.5 WITHOUT negating the normal's
  x component; pad to at least the crop size with the image centred (image 0
  = black, seg 255, normal 255 = invalid, depth 0 = invalid), then a uniform
  random crop.
- NYUv2 normals are read with cv2 (BGR) and fed raw 0..255 to F.normalize in
  the loss and the metric, i.e. never decoded to [-1, 1]; a pixel is invalid
  when ANY channel is 255. AdaShare's normal_mask PNGs also hold clusters of
  pure grey (127,127,127) pixels (about 1% of each image); the authors count
  them as valid, with direction (1,1,1)/sqrt3 after F.normalize.
  This module decodes (n+1)/2*255 back to unit vectors; a pixel is invalid
  when it is white (255,255,255, SPEC's rule) or when its decoded vector is
  (near) zero (norm < NORMAL_MIN_NORM, which catches greys 127 and 128), since
  such a vector has no direction.
- NYUv2 depth valid where depth > 3e-5 (pixel2pixel_loss depth_loss).
- Taskonomy: every map is first resized to 256x256 with nearest (the RGB
  image too); train then scale 0.5-1.5, mirror (normal x negated: sn[..., 0]
  *= -1), pad/crop to 224 (labels padded with 255, which every loss treats as
  invalid); test resizes 256 -> 224.
- Taskonomy seg: raw 0 (unlabeled) is turned into class 0 (raw 0 -> 1, then
  -1); the mask raw > 0 times prior_factor[class] is computed but TreeMTL's
  loss ignores it. This module maps raw 0 to ignore (255) instead.
- semseg_prior_factor.npy: the class weights of the seg cross-entropy
  (nn.CrossEntropyLoss(weight=prior_factor, ignore_index=255)), in training
  and in the Taskonomy seg metric.
- Taskonomy validity: depth raw < 64500; the normal's mask IS the depth mask;
  keypoints2d and edge_texture have no mask (only padding is ignored). This
  module also drops (near) zero normals there (the same rule as NYUv2).
- Depth target log(1 + raw) / log(2^16); keypoints raw/2^16 clipped to
  [0, 0.005], edges to [0, 0.08], each mapped linearly onto [-1, 1].

Facts from LibMTL's NYUv2 example (examples/nyu/create_dataset.py and utils.py,
from MTAN's loader): split "test" reads root/val; item i loads <i>.npy of each
folder for i in range(number of .npy files in image/); labels -1 are ignored by
the cross-entropy (ignore_index=-1); a depth pixel is valid where depth != 0 and
a normal pixel where its channel sum != 0 (this module: where its length is at
least NORMAL_MIN_NORM, so all-zero is invalid, as in the other formats); images,
depth and normals are used as stored (no resize; predictions are upsampled to
288x384). This module maps label -1 to IGNORE_LABEL (255) when decoding.
"""
from __future__ import annotations

from . import cityscapes, folder, mtan, nyuv2, taskonomy
from .base import Format, Rendered, Sample
from .common import (IGNORE_LABEL, JSON_SPLITS, NORMAL_MIN_NORM, JsonSplits, SplitListing, decode_normal_png,
                     encode_normal_png, list_json_split, read_split_json, resolve_listed_path, split_json_path,
                     write_split_json)
from .mtan import MTAN_DIRS, MTAN_IGNORE, MTAN_NUM_CLASSES, MTAN_SPLITS, list_mtan_split, read_mtan_sample, write_mtan_sample
from .nyuv2 import (NYUV2_DEPTH_MIN, NYUV2_DIRS, NYUV2_JSON, NYUV2_NUM_CLASSES, NYUV2_SPLITS, read_nyuv2_sample,
                    write_nyuv2_sample)
from .taskonomy import (EDGES_MAX, KEYPOINTS_MAX, SEMSEG_PRIOR, TASKONOMY_DEPTH_INVALID, TASKONOMY_DEPTH_INVALID_RAW,
                        TASKONOMY_DEPTH_PER_METRE, TASKONOMY_DIRS, TASKONOMY_JSON, TASKONOMY_NUM_CLASSES,
                        TASKONOMY_SPLITS, decode_clipped_16bit, decode_taskonomy_depth, decode_taskonomy_seg,
                        encode_clipped_16bit, encode_taskonomy_depth, encode_taskonomy_seg, read_semseg_prior,
                        read_taskonomy_sample, taskonomy_alt_dirs, write_semseg_prior, write_taskonomy_sample)

# Every format, by the name `dataset.format` gives.
FORMATS: dict[str, Format] = {f.name: f for f in (nyuv2.FORMAT, taskonomy.FORMAT, mtan.FORMAT, cityscapes.FORMAT,
                                                  folder.FORMAT)}


def get_format(name) -> Format:
    """The format called `name` (a str or the schema's enum member)."""
    key = getattr(name, "value", name)
    if key not in FORMATS:
        raise ValueError(f"unknown dataset format {key!r}; formats: {', '.join(FORMATS)}")
    return FORMATS[key]

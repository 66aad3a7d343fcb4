"""Data: on-disk formats (NYUv2 as AdaShare and as MTAN/LibMTL store it, Tiny-Taskonomy), their torch datasets
and the synthetic renderer."""

from .datasets import MultiTaskDataset, build_dataset
from .formats import (
    SplitListing,
    list_json_split,
    list_mtan_split,
    read_mtan_sample,
    read_nyuv2_sample,
    read_semseg_prior,
    read_split_json,
    read_taskonomy_sample,
    write_mtan_sample,
    write_nyuv2_sample,
    write_semseg_prior,
    write_split_json,
    write_taskonomy_sample,
)

__all__ = [
    "MultiTaskDataset",
    "SplitListing",
    "build_dataset",
    "list_json_split",
    "list_mtan_split",
    "read_mtan_sample",
    "read_nyuv2_sample",
    "read_semseg_prior",
    "read_split_json",
    "read_taskonomy_sample",
    "write_mtan_sample",
    "write_nyuv2_sample",
    "write_semseg_prior",
    "write_split_json",
    "write_taskonomy_sample",
]

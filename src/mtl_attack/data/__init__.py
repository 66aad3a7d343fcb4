"""Data: on-disk formats (NYUv2, Tiny-Taskonomy), their torch datasets and the synthetic renderer."""

from .datasets import MultiTaskDataset, build_dataset
from .formats import (
    read_nyuv2_sample,
    read_semseg_prior,
    read_split_json,
    read_taskonomy_sample,
    write_nyuv2_sample,
    write_semseg_prior,
    write_split_json,
    write_taskonomy_sample,
)

__all__ = [
    "MultiTaskDataset",
    "build_dataset",
    "read_nyuv2_sample",
    "read_semseg_prior",
    "read_split_json",
    "read_taskonomy_sample",
    "write_nyuv2_sample",
    "write_semseg_prior",
    "write_split_json",
    "write_taskonomy_sample",
]

"""Branched multi-task models: layout rules, backbone block splits, heads, the tree model."""

from mtl_attack.models.layout import (
    RESNET34_PAPER_BLOCK_PARAMS,
    Layout,
    all_shared,
    enumerate_layouts,
    independent,
    index_of,
    layout_by_index,
    paper_param_count,
    parse_layout,
    sample_layouts,
)

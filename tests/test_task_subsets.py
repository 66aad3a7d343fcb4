"""Task subsets (`tasks=[...]`): the model, training, attacks, ARP and records follow the chosen tasks."""
import pytest

from helpers import tiny
from mtl_attack.config import compose
from mtl_attack.data.registry import config_tasks
from mtl_attack.errors import UserError
from mtl_attack.models.layout import (RESNET34_PAPER_BLOCK_PARAMS, all_shared, enumerate_layouts, independent,
                                      layout_by_index, paper_param_count)
from mtl_attack.pipeline import Job, run
from mtl_attack.preflight import preflight

TWO = "tasks=[segment_semantic,depth_zbuffer]"


def test_layouts_are_numbered_for_any_number_of_tasks():
    # Counts of TreeMTL's enumeration (5 branching points): 6 layouts for 2 tasks, 51 for 3, 561 for 4.
    assert [len(enumerate_layouts(n)) for n in (2, 3, 4)] == [6, 51, 561]
    assert layout_by_index(2, 0) == all_shared(2) and layout_by_index(2, 1) == independent(2)
    assert str(layout_by_index(2, 5)) == "[[{0, 1}], [{0, 1}], [{0, 1}], [{0, 1}], [{1}, {0}]]"
    assert layout_by_index(4, 1).points[0] == [(0,), (1, 2, 3)]
    # Paper #Params: one backbone copy per task for IND (21,276,160 each), one for AS.
    assert paper_param_count(independent(2), RESNET34_PAPER_BLOCK_PARAMS) == 2 * 21_276_160
    assert paper_param_count(independent(4), RESNET34_PAPER_BLOCK_PARAMS) == 4 * 21_276_160
    assert paper_param_count(all_shared(4), RESNET34_PAPER_BLOCK_PARAMS) == 21_276_160


def test_a_subset_keeps_the_dataset_order_and_sets_the_layout_size():
    cfg = compose([TWO.replace("segment_semantic,depth_zbuffer", "depth_zbuffer,segment_semantic"),
                   "layout=independent"])
    checked = preflight(cfg)
    assert checked.task_names == ["segment_semantic", "depth_zbuffer"]
    assert checked.layout == independent(2)
    assert [t.name for t in config_tasks("synth_taskonomy", ["edge_texture", "normal"])] == ["normal", "edge_texture"]


@pytest.mark.parametrize("override, words", [
    ("tasks=[segment_semantic,edges]", "tasks=['segment_semantic', 'edges']: edges is not a task of this dataset; "
                                        "its tasks: segment_semantic, normal, depth_zbuffer"),
    ("tasks=[normal,normal]", "must name one or more distinct tasks"),
    ("tasks=[]", "must name one or more distinct tasks"),
])
def test_a_bad_subset_stops_in_one_line(override, words):
    with pytest.raises(UserError) as err:
        preflight(compose([override]))
    assert words in str(err.value) and "\n" not in str(err.value)


def test_single_x_needs_a_chosen_task():
    with pytest.raises(UserError, match="attack.target_task=normal is not a task"):
        preflight(compose([TWO, "attack=single_normal_pgd"]))
    assert preflight(compose([TWO, "attack=single_depth_zbuffer_pgd"])).task_names[1] == "depth_zbuffer"
    # A task a user declares gets Single-x through the generic preset.
    assert preflight(compose([TWO, "attack=single_pgd", "attack.target_task=depth_zbuffer"]))


def test_a_two_task_job_builds_trains_attacks_and_scores_two_tasks(tmp_path):
    cfg = compose(tiny(TWO, "layout=independent", "logger=none", cache_dir=tmp_path / "cache"))
    rec = run(cfg, Job(tmp_path / "job", "two", "two"), progress=False)
    assert rec["status"] == "done", rec["error"]
    per_task = rec["arp"]["per_task"]
    assert list(per_task) == ["segment_semantic", "depth_zbuffer"]
    assert rec["arp"]["overall"] == pytest.approx(sum(per_task.values()) / 2)
    assert rec["model"]["layout"] == str(independent(2))
    assert set(rec["metrics"]["clean"]) == {"segment_semantic", "depth_zbuffer"}
    # Another subset is another model, trained anew.
    three = run(compose(tiny("layout=independent", "logger=none", cache_dir=tmp_path / "cache")),
                Job(tmp_path / "job3", "three", "three"), progress=False)
    assert three["model"]["source"] == "trained" and len(three["arp"]["per_task"]) == 3


def test_a_four_task_subset_of_the_taskonomy_stand_in(tmp_path):
    four = "tasks=[segment_semantic,normal,depth_zbuffer,edge_texture]"
    cfg = compose(tiny("dataset=synth_taskonomy", four, "layout.index=1", "logger=none",
                       "attack=single_edge_texture_pgd", cache_dir=tmp_path / "cache"))
    rec = run(cfg, Job(tmp_path / "job", "four", "four"), progress=False)
    assert rec["status"] == "done", rec["error"]
    assert list(rec["arp"]["per_task"]) == ["segment_semantic", "normal", "depth_zbuffer", "edge_texture"]
    assert rec["model"]["layout"] == str(layout_by_index(4, 1))

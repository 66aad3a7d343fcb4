"""Layout rules: parsing, validation, TreeMTL enumeration order, paper parameter counts."""

import csv
import itertools
import pickle
from pathlib import Path

import pytest

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

DATA = Path(__file__).parent / "data" / "layouts.tsv"
NUM_TASKS = {"nyuv2": 3, "taskonomy": 5}
EXAMPLE = "[[{0, 1, 2}], [{0, 1, 2}], [{1, 2}, {0}], [{0}, {2}, {1}], [{0}, {2}, {1}]]"


def _rows():
    with open(DATA, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def _row_index(row):
    special = {"AS": 0, "IND": NUM_TASKS[row["dataset"]] - 1}
    return special[row["model_index"]] if row["model_index"] in special else int(row["model_index"])


# --- parsing and value semantics ----------------------------------------------------

def test_string_and_list_forms_are_equal():
    from_text = parse_layout(EXAMPLE, 3)
    from_lists = parse_layout([[[0, 1, 2]], [[0, 1, 2]], [[1, 2], [0]], [[0], [2], [1]], [[0], [2], [1]]], 3)
    from_brackets = parse_layout(" [ [[0,1,2]],[[0,1,2]] ,[[2,1],[0]],[[0],[2],[1]],\n[[0],[2],[1]]]", 3)
    assert from_text == from_lists == from_brackets
    assert str(from_text) == EXAMPLE  # paper notation round-trips


def test_canonical_equality_ignores_set_order():
    a = parse_layout(EXAMPLE, 3)
    b = parse_layout("[[{2,1,0}], [{0,1,2}], [{0}, {2,1}], [{1},{0},{2}], [{2},{1},{0}]]", 3)
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert a.key == b.key == "[[{0, 1, 2}], [{0, 1, 2}], [{0}, {1, 2}], [{0}, {1}, {2}], [{0}, {1}, {2}]]"
    assert a.points == [[(0, 1, 2)], [(0, 1, 2)], [(0,), (1, 2)], [(0,), (1,), (2,)], [(0,), (1,), (2,)]]
    assert a != parse_layout(EXAMPLE.replace("[{1, 2}, {0}]", "[{0, 1, 2}]"), 3)


def test_layout_is_immutable_and_pickles():
    lay = parse_layout(EXAMPLE, 3)
    with pytest.raises(AttributeError):
        lay._key = ()
    again = pickle.loads(pickle.dumps(lay))
    assert again == lay and str(again) == str(lay)


def test_properties():
    lay = parse_layout(EXAMPLE, 3)
    assert (lay.num_tasks, lay.num_points, lay.shared_blocks) == (3, 5, 2)
    assert lay.sets_per_point() == [1, 1, 2, 3, 3]
    assert all_shared(3).shared_blocks == 5 and independent(3).shared_blocks == 0
    assert parse_layout(lay, 3) is lay


# --- validation: one-line messages naming the point and set -----------------------

@pytest.mark.parametrize(
    "text, pattern",
    [
        ("[[{0, 1, 2}], [{0, 1, 2}], [{0, 1, 2}], [{0, 1, 2}]]", r"4 branching points .* 5"),
        ("[[{0, 1, 2}], [{0, 1}], [{0}, {1}, {2}], [{0}, {1}, {2}], [{0}, {1}, {2}]]",
         r"point 1 \(\[\{0, 1\}\]\): task 2 is missing"),
        ("[[{0, 1, 2}], [{0, 1, 2}], [{0, 1}, {1, 2}], [{0}, {1}, {2}], [{0}, {1}, {2}]]",
         r"point 2: task 1 is in two sets, \{0, 1\} and \{1, 2\}"),
        ("[[{0, 1, 2}], [{1, 2}, {0}], [{0, 1}, {2}], [{0}, {1}, {2}], [{0}, {1}, {2}]]",
         r"point 2, set \{0, 1\}: not inside one set of point 1 \(\[\{1, 2\}, \{0\}\]\)"),
        ("[[{0, 1, 3}], [{0, 1, 2}], [{0, 1, 2}], [{0, 1, 2}], [{0, 1, 2}]]",
         r"point 0, set \{0, 1, 3\}: task 3 is out of range for 3 tasks"),
        ("[[{0, 1, 2}], [{0, 1, 2}], [{0, 1, 2}], [{0, 1, 2}], [{0, 0, 1, 2}]]",
         r"point 4, set \{0, 0, 1, 2\}: task 0 is listed twice"),
        ("[[{0, 1, 2}], [{0, 1, 2}], [{0, 1, 2}], [{0, 1, 2}], [{0, 1, 2}, {}]]",
         r"point 4 has an empty set"),
        ("[[{0, 1, 2}], [{0, 1, 2}], [{0, 1, 2}], [{0, 1, 2}], [{0, 1, -1}]]",
         r"point 4, set \{-1, 0, 1\}: task -1 is out of range"),
        ("[[{0, 1, 2}], [{0, 1, 2}], [{0, 1, 2}], [{0, 1, 2}], [{0, 1, 'a'}]]",
         r"point 4, set .*'a' is not a task id"),
        ("[[{0, 1, 2}], [{0, 1, 2}], [{0, 1, 2}], [{0, 1, 2}], [0, 1, 2]]",
         r"point 4: 0 is not a set of task ids"),
        ("[[{0, 1, 2}], [{0, 1, 2}", r"cannot read layout"),
    ],
)
def test_validation_errors_are_one_line_and_name_the_problem(text, pattern):
    with pytest.raises(ValueError, match=pattern) as err:
        parse_layout(text, 3)
    assert "\n" not in str(err.value)


def test_validation_of_list_input_and_bad_tasks_count():
    with pytest.raises(ValueError, match=r"point 1, set \{0, 1\}: not inside one set of point 0"):
        Layout([[[0], [1]], [[0, 1]]], 2)
    with pytest.raises(ValueError, match=r"point 1 is 5, not a list of task sets"):
        parse_layout([[(0, 1)], 5], 2, num_points=2)
    with pytest.raises(ValueError, match=r"a layout must be a list"):
        Layout(5, 2)
    with pytest.raises(ValueError, match="num_tasks must be a positive integer"):
        Layout([[[0]]], 0)
    with pytest.raises(ValueError, match="3 tasks and 5 points"):
        parse_layout(parse_layout(EXAMPLE, 3), 5)


# --- enumeration in TreeMTL's order --------------------------------------------------

def _partitions(items):
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for part in _partitions(rest):
        for k in range(len(part)):
            yield part[:k] + [part[k] | {first}] + part[k + 1:]
        yield part + [frozenset({first})]


def _count_chains(num_tasks, num_points):
    # Independent count: chains of partitions, each refining the one before.
    parts = [frozenset(frozenset(s) for s in p) for p in _partitions(list(range(num_tasks)))]

    def refines(fine, coarse):
        return all(any(s <= c for c in coarse) for s in fine)

    ways = {p: 1 for p in parts}
    for _ in range(num_points - 1):
        ways = {q: sum(w for p, w in ways.items() if refines(q, p)) for q in parts}
    return sum(ways.values())


@pytest.mark.parametrize("num_tasks, count", [(1, 1), (2, 6), (3, 51), (4, 561), (5, 7556)])
def test_enumeration_counts(num_tasks, count):
    layouts = enumerate_layouts(num_tasks)
    assert len(layouts) == count == len(set(layouts)) == _count_chains(num_tasks, 5)


def test_special_indices():
    assert layout_by_index(3, 0) == all_shared(3) and layout_by_index(5, 0) == all_shared(5)
    ind3 = [[[0], [1], [2]]] * 5
    ind5 = [[[t] for t in range(5)]] * 5
    assert layout_by_index(3, 2) == independent(3) == Layout(ind3, 3)
    assert layout_by_index(5, 4) == independent(5) == Layout(ind5, 5)
    assert index_of(all_shared(5)) == 0 and index_of(independent(5)) == 4
    for t in range(1, 6):
        assert independent(t).sets_per_point() == [t] * 5
    # TreeMTL's first splits: {0,1,2} -> {1,2}|{0}, then {1}|{0,2}, then {2}|{0,1}.
    assert str(layout_by_index(3, 1)) == "[[{1, 2}, {0}], [{1, 2}, {0}], [{1, 2}, {0}], [{1, 2}, {0}], [{1, 2}, {0}]]"
    assert str(independent(3)) == "[[{0}, {2}, {1}], [{0}, {2}, {1}], [{0}, {2}, {1}], [{0}, {2}, {1}], [{0}, {2}, {1}]]"


def test_index_round_trip_and_bad_index():
    for i, lay in enumerate(enumerate_layouts(3)):
        assert index_of(lay) == i and layout_by_index(3, i) is lay
    with pytest.raises(ValueError, match=r"layout index 51 is out of range: .* 0\.\.50"):
        layout_by_index(3, 51)


@pytest.mark.parametrize("row", _rows(), ids=lambda r: f"{r['dataset']}-{r['model_index']}")
def test_every_paper_layout_is_at_its_model_index(row):
    num_tasks = NUM_TASKS[row["dataset"]]
    lay = parse_layout(row["layout"], num_tasks)
    idx = _row_index(row)
    assert layout_by_index(num_tasks, idx) == lay
    assert index_of(lay) == idx
    assert str(layout_by_index(num_tasks, idx)) == row["layout"]  # same set order as printed
    millions = paper_param_count(lay, RESNET34_PAPER_BLOCK_PARAMS) / 1e6
    assert abs(round(millions, 2) - float(row["params_M"])) <= 0.01 + 1e-9


# --- parameter counts ----------------------------------------------------------------

def test_paper_param_count_known_values():
    assert sum(RESNET34_PAPER_BLOCK_PARAMS) == 21_276_160
    assert paper_param_count(all_shared(3), RESNET34_PAPER_BLOCK_PARAMS) == 21_276_160
    assert paper_param_count(independent(5), RESNET34_PAPER_BLOCK_PARAMS) == 5 * 21_276_160
    # EXAMPLE: 1,1,2,3,3 copies of blocks with sizes 1,10,100,1000,10000.
    assert paper_param_count(parse_layout(EXAMPLE, 3), [1, 10, 100, 1000, 10000]) == 33211
    with pytest.raises(ValueError, match="4 block counts for a layout with 5 points"):
        paper_param_count(all_shared(3), [1, 2, 3, 4])


# --- sampling --------------------------------------------------------------------------

def test_sampling_is_deterministic_and_without_replacement():
    a = sample_layouts(5, 20, seed=7)
    assert a == sample_layouts(5, 20, seed=7)
    assert a != sample_layouts(5, 20, seed=8)
    assert len(set(a)) == 20
    assert sorted(index_of(x) for x in sample_layouts(3, 51, seed=0)) == list(range(51))
    with pytest.raises(ValueError, match="cannot sample 52 layouts"):
        sample_layouts(3, 52, seed=0)


def test_other_point_counts():
    # Two points, two tasks: {01|01}, {01|0,1}, {0,1|0,1}.
    layouts = enumerate_layouts(2, num_points=2)
    assert [lay.sets_per_point() for lay in layouts] == [[1, 1], [2, 2], [1, 2]]
    assert list(itertools.islice(map(index_of, layouts), 3)) == [0, 1, 2]

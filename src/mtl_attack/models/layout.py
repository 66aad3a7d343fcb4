"""Branched multi-task layouts (TreeMTL): parse, validate, enumerate, count parameters.

A layout lists, for each of ``num_points`` branching points (5 for every backbone
here), a partition of the task ids ``0..num_tasks-1`` into sets; each set gets its
own copy of that backbone block. A set at point b must lie inside one set at point
b-1, since a branch can split going deeper but never merge. All-shared (AS) is one
set at every point, independent (IND) is all singletons.

``enumerate_layouts`` lists every layout in the order TreeMTL's enumerator produces
them, so a paper "model index" selects the same layout as the authors' code.
"""

from __future__ import annotations

import ast
import functools
import itertools
import operator
import random
from collections.abc import Iterable, Sequence
from typing import Any

DEFAULT_NUM_POINTS = 5

# Paper #Params per ResNet34 block (stem | layer1 | layer2 | layer3 | layer4): conv
# weights plus one per BatchNorm channel, heads excluded. Sum 21,276,160.
RESNET34_PAPER_BLOCK_PARAMS: tuple[int, ...] = (9472, 221568, 1115264, 6819072, 13110784)

TaskSet = tuple[int, ...]


def _fmt_set(task_set: Iterable[int]) -> str:
    return "{" + ", ".join(str(t) for t in sorted(task_set)) + "}"


def _fmt_point(point: Iterable[Iterable[int]]) -> str:
    return "[" + ", ".join(_fmt_set(s) for s in point) + "]"


def _canonical_point(point: Sequence[TaskSet]) -> tuple[TaskSet, ...]:
    # Sorted tuples, sorted lexicographically: the set order carries no meaning.
    return tuple(sorted(tuple(sorted(s)) for s in point))


class Layout:
    """An immutable branched layout.

    Equality and hash use the canonical form (sets as sorted tuples, sets within a
    point sorted), so the order in which sets are listed does not matter. ``str``
    keeps the order the sets were given in: for layouts from ``enumerate_layouts``
    that is TreeMTL's order, so the string equals the paper's notation, e.g.
    ``[[{0, 1, 2}], [{1, 2}, {0}], [{0}, {2}, {1}], [{0}, {2}, {1}], [{0}, {2}, {1}]]``.

    Construct with ``Layout(points, num_tasks)`` (validated) or ``parse_layout``.
    """

    __slots__ = ("_display", "_key", "_num_tasks")

    def __init__(self, points: Sequence[Iterable[Iterable[int]]], num_tasks: int) -> None:
        display = _validate(points, num_tasks)
        self._init(display, num_tasks)

    def _init(self, display: tuple[tuple[TaskSet, ...], ...], num_tasks: int) -> None:
        object.__setattr__(self, "_display", display)
        object.__setattr__(self, "_key", tuple(_canonical_point(p) for p in display))
        object.__setattr__(self, "_num_tasks", num_tasks)

    @classmethod
    def _trusted(cls, display: tuple[tuple[TaskSet, ...], ...], num_tasks: int) -> "Layout":
        # Skips validation: only for layouts built by the enumerator, valid by construction.
        obj = cls.__new__(cls)
        obj._init(display, num_tasks)
        return obj

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Layout is immutable; build a new one with parse_layout")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("Layout is immutable")

    def __reduce__(self):
        return (Layout, (self.display_points, self._num_tasks))

    # --- value semantics -------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Layout):
            return NotImplemented
        return self._num_tasks == other._num_tasks and self._key == other._key

    def __hash__(self) -> int:
        return hash((self._num_tasks, self._key))

    def __str__(self) -> str:
        return "[" + ", ".join(_fmt_point(p) for p in self._display) + "]"

    def __repr__(self) -> str:
        return f"Layout('{self}', num_tasks={self._num_tasks})"

    # --- views -----------------------------------------------------------------
    @property
    def num_tasks(self) -> int:
        return self._num_tasks

    @property
    def num_points(self) -> int:
        return len(self._key)

    @property
    def points(self) -> list[list[TaskSet]]:
        """Canonical task sets per point: ``points[b]`` is a sorted list of sorted tuples.

        Model builders should use this so equal layouts build identical models.
        """
        return [list(p) for p in self._key]

    @property
    def display_points(self) -> list[list[TaskSet]]:
        """Task sets per point in the order given (TreeMTL's order when enumerated)."""
        return [list(p) for p in self._display]

    @property
    def key(self) -> str:
        """Canonical string, identical for equal layouts (usable as a file or cache key)."""
        return "[" + ", ".join(_fmt_point(p) for p in self._key) + "]"

    @property
    def shared_blocks(self) -> int:
        """Number of leading points where all tasks share one set (0 .. num_points)."""
        n = 0
        for point in self._key:
            if len(point) != 1:
                break
            n += 1
        return n

    def sets_per_point(self) -> list[int]:
        """Number of block copies at each point (how many task sets it has)."""
        return [len(p) for p in self._key]


# --- validation ------------------------------------------------------------------

def _as_task_id(value: Any, b: int, raw_set: Any, num_tasks: int) -> int:
    # operator.index accepts ints and numpy integers, rejects floats and strings.
    try:
        if isinstance(value, bool):
            raise TypeError
        task = operator.index(value)
    except TypeError:
        raise ValueError(
            f"layout point {b}, set {raw_set!r}: {value!r} is not a task id; "
            f"use integers 0..{num_tasks - 1}"
        ) from None
    if not 0 <= task < num_tasks:
        raise ValueError(
            f"layout point {b}, set {_fmt_set_raw(raw_set)}: task {task} is out of range "
            f"for {num_tasks} tasks; use task ids 0..{num_tasks - 1}"
        )
    return task


def _fmt_set_raw(raw_set: Any) -> str:
    try:
        return _fmt_set(int(v) for v in raw_set)
    except (TypeError, ValueError):
        return repr(raw_set)


def _is_sequence(x: Any) -> bool:
    # Lists, tuples and list-like configs (omegaconf ListConfig), but not strings.
    return isinstance(x, Sequence) and not isinstance(x, (str, bytes))


def _validate(points: Any, num_tasks: int) -> tuple[tuple[TaskSet, ...], ...]:
    """Check a nested layout and return it as tuples of sorted task-id tuples (order kept)."""
    if isinstance(num_tasks, bool) or not isinstance(num_tasks, int) or num_tasks < 1:
        raise ValueError(f"num_tasks must be a positive integer, got {num_tasks!r}")
    if not _is_sequence(points):
        raise ValueError(
            f"a layout must be a list with one list of task sets per branching point, "
            f"got {type(points).__name__}"
        )
    if len(points) < 1:
        raise ValueError("layout is empty; give one list of task sets per branching point")
    all_tasks = set(range(num_tasks))
    out: list[tuple[TaskSet, ...]] = []
    for b, point in enumerate(points):
        if not _is_sequence(point):
            raise ValueError(
                f"layout point {b} is {point!r}, not a list of task sets; "
                f"write each point as a list of sets, e.g. [{{0, 1}}, {{2}}]"
            )
        if len(point) == 0:
            raise ValueError(f"layout point {b} has no task sets; every task must be in one set")
        seen: dict[int, TaskSet] = {}
        sets: list[TaskSet] = []
        for raw_set in point:
            if isinstance(raw_set, (str, bytes)) or not isinstance(raw_set, Iterable):
                raise ValueError(
                    f"layout point {b}: {raw_set!r} is not a set of task ids; "
                    f"write sets as {{0, 1}} or [0, 1]"
                )
            items = [_as_task_id(v, b, raw_set, num_tasks) for v in raw_set]
            if not items:
                raise ValueError(f"layout point {b} has an empty set; remove it")
            if len(set(items)) != len(items):
                dup = next(t for t in items if items.count(t) > 1)
                raise ValueError(
                    f"layout point {b}, set {_fmt_set(items)}: task {dup} is listed twice "
                    f"in the same set; list each task once"
                )
            task_set = tuple(sorted(items))
            for t in task_set:
                if t in seen:
                    raise ValueError(
                        f"layout point {b}: task {t} is in two sets, {_fmt_set(seen[t])} and "
                        f"{_fmt_set(task_set)}; put each task in exactly one set per point"
                    )
                seen[t] = task_set
            sets.append(task_set)
        missing = sorted(all_tasks - seen.keys())
        if missing:
            raise ValueError(
                f"layout point {b} ({_fmt_point(sets)}): task {missing[0]} is missing; "
                f"every task 0..{num_tasks - 1} must be in exactly one set per point"
            )
        if out:
            prev = out[-1]
            for task_set in sets:
                if not any(set(task_set) <= set(p) for p in prev):
                    raise ValueError(
                        f"layout point {b}, set {_fmt_set(task_set)}: not inside one set of "
                        f"point {b - 1} ({_fmt_point(prev)}); branches only split going deeper, "
                        f"so split it to fit or merge the sets at point {b - 1}"
                    )
        out.append(tuple(sets))
    return tuple(out)


def parse_layout(
    layout: str | Sequence[Any] | Layout, num_tasks: int, num_points: int = DEFAULT_NUM_POINTS
) -> Layout:
    """Read a layout from the paper's notation or from nested lists, and validate it.

    Accepts ``"[[{0, 1, 2}], [{1, 2}, {0}], ...]"`` (braces or brackets, any
    whitespace), nested lists/tuples such as YAML's ``[[[0, 1, 2]], [[1, 2], [0]], ...]``,
    or a ``Layout``. Raises a one-line ValueError naming the offending point and set.
    """
    if isinstance(layout, Layout):
        if layout.num_tasks != num_tasks or layout.num_points != num_points:
            raise ValueError(
                f"layout {layout} is for {layout.num_tasks} tasks and {layout.num_points} points, "
                f"expected {num_tasks} tasks and {num_points} points"
            )
        return layout
    if isinstance(layout, str):
        text = " ".join(layout.split())
        try:
            nested = ast.literal_eval(text.replace("{", "[").replace("}", "]"))
        except (SyntaxError, ValueError):
            raise ValueError(
                f"cannot read layout '{text}'; write it like "
                f"[[{{0, 1, 2}}], [{{1, 2}}, {{0}}], ...] with one list of sets per point"
            ) from None
    else:
        nested = layout
    if _is_sequence(nested) and len(nested) != num_points:
        raise ValueError(
            f"layout has {len(nested)} branching points but the backbone has {num_points}; "
            f"give one list of task sets per point"
        )
    return Layout(nested, num_tasks)


# --- enumeration (TreeMTL order) ---------------------------------------------------

def _two_way_splits(task_set: TaskSet) -> list[tuple[TaskSet, TaskSet]]:
    """All splits of a set into two non-empty parts, in TreeMTL's order.

    The smallest task always stays in the second part; the first part runs over
    the subsets of the other tasks in binary-counting order with "included" first
    (e.g. {0,1,2} -> ({1,2},{0}), ({1},{0,2}), ({2},{0,1})).
    """
    first, rest = task_set[0], task_set[1:]
    splits = []
    for pattern in itertools.product((True, False), repeat=len(rest)):
        if not any(pattern):
            continue
        part = tuple(t for t, keep in zip(rest, pattern) if keep)
        other = tuple(sorted((first,) + tuple(t for t, keep in zip(rest, pattern) if not keep)))
        splits.append((part, other))
    return splits


@functools.lru_cache(maxsize=None)
def _enumeration(num_tasks: int, num_points: int) -> tuple[tuple[Layout, ...], dict[Layout, int]]:
    if isinstance(num_tasks, bool) or not isinstance(num_tasks, int) or num_tasks < 1:
        raise ValueError(f"num_tasks must be a positive integer, got {num_tasks!r}")
    if isinstance(num_points, bool) or not isinstance(num_points, int) or num_points < 1:
        raise ValueError(f"num_points must be a positive integer, got {num_points!r}")
    root = tuple((tuple(range(num_tasks)),) for _ in range(num_points))
    order: list[tuple[tuple[TaskSet, ...], ...]] = [root]
    seen = {tuple(_canonical_point(p) for p in root)}

    # Depth-first: from a layout whose last split was at point `low`, split any
    # non-singleton set at a point >= low; the split applies to that point and all
    # deeper ones (the split set is replaced by its two parts at the end of the
    # list). A layout seen before is neither listed nor expanded again; the
    # point of its last split is a property of the layout, so nothing is lost.
    def expand(state: tuple[tuple[TaskSet, ...], ...], low: int, cuts: int) -> None:
        if cuts >= num_tasks - 1:
            return
        for i in range(low, num_points):
            for task_set in state[i]:
                if len(task_set) == 1:
                    continue
                for part, other in _two_way_splits(task_set):
                    new_state = list(state[:i])
                    for j in range(i, num_points):
                        sets = list(state[j])
                        sets.remove(task_set)
                        new_state.append(tuple(sets) + (part, other))
                    new_state_t = tuple(new_state)
                    key = tuple(_canonical_point(p) for p in new_state_t)
                    if key in seen:
                        continue
                    seen.add(key)
                    order.append(new_state_t)
                    expand(new_state_t, i, cuts + 1)

    expand(root, 0, 0)
    layouts = tuple(Layout._trusted(s, num_tasks) for s in order)
    return layouts, {lay: idx for idx, lay in enumerate(layouts)}


def enumerate_layouts(num_tasks: int, num_points: int = DEFAULT_NUM_POINTS) -> list[Layout]:
    """Every layout for ``num_tasks`` tasks and ``num_points`` points, in TreeMTL's order.

    Index 0 is all-shared. For 3 tasks and 5 points there are 51 layouts. Cached.
    """
    return list(_enumeration(num_tasks, num_points)[0])


def layout_by_index(num_tasks: int, index: int, num_points: int = DEFAULT_NUM_POINTS) -> Layout:
    """The layout at TreeMTL model index ``index`` (the paper's model numbering)."""
    layouts = _enumeration(num_tasks, num_points)[0]
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(layouts):
        raise ValueError(
            f"layout index {index!r} is out of range: {num_tasks} tasks and {num_points} points "
            f"have layouts 0..{len(layouts) - 1}"
        )
    return layouts[index]


def index_of(layout: Layout) -> int:
    """TreeMTL model index of ``layout`` (inverse of ``layout_by_index``)."""
    return _enumeration(layout.num_tasks, layout.num_points)[1][layout]


def all_shared(num_tasks: int, num_points: int = DEFAULT_NUM_POINTS) -> Layout:
    """One set of all tasks at every point (TreeMTL index 0)."""
    return Layout([[list(range(num_tasks))] for _ in range(num_points)], num_tasks)


def independent(num_tasks: int, num_points: int = DEFAULT_NUM_POINTS) -> Layout:
    """Every task alone at every point, in TreeMTL's set order."""
    # TreeMTL's first num_tasks - 1 splits all happen at point 0, one task at a time.
    return layout_by_index(num_tasks, num_tasks - 1, num_points)


def sample_layouts(
    num_tasks: int, n: int, seed: int, num_points: int = DEFAULT_NUM_POINTS
) -> list[Layout]:
    """``n`` distinct layouts drawn uniformly without replacement, deterministic under ``seed``.

    Returned in draw order; use ``index_of`` for their model indices.
    """
    layouts = _enumeration(num_tasks, num_points)[0]
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= len(layouts):
        raise ValueError(
            f"cannot sample {n!r} layouts: {num_tasks} tasks and {num_points} points have "
            f"{len(layouts)}; ask for 0..{len(layouts)}"
        )
    picks = random.Random(seed).sample(range(len(layouts)), n)
    return [layouts[i] for i in picks]


# --- parameter counts --------------------------------------------------------------

def paper_param_count(layout: Layout, block_counts: Sequence[int]) -> int:
    """The paper's #Params of a layout's backbone tree: sum_b (sets at point b) * block_b.

    ``block_counts[b]`` is one copy of block b counted the paper's way (conv weights
    plus one per BatchNorm channel, heads excluded), e.g. RESNET34_PAPER_BLOCK_PARAMS.
    """
    if len(block_counts) != layout.num_points:
        raise ValueError(
            f"got {len(block_counts)} block counts for a layout with {layout.num_points} points; "
            f"give one count per branching point"
        )
    return sum(n_sets * int(c) for n_sets, c in zip(layout.sets_per_point(), block_counts))

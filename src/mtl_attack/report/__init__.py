"""Tables and figures of the paper rebuilt from job records (or a saved results table).

Input is the results table of :mod:`mtl_attack.records` (one row per job record).
Only rows with ``status == "done"`` enter tables and figures. Values are ARP in
percent; ``eps`` is in pixel units out of 255.

- :mod:`.load`: reading tables and records, the normalised attack keys, metric directions.
- :mod:`.tables`: :func:`arp_table` (paper Tables 1, 2, 8-15: rows = models, most
  parameters first; columns = (optimizer, objective)); :func:`best_per_row` (the
  paper's bold: best per optimizer group, or ``within="row"``); :func:`arp_vs_eps`
  (Figures 2, 3, 4 left); :func:`per_task_bars` (Figures 1, 4 right);
  :func:`weighted_grid_table` (Table 16).
- :mod:`.study_tables`: :func:`adversarial_accuracy_table` (Tables 17/18),
  :func:`adversarial_arp_table` (Tables 3/19), :func:`transfer_table` (Table 6),
  :func:`transferability_table` / :func:`transferability_trend` (Table 7, Figure 5).
- :mod:`.markdown`: :func:`to_markdown`, the one table renderer.
- :mod:`.plots`: the PNG figures.
- :mod:`.studies`: one declaration per study; :func:`write_report` / :func:`main_report`
  write every file above plus ``report.md``.
- :mod:`.labels`: display names and paper orders.

Several results of one cell (seeds) are averaged per model first, then, for the
figures, over models, so a model run with more seeds does not weigh more.
"""
from .labels import OBJECTIVES, OPTIMIZERS, TASKS, train_attack_label
from .load import attack_keys, done_rows, load_results, metric_directions, status_note
from .markdown import to_markdown
from .plots import plot_arp_vs_eps, plot_per_task_bars, plot_study_bars, plot_transferability
from .significance import cell_intervals, first_places
from .studies import STUDIES, Study, main_report, write_report
from .study_tables import (adversarial_accuracy_table, adversarial_arp_table, transfer_table,
                           transferability_table, transferability_trend)
from .tables import arp_table, arp_vs_eps, best_per_row, first_place_counts, per_task_bars, weighted_grid_table

__all__ = [
    "OPTIMIZERS", "OBJECTIVES", "TASKS",
    "load_results", "done_rows", "status_note", "attack_keys", "metric_directions",
    "arp_table", "best_per_row", "first_place_counts", "to_markdown",
    "arp_vs_eps", "plot_arp_vs_eps", "per_task_bars", "plot_per_task_bars", "plot_study_bars",
    "weighted_grid_table", "adversarial_accuracy_table", "adversarial_arp_table", "transfer_table",
    "transferability_table", "transferability_trend", "plot_transferability", "train_attack_label",
    "first_places", "cell_intervals", "Study", "STUDIES", "write_report", "main_report",
]

"""Dense prediction tasks: kinds declared as data (:mod:`.kinds`), per-sample losses
(:mod:`.losses`) and split-level metric meters (:mod:`.meters`)."""
from .kinds import (TASK_KINDS, Task, TaskKind, build_task, build_tasks, check_task_spec, depth_task, l1_task,
                    nearest_resize, normal_task, segmentation_task, task_options)
from .losses import (DEPTH_DELTA_THRESHOLDS, DEPTH_PRED_FLOOR, IGNORE_INDEX, IMAGE_HIST_BIN_DEG,
                     NORMAL_THRESHOLD_TOL_DEG, NORMAL_THRESHOLDS_DEG, _check_pred, _check_seg_labels, _prepare, _sample_mean, _unit,
                     l1_loss, normal_loss, resize_nearest, segmentation_loss, upsample_prediction)
from .meters import (DEPTH_ERROR_METRICS, DEPTH_METRICS, LOSS_METRICS, NORMAL_METRICS, SCORERS, SEG_METRICS,
                     DepthErrorMeter, DepthMeter, LossMeter, Meter, NormalMeter, SegmentationMeter, confusion_matrices,
                     confusion_matrix, normal_angles_deg, segmentation_scores, summed_stats)

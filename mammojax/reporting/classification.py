"""The ROC + confusion-matrix figures of one classification task.

Every method's report draws them the same way: one-vs-rest ROC curves of the
real, labelled items of the evaluated split, and the row-normalised
confusion matrix of ``metrics.classification_report``.
"""

import os
from typing import Any, Mapping, Sequence

import numpy as np

from mammojax.reporting import plots


def real_items(raw: Mapping[str, np.ndarray], task: str) -> np.ndarray:
  """Bool mask of the real (non-padding), labelled items of ``task``."""
  return raw[f"{task}_mask"] & (raw[f"{task}_labels"] >= 0)


def write_task_figures(
    workdir: str,
    raw: Mapping[str, np.ndarray],
    report: Mapping[str, Any],
    *,
    task: str,
    class_names: Sequence[str],
    title: str,
    split: str,
) -> dict[str, str]:
  """ROC curves and confusion matrix of ``task`` under ``workdir/figures``.

  Args:
    workdir: the run folder (figure paths are returned relative to it).
    raw: the evaluated split's host outputs (``{task}_probs``,
      ``{task}_labels``, ``{task}_mask``).
    report: the split's ``classification_report`` of ``task``.
    task: the task name (file names ``roc_{task}.png``,
      ``confusion_{task}.png``).
    class_names: the task's class names.
    title: what the captions call the task.
    split: the evaluated split's name (in the ROC title).

  Returns:
    Caption -> PNG path relative to ``workdir``; empty when the split has
    no real item of ``task``.
  """
  if f"{task}_probs" not in raw:
    return {}
  keep = real_items(raw, task)
  if not keep.any():
    return {}
  fig_dir = os.path.join(workdir, "figures")
  os.makedirs(fig_dir, exist_ok=True)
  roc = os.path.join(fig_dir, f"roc_{task}.png")
  plots.plot_roc_curves(
      raw[f"{task}_labels"][keep], raw[f"{task}_probs"][keep],
      list(class_names), roc, f"ROC, {title}, {split}",
  )
  cm_path = os.path.join(fig_dir, f"confusion_{task}.png")
  plots.plot_confusion_matrix(
      np.asarray(report["confusion_matrix"]), list(class_names), cm_path,
      normalize="true",
  )
  return {
      f"ROC curves, {title}": os.path.relpath(roc, workdir),
      f"Confusion matrix, {title}": os.path.relpath(cm_path, workdir),
  }


def loss_table(results: Mapping[str, Any]) -> dict[str, dict[str, float]]:
  """``{split: {loss term: value}}`` of the evaluated splits.

  Every ``loss`` / ``loss_*`` entry of ``results[split]``: the total, each
  task head's and each auxiliary term's (reconstruction, regulariser, ...)
  mean loss on that split.
  """
  out = {}
  for split in ("train", "val", "test"):
    rep = results.get(split)
    if not isinstance(rep, Mapping):
      continue
    terms = {
        k: v for k, v in rep.items()
        if (k == "loss" or k.startswith("loss_")) and isinstance(v, float)
    }
    if terms:
      out[split] = terms
  return out


def run_facts(results: Mapping[str, Any], noun: str) -> dict[str, Any]:
  """Best epoch, items per split and training throughput of a run.

  ``noun`` names the items (``graphs``, ``items``, ...).
  """
  splits = results.get("splits", {})
  return {
      "best epoch": results.get("meta", {}).get("best_epoch"),
      f"{noun} (train/val/test)": "/".join(
          str(splits.get(k, 0)) for k in ("train", "val", "test")
      ),
      f"train {noun}/s": results.get("timing", {}).get(
          "train_items_per_second"
      ),
  }

"""Reports of RMCG runs: eq. 8-11 metrics, run report, Table 1 and Fig. 5.

* ``grade_metrics(report)``: accuracy and macro precision / recall / F1
  (eq. 8-11, each averaged over the grades, a class without predictions
  or samples counting 0) from a run's classification report (its
  confusion matrix).
* ``write_run_report``: one run's confusion matrix, ROC curves and
  ``report.md``.
* ``write_table``: the Table 1 comparison, mean +/- std over folds, as
  Markdown and the grouped bar chart of the paper's Fig. 5.
"""

import os
from typing import Any, Mapping, Sequence

import numpy as np

from mammojax.reporting import classification
from mammojax.reporting import report as report_lib

METRICS = ("accuracy", "f1", "precision", "recall")
METRIC_TITLES = {"accuracy": "Acc.", "f1": "F1-score",
                 "precision": "Precision", "recall": "Recall"}


def grade_metrics(rep: Mapping[str, Any]) -> dict[str, float]:
  """Accuracy, macro precision, recall and F1 of a confusion matrix."""
  cm = np.asarray(rep["confusion_matrix"], np.float64)
  tp = np.diag(cm)
  fp = cm.sum(0) - tp
  fn = cm.sum(1) - tp

  def ratio(a, b):
    return np.where(b > 0, a / np.where(b > 0, b, 1.0), 0.0)

  total = cm.sum()
  return {
      "accuracy": float(tp.sum() / total) if total else float("nan"),
      "precision": float(np.mean(ratio(tp, tp + fp))),
      "recall": float(np.mean(ratio(tp, tp + fn))),
      "f1": float(np.mean(ratio(2 * tp, 2 * tp + fp + fn))),
  }


def write_run_report(workdir, config, data, results, raw_outputs) -> str:
  """Figures and ``report.md`` of one run; returns the report's path."""
  split = "test" if "test" in raw_outputs else "val"
  names = list(data.vocabularies["grade"])
  figures = classification.write_task_figures(
      workdir, raw_outputs.get(split, {}),
      results.get(split, {}).get("grade", {}), task="grade",
      class_names=names, title=f"grade ({config.model.name})", split=split)
  tasks = {f"grade, {s}": results[s]["grade"] for s in ("test", "val")
           if "grade" in results.get(s, {})}
  metrics = {s: grade_metrics(results[s]["grade"]) for s in ("test", "val")
             if "grade" in results.get(s, {})}
  report = {
      "title": f"RMCG run report: {config.model.name}",
      "run": {
          "workdir": os.path.abspath(workdir),
          "dataset": f"{config.dataset.name}/{config.dataset.builder_config}",
          "model": config.model.name,
          "fold": f"{config.dataset.fold} of {config.dataset.num_folds}",
          **classification.run_facts(results, "tiles"),
          "patients (train/val/test)": "/".join(
              str(len(set(data.patient_ids[data.splits[k]])))
              for k in ("train", "val", "test")),
      },
      "eq. 8-11 (macro)": {f"{s} {k}": v for s, m in metrics.items()
                           for k, v in m.items()},
      "tasks": tasks,
      "losses": classification.loss_table(results),
      "build report": results.get("build_report", {}),
  }
  path = os.path.join(workdir, "report.md")
  report_lib.write_markdown_report(path, report, figures)
  return path


def table_markdown(summary: Mapping[str, Any], models: Sequence[str]) -> str:
  """Table 1: one row per model, mean +/- std (percent) over folds."""
  lines = ["| Method | " + " | ".join(METRIC_TITLES[m] for m in METRICS)
           + " |", "|---|" + "---|" * len(METRICS)]
  for model in models:
    cells = []
    for m in METRICS:
      s = summary[model][m]
      mean = "n/a" if s["mean"] is None else f"{100 * s['mean']:.2f}"
      std = "" if s["std"] is None else f" ± {100 * s['std']:.2f}"
      cells.append(mean + std)
    lines.append(f"| {model} | " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def plot_table(path: str, summary: Mapping[str, Any],
               models: Sequence[str]) -> str:
  """Fig. 5: grouped bars (one group per metric, one bar per model)."""
  from matplotlib import figure as mfigure  # pylint: disable=g-import-not-at-top

  fig = mfigure.Figure(figsize=(9.0, 4.5), dpi=100)
  ax = fig.subplots()
  width = 0.8 / max(1, len(models))
  xs = np.arange(len(METRICS))
  for i, model in enumerate(models):
    means = [100 * (summary[model][m]["mean"] or 0.0) for m in METRICS]
    stds = [100 * (summary[model][m]["std"] or 0.0) for m in METRICS]
    ax.bar(xs + (i - (len(models) - 1) / 2) * width, means, width,
           yerr=stds, capsize=2, label=model)
  ax.set_xticks(xs, [METRIC_TITLES[m] for m in METRICS])
  ax.set_ylabel("% (mean ± std over folds)")
  ax.set_ylim(0, 100)
  ax.legend(fontsize=8, ncol=4, loc="lower center")
  ax.set_title("Table 1 models on the test folds")
  fig.tight_layout()
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  fig.savefig(path)
  return path

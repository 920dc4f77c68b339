"""The RMCG paper's protocol: Table 1 models x patient-wise folds.

``run_protocol(config, workdir)`` trains every model of
``config.protocol.models`` (``mammojax.models.rmcg.KINDS``) on every fold of
``config.protocol.folds`` (``()`` = all ``config.dataset.num_folds``) with
``training.loop.train_and_evaluate``, each in ``workdir/<model>/fold_<k>``
(resumable: a run whose ``results.json`` exists is not run again). All
runs share the config apart from ``model.name`` and ``dataset.fold``: the
same tiles, patient-wise folds, augmentation and schedule. Fold ``k`` is
that run's test set (``mammojax.methods.rmcg.grade_splits``), so each
patient is tested once per model.

Writes ``workdir/results.json`` (per model: per-fold test accuracy and macro
precision / recall / F1 of eq. 8-11, their mean and sample std (ddof 1),
the confusion matrix summed over the folds, wall time), ``table1.md`` (the
paper's Table 1 layout), ``report.md`` and ``figures/table1.png`` (grouped
bars as the paper's Fig. 5) plus ``figures/confusion_<model>.png``.
"""

import json
import os
import time
from typing import Any

from absl import logging
import ml_collections
import numpy as np
import tqdm

from mammojax.models import rmcg as rmcg_model
from mammojax.reporting import plots
from mammojax.reporting import report as report_lib
from mammojax.reporting import rmcg as rmcg_report


def run_config(config: ml_collections.ConfigDict, model: str,
               fold: int) -> ml_collections.ConfigDict:
  """The single-run config of ``model`` on ``fold`` (a copy)."""
  c = ml_collections.ConfigDict(config.to_dict())
  del c["protocol"]
  c.model.name = model
  c.dataset.fold = int(fold)
  return c


def _mean_std(values):
  v = np.asarray(values, np.float64)
  ok = v[np.isfinite(v)]
  return {"mean": float(ok.mean()) if len(ok) else None,
          "std": float(ok.std(ddof=1)) if len(ok) > 1 else None,
          "values": [float(x) for x in v]}


def run_protocol(config: ml_collections.ConfigDict,
                 workdir: str) -> dict[str, Any]:
  """Runs every (model, fold); writes the Table 1 results."""
  from mammojax.training import loop  # pylint: disable=g-import-not-at-top

  models = tuple(config.protocol.models)
  unknown = [m for m in models if m not in rmcg_model.KINDS]
  if not models or unknown:
    raise ValueError(
        f"config.protocol.models={models!r}: expected a non-empty subset of "
        f"{rmcg_model.KINDS}")
  num_folds = int(config.dataset.num_folds)
  folds = tuple(config.protocol.folds) or tuple(range(num_folds))
  if num_folds < 2 or any(not 0 <= f < num_folds for f in folds):
    raise ValueError(
        f"config.protocol.folds={folds!r} with config.dataset.num_folds="
        f"{num_folds}: expected num_folds >= 2 and folds in 0..{num_folds-1}")
  os.makedirs(workdir, exist_ok=True)
  runs = [(m, f) for m in models for f in folds]
  per_run = {}
  for model, fold in tqdm.tqdm(runs, desc="rmcg protocol runs"):
    run_dir = os.path.join(workdir, model, f"fold_{fold}")
    path = os.path.join(run_dir, "results.json")
    if not os.path.exists(path):
      start = time.time()
      loop.train_and_evaluate(run_config(config, model, fold), run_dir)
      with open(os.path.join(run_dir, "wall_time.json"), "w") as f:
        json.dump({"seconds": time.time() - start}, f)
    with open(path) as f:
      results = json.load(f)
    wall = None
    if os.path.exists(os.path.join(run_dir, "wall_time.json")):
      with open(os.path.join(run_dir, "wall_time.json")) as f:
        wall = json.load(f)["seconds"]
    per_run[(model, fold)] = (results, wall)
    logging.info("%s fold %d: %s", model, fold,
                 rmcg_report.grade_metrics(results["test"]["grade"]))

  summary, class_names = {}, None
  fig_dir = os.path.join(workdir, "figures")
  os.makedirs(fig_dir, exist_ok=True)
  figures = {}
  for model in models:
    metrics = [rmcg_report.grade_metrics(per_run[(model, f)][0]["test"]
                                         ["grade"]) for f in folds]
    cms = [np.asarray(per_run[(model, f)][0]["test"]["grade"]
                      ["confusion_matrix"]) for f in folds]
    class_names = per_run[(model, folds[0])][0]["test"]["grade"][
        "class_names"]
    walls = [per_run[(model, f)][1] for f in folds]
    summary[model] = {
        **{m: _mean_std([x[m] for x in metrics])
           for m in rmcg_report.METRICS},
        "confusion_matrix": np.sum(cms, axis=0).tolist(),
        "wall_seconds": [w for w in walls],
    }
    cm_path = os.path.join(fig_dir, f"confusion_{model}.png")
    plots.plot_confusion_matrix(np.sum(cms, axis=0), class_names, cm_path,
                                normalize="true")
    figures[f"Confusion matrix over the test folds, {model}"] = (
        os.path.relpath(cm_path, workdir))
  table = rmcg_report.table_markdown(summary, models)
  with open(os.path.join(workdir, "table1.md"), "w") as f:
    f.write(table)
  bar = rmcg_report.plot_table(os.path.join(fig_dir, "table1.png"), summary,
                               models)
  figures = {"Table 1 (Fig. 5 layout)": os.path.relpath(bar, workdir),
             **figures}
  out = {
      "protocol": "rmcg_cv",
      "dataset": f"{config.dataset.name}/{config.dataset.builder_config}",
      "models": list(models), "folds": list(folds),
      "num_folds": num_folds, "class_names": class_names,
      "summary": summary,
      "per_fold": {f"{m}/fold_{f}": rmcg_report.grade_metrics(
          r["test"]["grade"]) for (m, f), (r, _) in per_run.items()},
      "build_report": per_run[runs[0]][0].get("build_report", {}),
  }
  with open(os.path.join(workdir, "results.json"), "w") as f:
    json.dump(out, f, indent=1)
  report = {
      "title": "RMCG protocol: Table 1 models x patient-wise folds",
      "run": {"workdir": os.path.abspath(workdir), "dataset": out["dataset"],
              "models": ", ".join(models),
              "test folds": f"{len(folds)} of {num_folds}",
              "epochs per run": config.num_epochs},
      "table 1 (test, % mean ± std over folds)": table,
  }
  report_lib.write_markdown_report(os.path.join(workdir, "report.md"),
                                   report, figures)
  print(table)
  return out

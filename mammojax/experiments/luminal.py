"""The luminal paper's protocol: MLMC pretraining -> transfer vs baseline.

``run_protocol(config, workdir)`` runs, for every cross-validation fold, the
three stages of ``config.pretrain`` / ``config.transfer`` /
``config.baseline`` with ``training.loop.train_and_evaluate``, each in its own
sub-workdir ``workdir/fold_{k}/{stage}`` (so each is resumable: a stage whose
``results.json`` exists is not run again; an interrupted one resumes from its
latest checkpoint). The transfer stage of fold k starts from the best
checkpoint of the pretraining of fold k (``init_from``). Every fold's best
model is evaluated on the same patient-wise independent test set.

It then writes ``workdir/results.json`` and ``workdir/report.md``: per-class
F1, macro F1 and AUC on the test set as mean ± std over folds (sample std,
ddof = 1) for transfer vs baseline, the two-tailed paired t-test
(``scipy.stats.ttest_rel``) of transfer vs baseline over folds on test macro
F1 and AUC, the MLMC per-class F1 (the paper's Table 2a), ROC curves of every
fold, and Grad-CAM overlays (ResNet ``layer4``) of a few test images
(copied from the runs' own reports, ``mammojax.reporting.luminal``).
"""

import json
import os
import shutil
import time
from typing import Any, Optional

from absl import logging
import ml_collections
import numpy as np
from scipy import stats

from mammojax.reporting import plots
from mammojax.reporting import report as report_lib

STAGES = ("pretrain", "transfer", "baseline")
COMPARED = ("transfer", "baseline")
# Dataset fields every stage must share (same images, same patient splits).
_SHARED_DATASET_KEYS = ("name", "builder_config", "data_dir", "manual_dir",
                        "image_size", "test_fraction", "val_fraction",
                        "split_seed")


# ----------------------------------------------------------------------------
# The protocol.


def stage_config(
    config: ml_collections.ConfigDict, stage: str, fold: int, workdir: str
) -> ml_collections.ConfigDict:
  """The full config of ``stage`` for ``fold`` (a copy)."""
  c = ml_collections.ConfigDict(config[stage].to_dict())
  c.dataset.num_folds = int(config.protocol.num_folds)
  c.dataset.fold = int(fold)
  if stage == "transfer":
    c.init_from = os.path.join(workdir, f"fold_{fold}", "pretrain")
  return c


def _load_json(path: str) -> dict[str, Any]:
  with open(path) as f:
    return json.load(f)


def _mean_std(values: list[Optional[float]]) -> dict[str, Any]:
  v = np.asarray([np.nan if x is None else x for x in values], np.float64)
  ok = v[np.isfinite(v)]
  return {
      "mean": float(ok.mean()) if len(ok) else None,
      "std": float(ok.std(ddof=1)) if len(ok) > 1 else None,
      "values": [None if not np.isfinite(x) else float(x) for x in v],
  }


def luminal_metrics(test: dict[str, Any]) -> dict[str, Optional[float]]:
  """Per-class F1, macro F1 and AUC of a run's luminal test report."""
  rep = test["luminal"]
  f1 = rep["per_class_f1"]
  names = rep["class_names"]
  return {
      f"f1_{names[1]}": f1.get(names[1]),
      f"f1_{names[0]}": f1.get(names[0]),
      "macro_f1": rep.get("macro_f1"),
      "auc": rep.get("auc_ovo"),
  }


def mlmc_metrics(test: dict[str, Any]) -> dict[str, Optional[float]]:
  """The paper's Table 2a: F1 of calcification, mass, benign, malignant."""
  out = {}
  for task in ("calcification", "mass", "malignant"):
    if task not in test:
      continue
    f1 = test[task]["per_class_f1"]
    names = test[task]["class_names"]
    if task == "malignant":
      out["f1_benign"] = f1.get(names[0])
    out[f"f1_{task}"] = f1.get(names[1])
    out[f"auc_{task}"] = test[task].get("auc_ovo")
  return out


def paired_ttest(a: list, b: list) -> dict[str, Any]:
  """Two-tailed paired t-test of ``a`` vs ``b`` (per-fold values)."""
  a = np.asarray([np.nan if x is None else x for x in a], np.float64)
  b = np.asarray([np.nan if x is None else x for x in b], np.float64)
  ok = np.isfinite(a) & np.isfinite(b)
  out = {"n": int(ok.sum()), "mean_difference": None, "t": None,
         "p_value": None}
  if ok.sum() < 2:
    out["note"] = "fewer than 2 folds with both values"
    return out
  diff = a[ok] - b[ok]
  out["mean_difference"] = float(np.mean(diff))
  if np.ptp(diff) <= 1e-12 * max(1.0, float(np.abs(diff).max())):
    # scipy returns t = +-inf, p = 0 (or NaN for all-zero differences).
    out["note"] = ("the per-fold differences are identical (zero variance):"
                   " the t statistic is undefined")
    return out
  res = stats.ttest_rel(a[ok], b[ok])
  out["t"] = float(res.statistic)
  out["p_value"] = float(res.pvalue)
  return out


def plot_fold_rocs(path: str, curves: dict[str, list], aucs: dict[str, Any]):
  """Per-fold test ROC curves (luminal positive) of transfer and baseline."""
  from matplotlib import figure as mfigure  # pylint: disable=g-import-not-at-top

  fig = mfigure.Figure(figsize=(6.0, 6.0), dpi=100)
  ax = fig.subplots()
  ax.plot([0, 1], [0, 1], ls="--", lw=0.8, color="0.6")
  colors = {"transfer": "tab:red", "baseline": "tab:blue"}
  for stage, fold_curves in curves.items():
    for i, (fpr, tpr) in enumerate(fold_curves):
      label = None
      if i == 0:
        m, s = aucs[stage]["mean"], aucs[stage]["std"]
        label = (f"{stage}: AUC {report_lib.format_value(m)} ± "
                 f"{report_lib.format_value(s)}")
      ax.plot(fpr, tpr, color=colors.get(stage, "k"), lw=1.2, alpha=0.8,
              label=label)
  ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false positive rate",
         ylabel="true positive rate", aspect="equal",
         title="Luminal vs non-luminal, test set, one curve per fold")
  ax.legend(loc="lower right", fontsize="small")
  fig.tight_layout()
  os.makedirs(os.path.dirname(path), exist_ok=True)
  fig.savefig(path, format="png")
  return path


def _fold_curves(run_dir: str) -> Optional[tuple[np.ndarray, np.ndarray]]:
  path = os.path.join(run_dir, "predictions_test.npz")
  if not os.path.exists(path):
    return None
  z = np.load(path)
  y, p = z["luminal_labels"], z["luminal_probs"]
  keep = y >= 0
  if len(np.unique(y[keep])) < 2:
    return None
  return plots.roc_curve(y[keep] == 1, p[keep, 1])


def _fmt(cell: dict[str, Any]) -> str:
  return (f"{report_lib.format_value(cell['mean'])} ± "
          f"{report_lib.format_value(cell['std'])}")


def render_protocol_report(summary: dict[str, Any],
                           figures: dict[str, str]) -> str:
  """``report.md`` text of a protocol run."""
  lum = summary["luminal"]
  metric_names = list(next(iter(lum.values())).keys())
  lines = [
      "# Luminal vs non-luminal: transfer learning vs baseline",
      "",
      f"{summary['num_folds']}-fold patient-wise cross-validation (folds "
      f"run: {summary['folds']}); every "
      "fold's best model (lowest validation loss) evaluated on the same "
      f"independent test set ({summary['test_images']['luminal']} images "
      "with a subtype). Mean ± std over folds (sample std, ddof = 1).",
      "",
      "| metric | baseline | transfer |",
      "|---|---|---|",
  ]
  for m in metric_names:
    lines.append(f"| {m} | {_fmt(lum['baseline'][m])} | "
                 f"{_fmt(lum['transfer'][m])} |")
  lines += ["", "Two-tailed paired t-test (scipy.stats.ttest_rel), transfer "
            "vs baseline over folds:", "",
            "| metric | mean difference | t | p-value |", "|---|---|---|---|"]
  for m, t in summary["ttest"].items():
    lines.append(
        f"| {m} | {report_lib.format_value(t['mean_difference'])} | "
        f"{report_lib.format_value(t['t'])} | "
        f"{report_lib.format_value(t['p_value'])} |"
    )
  for m, t in summary["ttest"].items():
    if t.get("note"):
      lines += ["", f"*{m}:* {t['note']}."]
  lines += ["", "Per fold (test):", "",
            "| fold | " + " | ".join(
                f"{s} {m}" for s in COMPARED for m in ("macro_f1", "auc"))
            + " |",
            "|---|" + "---|" * 4]
  for k, fold in enumerate(summary["folds"]):
    cells = [lum[s][m]["values"][k] for s in COMPARED
             for m in ("macro_f1", "auc")]
    lines.append(f"| {fold} | "
                 + " | ".join(report_lib.format_value(c) for c in cells)
                 + " |")
  if summary.get("mlmc"):
    lines += ["", "## MLMC pretraining (test F1, the paper's Table 2a)", "",
              "| class | mean ± std |", "|---|---|"]
    for m, cell in summary["mlmc"].items():
      lines.append(f"| {m} | {_fmt(cell)} |")
  lines += ["", "## Figures", ""]
  for caption, rel in figures.items():
    lines += [f"**{caption}**", "", f"![{caption}]({rel})", ""]
  lines += ["## Run", ""]
  for key, value in summary["run"].items():
    lines.append(f"- {key}: {report_lib.format_value(value)}")
  if summary.get("notes"):
    lines += ["", "## Notes", ""] + [f"- {n}" for n in summary["notes"]]
  return "\n".join(lines) + "\n"


def protocol_notes(config: ml_collections.ConfigDict, folds: list[int],
                   mlmc: dict[str, Any]) -> list[str]:
  """The caveats of a protocol run for ``report.md`` and ``results.json``.

  Args:
    config: the protocol config (its ``pretrain.dataset.name``; every stage
      shares the dataset).
    folds: the folds run.
    mlmc: the MLMC summary (``auc_*`` cells with a ``mean``).
  """
  notes = []
  if str(config.pretrain.dataset.name).startswith("synthetic"):
    notes.append(
        "Synthetic CMMD-like data (mammojax.data.builders.synthetic_cmmd): "
        "the subtype is only weakly tied to appearance (documented in the "
        "builder); numbers are not comparable to the paper's CMMD results."
    )
  if len(folds) < 2:
    notes.append("one fold only: std and the t-test are undefined.")
  mlmc_aucs = [mlmc[m]["mean"] for m in mlmc
               if m.startswith("auc_") and mlmc[m]["mean"] is not None]
  if mlmc_aucs and max(mlmc_aucs) < 0.6:
    notes.append(
        f"the MLMC pretraining stayed near chance (best mean test AUC "
        f"{max(mlmc_aucs):.3f}): a transfer-vs-baseline difference then "
        "reflects the initialisation (e.g. batch-norm statistics and "
        "weights adapted to mammograms) rather than learned abnormality "
        "features; train longer / larger (configs/luminal.py:paper) for a "
        "meaningful comparison."
    )
  return notes


def run_protocol(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    examples_and_info: Optional[tuple[list[dict[str, Any]], dict]] = None,
) -> dict[str, Any]:
  """Runs the paper's protocol; writes ``results.json`` and ``report.md``.

  Args:
    config: a protocol config (``configs/luminal.py:protocol``) with
      ``protocol`` (``num_folds``, ``folds``) and the stage configs
      ``pretrain``, ``transfer`` and ``baseline``.
    workdir: output folder; stage runs go to ``fold_{k}/{stage}``.
    examples_and_info: already loaded examples (tests); by default the
      dataset of ``config.pretrain.dataset`` is loaded once for all runs.

  Returns:
    The summary written to ``workdir/results.json``.
  """
  from mammojax.data import pipeline  # pylint: disable=g-import-not-at-top
  from mammojax.training import loop  # pylint: disable=g-import-not-at-top

  start = time.time()
  os.makedirs(workdir, exist_ok=True)
  num_folds = int(config.protocol.num_folds)
  folds = [int(f) for f in (config.protocol.get("folds") or ())] or list(
      range(num_folds)
  )
  datasets = {
      json.dumps({k: config[s].dataset.get(k) for k in _SHARED_DATASET_KEYS},
                 sort_keys=True, default=str)
      for s in STAGES
  }
  if len(datasets) != 1:
    raise ValueError(
        "config.{pretrain,transfer,baseline}.dataset differ in "
        f"{_SHARED_DATASET_KEYS}; the protocol needs one dataset and one "
        "patient split for every stage"
    )
  load_start = time.time()
  if examples_and_info is None:
    examples_and_info = pipeline.load_examples(config.pretrain.dataset)
  load_seconds = time.time() - load_start
  runs: dict[str, dict[int, dict[str, Any]]] = {s: {} for s in STAGES}
  seconds: dict[str, list[float]] = {s: [] for s in STAGES}
  trained_now: dict[str, int] = {s: 0 for s in STAGES}
  for fold in folds:
    for stage in STAGES:
      run_dir = os.path.join(workdir, f"fold_{fold}", stage)
      done = os.path.join(run_dir, "results.json")
      t0 = time.time()
      wall = os.path.join(run_dir, "stage_wall_seconds.json")
      if os.path.exists(done):
        logging.info("fold %d %s: done earlier (%s)", fold, stage, done)
        result = _load_json(done)
      else:
        logging.info("fold %d %s: training in %s", fold, stage, run_dir)
        result = loop.train_and_evaluate(
            stage_config(config, stage, fold, workdir), run_dir,
            examples_and_info=examples_and_info,
        )
        trained_now[stage] += 1
        with open(wall, "w") as f:
          json.dump({"wall_seconds": time.time() - t0}, f)
      if os.path.exists(wall):
        seconds[stage].append(_load_json(wall)["wall_seconds"])
      runs[stage][fold] = result

  luminal = {
      stage: {}
      for stage in COMPARED
  }
  for stage in COMPARED:
    per_fold = [luminal_metrics(runs[stage][f]["test"]) for f in folds]
    for m in per_fold[0]:
      luminal[stage][m] = _mean_std([r[m] for r in per_fold])
  ttest = {
      m: paired_ttest(luminal["transfer"][m]["values"],
                      luminal["baseline"][m]["values"])
      for m in ("macro_f1", "auc")
  }
  mlmc_folds = [mlmc_metrics(runs["pretrain"][f]["test"]) for f in folds]
  mlmc = {m: _mean_std([r.get(m) for r in mlmc_folds])
          for m in mlmc_folds[0]}

  figures: dict[str, str] = {}
  fig_dir = os.path.join(workdir, "figures")
  os.makedirs(fig_dir, exist_ok=True)
  curves = {s: [] for s in COMPARED}
  for stage in COMPARED:
    for fold in folds:
      c = _fold_curves(os.path.join(workdir, f"fold_{fold}", stage))
      if c is not None:
        curves[stage].append(c)
  if any(curves.values()):
    roc = plot_fold_rocs(
        os.path.join(fig_dir, "roc_transfer_vs_baseline.png"), curves,
        {s: luminal[s]["auc"] for s in COMPARED},
    )
    figures["ROC curves, test set, transfer vs baseline"] = (
        os.path.relpath(roc, workdir)
    )
  gradcam_dir = os.path.join(fig_dir, "gradcam")
  os.makedirs(gradcam_dir, exist_ok=True)
  for stage, what in (("transfer", "luminal model"),
                      ("pretrain", "MLMC model, malignant output")):
    src = os.path.join(workdir, f"fold_{folds[0]}", stage, "figures")
    if not os.path.isdir(src):
      continue
    for name in sorted(os.listdir(src)):
      if name.startswith("gradcam_") and name.endswith(".png"):
        dst = os.path.join(gradcam_dir, f"{stage}_{name}")
        shutil.copyfile(os.path.join(src, name), dst)
        figures[f"Grad-CAM (layer4), fold {folds[0]} {what}: {name[8:-4]}"] = (
            os.path.relpath(dst, workdir)
        )

  first = runs["transfer"][folds[0]]
  notes = protocol_notes(config, folds, mlmc)
  summary = {
      "num_folds": num_folds,
      "folds": folds,
      "luminal": luminal,
      "ttest": ttest,
      "mlmc": mlmc,
      "test_images": {
          "luminal": first["splits"]["test"],
          "mlmc": runs["pretrain"][folds[0]]["splits"]["test"],
      },
      "per_fold": {
          s: {str(f): {"test": runs[s][f]["test"], "splits": runs[s][f][
              "splits"], "best_epoch": runs[s][f]["meta"]["best_epoch"],
              "timing": runs[s][f]["timing"]} for f in folds}
          for s in STAGES
      },
      "run": {
          "wall_seconds_this_call": round(time.time() - start, 1),
          "data_load_seconds": round(load_seconds, 1),
          # Wall time of each stage run when it was trained (kept on disk,
          # so a re-aggregation reports the original training times).
          "stage_wall_seconds_total": round(
              float(sum(sum(v) for v in seconds.values())), 1
          ),
          "stage_wall_seconds_mean": {
              s: round(float(np.mean(v)), 1) if v else None
              for s, v in seconds.items()
          },
          "stages_trained_now": trained_now,
          "train_images_per_second": {
              s: round(float(np.mean([
                  runs[s][f]["timing"]["train_items_per_second"]
                  for f in folds])), 2)
              for s in STAGES
          },
          "dataset": {k: config.pretrain.dataset.get(k)
                      for k in _SHARED_DATASET_KEYS},
      },
      "notes": notes,
      "config": config.to_dict(),
  }
  with open(os.path.join(workdir, "results.json"), "w") as f:
    json.dump(summary, f, indent=2, default=str)
  with open(os.path.join(workdir, "report.md"), "w") as f:
    f.write(render_protocol_report(summary, figures))
  logging.info(
      "protocol done (%.0f s this call): transfer macro F1 %s, AUC %s; "
      "baseline "
      "macro F1 %s, AUC %s; p(macro F1) %s, p(AUC) %s",
      summary["run"]["wall_seconds_this_call"],
      _fmt(luminal["transfer"]["macro_f1"]), _fmt(luminal["transfer"]["auc"]),
      _fmt(luminal["baseline"]["macro_f1"]), _fmt(luminal["baseline"]["auc"]),
      ttest["macro_f1"]["p_value"], ttest["auc"]["p_value"],
  )
  return summary

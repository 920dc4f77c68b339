"""DiagNet's figures and reports.

* ``plot_augmentation``: the paper's Fig. 2 -- per class, a row of original
  training ROIs, a row of generated positive neighbours and a row of
  negative neighbours (each generated image under its own seed's column
  when the seed is shown).
* ``write_run_report``: one run's predictions (``predictions_{split}.npz``),
  ROC / confusion figures, the augmentation
  figure, ``report.md``, and a ``diagnet`` section added to
  ``results.json`` (test accuracy and AUC, augmentation counts and
  discriminator agreement, the time of each stage).
* ``plot_repeat_rocs`` / ``write_repeats_report``: the main command's
  repeated splits (``mammojax.experiments.diagnet``): mean +/- std and one
  ROC curve per repeat.
"""

import json
import os
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from mammojax.reporting import classification
from mammojax.reporting import plots
from mammojax.reporting import report as report_lib

POSITIVE, NEGATIVE = 1, 2  # objectives.signed_graph kinds.


def plot_augmentation(
    path: str,
    originals: np.ndarray,
    original_labels: np.ndarray,
    generated: np.ndarray,
    generated_labels: np.ndarray,
    generated_kinds: np.ndarray,
    generated_seeds: np.ndarray,
    class_names: Sequence[str],
    *,
    columns: int = 6,
) -> Optional[str]:
  """Fig. 2: originals / positive / negative neighbours, one panel per class.

  Args:
    path: the PNG to write.
    originals: ``[N, S, S]`` original training ROIs in [0, 1].
    original_labels: ``[N]`` their classes.
    generated: ``[K, S, S]`` generated neighbours.
    generated_labels: ``[K]`` their classes.
    generated_kinds: ``[K]`` POSITIVE (1) or NEGATIVE (2).
    generated_seeds: ``[K]`` index into ``originals`` of each one's seed
      (-1 or out of range: unknown).
    class_names: the class names.
    columns: ROIs per row.

  Returns:
    ``path``, or None when nothing was generated.
  """
  from matplotlib import figure as mfigure  # pylint: disable=g-import-not-at-top,import-outside-toplevel

  if not len(generated):
    return None
  classes = [c for c in range(len(class_names))
             if np.any(generated_labels == c)]
  fig = mfigure.Figure(figsize=(1.3 * columns, 4.2 * len(classes)), dpi=100)
  axes = fig.subplots(3 * len(classes), columns, squeeze=False)
  rows = ("original", "positive neighbour", "negative neighbour")
  for p, c in enumerate(classes):
    pos = np.flatnonzero((generated_labels == c) & (generated_kinds == POSITIVE))
    neg = np.flatnonzero((generated_labels == c) & (generated_kinds == NEGATIVE))
    # Originals: the seeds of the shown positives first, then others.
    seeds = [int(s) for s in generated_seeds[pos[:columns]]
             if 0 <= s < len(originals)]
    rest = [i for i in np.flatnonzero(original_labels == c) if i not in seeds]
    shown = {
        0: list(dict.fromkeys(seeds + rest))[:columns],
        1: list(pos[:columns]),
        2: list(neg[:columns]),
    }
    for r in range(3):
      for k in range(columns):
        ax = axes[3 * p + r, k]
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
          spine.set_visible(False)
        items = shown[r]
        if k < len(items):
          img = originals[items[k]] if r == 0 else generated[items[k]]
          ax.imshow(img, cmap="gray", vmin=0.0, vmax=1.0)
        if k == 0:
          ax.set_ylabel(rows[r], fontsize=7)
      axes[3 * p, 0].set_title(f"({chr(97 + p)}) {class_names[c]} masses",
                               loc="left", fontsize=9)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, format="png")
  return path


def run_summary(data: Any, results: Mapping[str, Any]) -> dict[str, Any]:
  """The ``diagnet`` section of a run's ``results.json``."""
  from mammojax.objectives import adversarial_augmentation  # pylint: disable=g-import-not-at-top,import-outside-toplevel

  out = {"skipped": dict(getattr(data, "skipped", {}))}
  for split in ("val", "test"):
    rep = results.get(split, {}).get("pathology")
    if isinstance(rep, Mapping):
      out[f"{split}_accuracy"] = rep.get("accuracy")
      out[f"{split}_auc"] = rep.get("auc_ovo")
  aug = getattr(data, "augmentation", None)
  out["training_items"] = dict(getattr(data, "composition", {}))
  out["original_training_masses"] = int(getattr(data, "num_original_train",
                                                0))
  if aug is not None:
    names = list(data.vocabularies["pathology"])
    out["discriminator_agreement"] = {
        names[c]: v for c, v in
        adversarial_augmentation.discriminator_agreement(aug).items()
    }
    out["rho"] = {names[c]: v for c, v in aug.rho.items()}
  timing = dict(getattr(data, "timing", {}))
  timing["train_seconds"] = results.get("timing", {}).get("train_seconds")
  out["stage_seconds"] = timing
  return out


def write_run_report(
    workdir: str, config: Any, data: Any, results: dict[str, Any],
    raw_outputs: dict[str, Any],
) -> str:
  """Figures, ``report.md`` and the ``diagnet`` results; returns the path."""
  for name, raw in raw_outputs.items():
    np.savez(os.path.join(workdir, f"predictions_{name}.npz"),
             **{k: np.asarray(v) for k, v in raw.items()})
  split = "test" if "test" in raw_outputs else "val"
  title = "pathology (benign vs malignant)"
  names = list(data.vocabularies["pathology"])
  figures = classification.write_task_figures(
      workdir, raw_outputs.get(split, {}),
      results.get(split, {}).get("pathology", {}), task="pathology",
      class_names=names, title=title, split=split,
  )
  aug = getattr(data, "augmentation", None)
  if aug is not None and len(aug.images):
    train = data.splits["train"]
    n = data.num_flipped_train
    path = plot_augmentation(
        os.path.join(workdir, "figures", "augmentation.png"),
        data.images[train[:n]], data.labels["group"][train[:n]],
        aug.images, aug.labels, aug.kinds, aug.seeds, names,
    )
    if path:
      figures["Adversarial augmentation (Fig. 2): originals, positive and "
              "negative neighbours"] = os.path.relpath(path, workdir)
  summary = run_summary(data, results)
  results["diagnet"] = summary
  with open(os.path.join(workdir, "results.json"), "w") as f:
    json.dump(results, f, indent=2, default=float)
  d = config.diagnet
  tasks = {
      f"{title}, {name}": results[name]["pathology"]
      for name in ("test", "val") if "pathology" in results.get(name, {})
  }
  report = {
      "title": "DiagNet run report",
      "run": {
          "workdir": os.path.abspath(workdir),
          "dataset": f"{config.dataset.name}/{config.dataset.builder_config}",
          "split seed": config.dataset.split_seed,
          "input": f"mass ROI (box padded 1.6x), {d.image_size} x "
                   f"{d.image_size}",
          "graph": f"n+={d.graph.n_pos}, n-={d.graph.n_neg}, m="
                   f"{d.graph.margin}, lambda={d.graph.weight}, ranks from "
                   f"{d.graph.space}",
          "augmentation": (
              f"flips {tuple(d.flips)}, +{d.augment.positive_fraction:.0%} "
              f"positive / +{d.augment.negative_fraction:.0%} negative "
              f"neighbours, T={d.augment.num_candidates}"
              if d.augment.enabled else f"flips {tuple(d.flips)} only"
          ),
          "training items": summary["training_items"],
          **classification.run_facts(results, "items"),
          **{f"{k.replace('_', ' ')}": v
             for k, v in summary["stage_seconds"].items()},
      },
      "tasks": tasks,
      "losses": classification.loss_table(results),
      "discriminator agreement": {
          k: json.dumps(v) for k, v in
          summary.get("discriminator_agreement", {}).items()
      },
      "build report": results.get("build_report", {}),
  }
  path = os.path.join(workdir, "report.md")
  report_lib.write_markdown_report(path, report, figures)
  return path


def mean_std(values: Sequence[Optional[float]]) -> dict[str, Any]:
  """Mean and sample std (ddof = 1) of the finite values."""
  v = np.asarray([np.nan if x is None else x for x in values], np.float64)
  ok = v[np.isfinite(v)]
  return {
      "mean": float(ok.mean()) if len(ok) else None,
      "std": float(ok.std(ddof=1)) if len(ok) > 1 else None,
      "values": [None if not np.isfinite(x) else float(x) for x in v],
  }


def plot_repeat_rocs(path: str, curves: Sequence[tuple[np.ndarray, np.ndarray]],
                     auc: Mapping[str, Any], title: str) -> str:
  """One test ROC curve (malignant positive) per repeat."""
  from matplotlib import figure as mfigure  # pylint: disable=g-import-not-at-top,import-outside-toplevel

  fig = mfigure.Figure(figsize=(5.5, 5.5), dpi=100)
  ax = fig.subplots()
  ax.plot([0, 1], [0, 1], ls="--", lw=0.8, color="0.6")
  for i, (fpr, tpr) in enumerate(curves):
    ax.plot(fpr, tpr, lw=1.2, alpha=0.8, label=f"repeat {i}")
  ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false positive rate",
         ylabel="true positive rate", aspect="equal",
         title=f"{title}\nAUC {report_lib.format_value(auc['mean'])} ± "
               f"{report_lib.format_value(auc['std'])}")
  ax.legend(loc="lower right", fontsize="small")
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, format="png")
  return path


def repeat_curve(run_dir: str) -> Optional[tuple[np.ndarray, np.ndarray]]:
  """The test ROC (malignant vs benign) of one run, from its predictions."""
  path = os.path.join(run_dir, "predictions_test.npz")
  if not os.path.exists(path):
    return None
  z = np.load(path)
  y, p = z["pathology_labels"], z["pathology_probs"]
  keep = (y >= 0) & z["pathology_mask"].astype(bool) if (
      "pathology_mask" in z) else y >= 0
  if len(np.unique(y[keep])) < 2:
    return None
  return plots.roc_curve(y[keep] == 1, p[keep, 1])


def render_repeats_report(summary: Mapping[str, Any],
                          figures: Mapping[str, str]) -> str:
  """``report.md`` text of the repeated-split protocol."""
  fmt = report_lib.format_value
  lines = [
      "# DiagNet: mass benign vs malignant",
      "",
      f"{summary['num_repeats']} patient-wise "
      f"{1 - summary['test_fraction']:.0%}/{summary['test_fraction']:.0%} "
      f"train/test splits of {summary['dataset']} (split seeds "
      f"{summary['split_seeds']}); test metrics as mean ± sample std "
      "(ddof = 1) over the repeats.",
      "",
      "| metric | mean ± std | per repeat |",
      "|---|---|---|",
  ]
  for key in ("accuracy", "auc"):
    cell = summary["test"][key]
    per = ", ".join(fmt(v) for v in cell["values"])
    lines.append(f"| test {key} | {fmt(cell['mean'])} ± {fmt(cell['std'])} "
                 f"| {per} |")
  lines += ["", "Time of each stage (seconds, summed over repeats):", "",
            "| stage | seconds |", "|---|---|"]
  for k, v in summary["stage_seconds"].items():
    lines.append(f"| {k} | {fmt(v)} |")
  agreement = summary.get("discriminator_agreement")
  if agreement:
    lines += ["", "Generated samples the selecting discriminator scores as "
              "their class (P > 1/2), repeat 0:", "",
              "| class | positive neighbours | negative neighbours |",
              "|---|---|---|"]
    for c, row in agreement.items():
      lines.append(f"| {c} | {fmt(row['positive'])} | "
                   f"{fmt(row['negative'])} |")
  for caption, rel in figures.items():
    lines += ["", f"**{caption}**", "", f"![{caption}]({rel})"]
  return "\n".join(lines) + "\n"

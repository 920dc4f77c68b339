"""The end-of-run report of a graph experiment: figures + ``report.md``.

Written into the workdir next to ``results.json``: ROC curves and confusion
matrices of both tasks on the test split, the GradNorm task-weight
trajectory (from ``metrics.jsonl``), and a few test graphs drawn over their
mammogram crops with predicted vs true morphology.
"""

import json
import os
from typing import Any, Callable, Optional

import numpy as np

from mammojax.reporting import classification
from mammojax.reporting import plots
from mammojax.reporting import report as report_lib

_TASK_FIELDS = {"node": "morphology", "graph": "distribution"}
_TASK_TITLES = {"node": "morphology (node task)",
                "graph": "distribution (graph task)"}


def _trajectory(workdir: str, tasks) -> tuple[np.ndarray, np.ndarray]:
  steps, weights = [], []
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return np.zeros(0), np.zeros((0, len(tasks)))
  with open(path) as f:
    for line in f:
      record = json.loads(line)
      keys = [f"train/weight_{t}" for t in tasks]
      if all(k in record for k in keys):
        steps.append(record["step"])
        weights.append([record[k] for k in keys])
  return np.asarray(steps), np.asarray(weights).reshape(-1, len(tasks))


def _per_sample_nodes(raw: dict[str, np.ndarray], sizes: list[int]):
  """Splits the real nodes of an evaluated split back into samples."""
  mask = raw["node_mask"]
  probs = raw["node_probs"][mask]
  bounds = np.cumsum([0] + sizes)
  return [probs[bounds[i] : bounds[i + 1]] for i in range(len(sizes))]


def per_subtlety_metrics(
    data: Any, raw: dict[str, np.ndarray], split: str,
    classification_report: Callable[..., dict[str, Any]],
) -> dict[str, dict[str, Any]]:
  """Test AUCs (ovo, ovr) of both tasks per cluster subtlety (1-5).

  The evaluated split's real graphs and nodes come in the order of
  ``data.splits[split]`` (``_per_sample_nodes``); each example's
  ``subtlety`` feature (-1 unknown, left out) groups them. A group
  missing classes gets the AUC over its present classes (as
  ``classification_report`` does), None below two.

  ``classification_report`` is ``mammojax.training.metrics``'s (passed in
  by the method: reporting does not import the training layer).
  """
  indices = list(data.splits[split])
  subtlety = np.asarray([int(data.examples[i].get("subtlety", -1))
                         for i in indices])
  sizes = [len(data.examples[i]["morphology"]) for i in indices]
  out: dict[str, dict[str, Any]] = {}
  for s in sorted(set(subtlety[subtlety >= 1].tolist())):
    row: dict[str, Any] = {"graphs": int((subtlety == s).sum())}
    for task, field in (("graph", "distribution"), ("node", "morphology")):
      if f"{task}_probs" not in raw:
        continue
      keep = raw[f"{task}_mask"]
      probs = raw[f"{task}_probs"][keep]
      labels = raw[f"{task}_labels"][keep]
      which = subtlety == s if task == "graph" else np.repeat(
          subtlety == s, sizes)
      if len(which) != len(labels):
        return {}  # Not in split order (should not happen): no table.
      sel = which & (labels >= 0)
      report = classification_report(
          labels[sel], probs[sel],
          class_names=list(data.vocabularies[field]))
      row[f"{task}_items"] = int(sel.sum())
      row[f"{task}_auc_ovo"] = report.get("auc_ovo")
      row[f"{task}_auc_ovr"] = report.get("auc_ovr")
    out[str(s)] = row
  return out


def write_run_report(
    workdir: str,
    config: Any,
    data: Any,
    results: dict[str, Any],
    raw_outputs: dict[str, dict[str, np.ndarray]],
    classification_report: Optional[Callable[..., dict[str, Any]]] = None,
) -> str:
  """Writes figures and ``report.md``; returns the report's path.

  With ``classification_report`` (``mammojax.training.metrics``'s) it also
  writes ``subtlety_metrics.json`` (``per_subtlety_metrics``).
  """
  fig_dir = os.path.join(workdir, "figures")
  os.makedirs(fig_dir, exist_ok=True)
  figures: dict[str, str] = {}
  split = "test" if "test" in raw_outputs else "val"
  raw = raw_outputs.get(split, {})
  for task in config.tasks:
    figures.update(classification.write_task_figures(
        workdir, raw, results.get(split, {}).get(task, {}), task=task,
        class_names=list(data.vocabularies[_TASK_FIELDS[task]]),
        title=_TASK_TITLES[task], split=split,
    ))
  steps, weights = _trajectory(workdir, config.tasks)
  gradnorm = bool(
      config.get("gradnorm") and config.gradnorm.enabled
      and len(config.tasks) > 1
  )
  if len(steps) and gradnorm:
    path = os.path.join(fig_dir, "gradnorm_weights.png")
    plots.plot_task_weights(steps, weights, list(config.tasks), path)
    figures["GradNorm task weights"] = os.path.relpath(path, workdir)
  if "node_probs" in raw:
    indices = list(data.splits[split])
    sizes = [len(data.examples[i]["morphology"]) for i in indices]
    per_sample = _per_sample_nodes(raw, sizes)
    names = list(data.vocabularies["morphology"])
    graph_type = config.graph.types[0]
    for k, (i, probs) in enumerate(zip(indices, per_sample)):
      if k >= config.num_report_graphs:
        break
      ex = data.examples[i]
      crop = np.asarray(ex["crop"], np.float32) / 255.0
      box = np.asarray(ex["crop_box"], np.float32)
      scale = crop.shape[1] / max(box[2] - box[0], 1e-6)
      xy = (np.asarray(ex["centers_xy"]) - box[:2]) * scale
      g = data.sample_graphs[i][graph_type]
      safe_id = ex["example_id"].replace("/", "_")
      path = os.path.join(fig_dir, f"graph_{safe_id}.png")
      plots.draw_graph_on_image(
          crop,
          xy,
          np.asarray(g.senders),
          np.asarray(g.receivers),
          np.asarray(ex["morphology"]),
          probs.argmax(-1),
          names,
          path,
          f"{ex['example_id']} ({graph_type} graph)",
      )
      figures[f"Test graph {ex['example_id']}"] = os.path.relpath(
          path, workdir
      )
  tasks = {}
  for name in ("test", "val"):
    for task in config.tasks:
      if task in results.get(name, {}):
        tasks[f"{_TASK_TITLES[task]}, {name}"] = results[name][task]
  subtlety = (per_subtlety_metrics(data, raw, split, classification_report)
              if raw and classification_report else {})
  if subtlety:
    with open(os.path.join(workdir, "subtlety_metrics.json"), "w") as f:
      json.dump({"split": split, "per_subtlety": subtlety}, f, indent=2)
  report = {
      "title": f"{config.method} run report",
      "run": {
          "workdir": os.path.abspath(workdir),
          "dataset": f"{config.dataset.name}/{config.dataset.builder_config}",
          "tasks": ", ".join(config.tasks),
          "graph types": ", ".join(config.graph.types),
          "layers": config.model.num_layers,
          "hidden size": config.model.hidden_size,
          "fusion": config.model.fusion,
          "GradNorm": gradnorm,
          **classification.run_facts(results, "graphs"),
      },
      "tasks": tasks,
      "losses": classification.loss_table(results),
      "build report": results.get("build_report", {}),
  }
  path = os.path.join(workdir, "report.md")
  report_lib.write_markdown_report(path, report, figures)
  return path

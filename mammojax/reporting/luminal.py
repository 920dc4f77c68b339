"""The per-run report of the luminal method: predictions, figures, Markdown.

``write_run_report`` writes, into a run's workdir, the test (and val)
predictions (``predictions_{split}.npz``), ROC curves and confusion matrices
of every task, Grad-CAM overlays (``config.report.num_gradcam`` images of
the evaluated split) and ``report.md``. Class names come from the caller
(the method), so this module needs nothing of ``training``.
"""

import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mammojax.models import cnn
from mammojax.models import gradcam as gradcam_lib
from mammojax.reporting import classification
from mammojax.reporting import gradcam_overlay
from mammojax.reporting import report as report_lib


def save_predictions(path: str, data: Any, raw: dict[str, np.ndarray],
                     tasks) -> None:
  """Real items' example ids, labels and probabilities as ``.npz``."""
  keep = raw["index"] >= 0
  out = {
      "index": raw["index"][keep],
      "example_id": np.asarray(
          [data.examples[i]["example_id"] for i in raw["index"][keep]]
      ),
  }
  for task in tasks:
    out[f"{task}_labels"] = raw[f"{task}_labels"][keep]
    out[f"{task}_probs"] = raw[f"{task}_probs"][keep]
  np.savez(path, **out)


def pick_gradcam_examples(data: Any, split: str, task: str,
                          count: int) -> list[int]:
  """Up to ``count`` example indices of ``split``, classes alternating."""
  idx = data.splits[split]
  labels = data.labels[task][idx]
  by_class = [list(idx[labels == c]) for c in (1, 0)]
  picked = []
  while len(picked) < count and any(by_class):
    for group in by_class:
      if group and len(picked) < count:
        picked.append(int(group.pop(0)))
  return picked


def write_gradcams(
    fig_dir: str, config: ml_collections.ConfigDict, data: Any, state: Any,
    model: Any, class_names: dict[str, list[str]], *, min_height: int = 384,
) -> list[str]:
  """Grad-CAM overlays of a few test images; returns the PNG paths."""
  tasks = tuple(config.tasks)
  count = int(config.report.num_gradcam)
  split = "test" if len(data.splits["test"]) else "val"
  focus = config.report.get("gradcam_task") or tasks[-1]
  if focus not in tasks:
    focus = tasks[-1]
  picked = pick_gradcam_examples(data, split, focus, count)
  if not picked:
    return []
  images = data.images[picked].astype(np.float32) / 255.0
  variables = {"params": state.params, **dict(state.model_state)}
  softmax = tasks == ("luminal",)
  # Grad-CAM explains the predicted class (softmax) or the focus task's
  # sigmoid logit (MLMC; its score before the sigmoid).
  targets = None if softmax else tasks.index(focus)
  layer = cnn.GRADCAM_LAYERS[config.model.name]
  cam = jax.jit(
      lambda v, x: gradcam_lib.gradcam(model, v, x, layer=layer,
                                       targets=targets)
  )(variables, jnp.asarray(images))
  logits = np.asarray(cam.logits)
  paths = []
  names = class_names[focus]
  for j, i in enumerate(picked):
    ex = data.examples[i]
    true = int(data.labels[focus][i])
    if softmax:
      p = np.exp(logits[j] - logits[j].max())
      p = float((p / p.sum())[1])
    else:
      p = float(1 / (1 + np.exp(-logits[j, targets])))
    title = f"{ex['example_id']} {names[true]}, p({names[1]})={p:.2f}"
    path = os.path.join(fig_dir, f"gradcam_{j}_{ex['example_id']}.png")
    # Small training inputs: enlarge (nearest) so the PNG is readable.
    zoom = max(1, -(-min_height // images.shape[1]))
    big = lambda a: np.kron(np.asarray(a), np.ones((zoom, zoom), np.float32))
    gradcam_overlay.save_gradcam_overlay(
        path, big(images[j]), big(cam.cam[j]), title=title, dpi=100
    )
    paths.append(path)
  return paths


def write_run_report(
    workdir: str,
    config: ml_collections.ConfigDict,
    data: Any,
    results: dict[str, Any],
    raw_outputs: dict[str, dict[str, np.ndarray]],
    state: Any,
    *,
    model: Any,
    class_names: dict[str, list[str]],
) -> str:
  """Predictions, figures and ``report.md`` of one luminal-method run.

  Args:
    workdir: the run's folder (``figures/`` and the files go there).
    config: the run's config (``tasks``, ``model.name``, ``report``).
    data: the run's image data (``examples``, ``splits``, ``images``,
      ``labels``).
    results: the loop's results (metrics per split, ``meta``, ``splits``,
      ``timing``).
    raw_outputs: per split, the evaluated ``{task}_probs`` / ``_labels`` /
      ``_mask`` and ``index``.
    state: the best train state (``params``, ``model_state``).
    model: the linen model (Grad-CAM).
    class_names: class names of every task of ``config.tasks``.

  Returns:
    The path of ``report.md``.
  """
  fig_dir = os.path.join(workdir, "figures")
  os.makedirs(fig_dir, exist_ok=True)
  tasks = tuple(config.tasks)
  missing = [t for t in tasks if t not in class_names]
  if missing:
    raise ValueError(
        f"class_names: no names for tasks {missing} of config.tasks={tasks}"
    )
  names = {t: list(class_names[t]) for t in tasks}
  for split, raw in raw_outputs.items():
    save_predictions(
        os.path.join(workdir, f"predictions_{split}.npz"), data, raw, tasks
    )
  figures = {}
  split = "test" if "test" in raw_outputs else "val"
  raw = raw_outputs.get(split, {})
  for task in tasks:
    figures.update(classification.write_task_figures(
        workdir, raw, results.get(split, {}).get(task, {}), task=task,
        class_names=names[task], title=f"{task} ({split})", split=split,
    ))
  for path in write_gradcams(fig_dir, config, data, state, model, names):
    figures[f"Grad-CAM {os.path.basename(path)}"] = os.path.relpath(
        path, workdir
    )
  report = {
      "title": f"luminal method, tasks {', '.join(tasks)}",
      "tasks": {t: results[split][t] for t in tasks if t in results[split]},
      "losses": classification.loss_table(results),
      "run": {
          "split evaluated": split,
          "init_from": config.get("init_from") or "",
          "best epoch": results["meta"]["best_epoch"],
          "images per split": results["splits"],
          "train images/s": round(
              results["timing"]["train_items_per_second"], 2
          ),
      },
  }
  path = os.path.join(workdir, "report.md")
  report_lib.write_markdown_report(path, report, figures)
  return path

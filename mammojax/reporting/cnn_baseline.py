"""The end-of-run report of a CNN baseline: ROC, confusion, ``report.md``."""

import os
from typing import Any

from mammojax.reporting import classification
from mammojax.reporting import report as report_lib


def write_run_report(
    workdir: str, config: Any, data: Any, results: dict[str, Any],
    raw_outputs: dict[str, Any], *, input_description: str,
) -> str:
  """ROC curves, confusion matrix and ``report.md``; returns its path.

  Args:
    workdir: the run folder.
    config: the run's config (``baseline`` block).
    data: the run's ``ImageArrays`` (``task``, ``field``, splits).
    results: the loop's results.
    raw_outputs: split -> host outputs of the evaluated splits.
    input_description: what one input is (e.g. "the cluster crop").
  """
  task, field = data.task, data.field
  title = f"{field} ({config.baseline.level} level, task {task})"
  split = "test" if "test" in raw_outputs else "val"
  figures = classification.write_task_figures(
      workdir, raw_outputs.get(split, {}), results.get(split, {}).get(task, {}),
      task=task, class_names=list(data.vocabularies[field]), title=title,
      split=split,
  )
  tasks = {
      f"{title}, {name}": results[name][task]
      for name in ("test", "val")
      if task in results.get(name, {})
  }
  bcfg = config.baseline
  size = bcfg.image_size if bcfg.level == "image" else bcfg.patch_size
  report = {
      "title": f"CNN baseline run report: {bcfg.model}, {bcfg.level} level",
      "run": {
          "workdir": os.path.abspath(workdir),
          "dataset": f"{config.dataset.name}/{config.dataset.builder_config}",
          "model": bcfg.model,
          "level": bcfg.level,
          "input": f"{input_description}, {size} x {size}",
          "target": field,
          "fold": f"{config.dataset.fold} of {config.dataset.num_folds}",
          **classification.run_facts(results, "items"),
          "clusters (train/val/test)": "/".join(
              str(len(data.example_splits[k]))
              for k in ("train", "val", "test")
          ),
      },
      "tasks": tasks,
      "losses": classification.loss_table(results),
      "build report": results.get("build_report", {}),
  }
  path = os.path.join(workdir, "report.md")
  report_lib.write_markdown_report(path, report, figures)
  return path

"""The MT-GCN paper's Table 1 ablations with patient-wise k-fold CV.

``run_protocol(config, workdir)`` trains every row of ``config.protocol.rows``
once per fold and tabulates test AUC (Hand & Till one-vs-one, and
one-vs-rest) as mean ± std over folds, like the paper's Table 1. The std is
the sample std (ddof = 1), as in ``mammojax.experiments.luminal``; a row
with one fold has no std.

A config (``configs/ablation.py``) holds ``protocol`` (the fields below),
``mtgcn`` (the MT-GCN config the ``ROWS`` override) and ``baselines`` (one
``configs/cnn_baseline.py`` config per ``BASELINE_ROWS`` variant).

* Every MT-GCN row (``ROWS``) is ``config.mtgcn`` with a few overrides.
* ``distill`` (``DISTILL_ROW``) is knowledge distillation: its teachers are
  the ``task_node`` and ``task_graph`` runs of the same fold (trained first
  when missing), its student ``config.mtgcn`` with ``distill.teachers`` set
  to their workdirs (``configs/mtgcn.py:student`` for the default variant).
* ``protocol.schedule`` (``SCHEDULES``) sets the training schedule of every
  row (``default``: the configs' own; ``paper``: configs/mtgcn.py:paper's);
  ``protocol.num_epochs`` then overrides the epochs. The table names each
  row's schedule.
* The CNN baselines (``BASELINE_ROWS``: ResNet, DenseNet, MobileNet,
  ShuffleNet as image-level distribution and patch-level morphology
  classifiers) run through the same folds (same patient-wise splits).

Each fold ``k`` (``config.dataset.num_folds`` / ``fold``: the fold is the
validation set used for model selection) is evaluated on the same fixed,
patient-wise held-out test set, so rows and folds are comparable. Fold runs
go to ``workdir/{row}/fold{k}`` and are resumable: a fold whose
``results.json`` exists is not retrained. ``protocol.report_only`` trains
nothing and tabulates the folds that exist (a row averaging fewer folds
than it should says how many).

Writes ``ablation.json`` and ``ablation.md`` into the workdir.
"""

import json
import os
import time
from typing import Any, Callable, Optional, Sequence

from absl import logging
import ml_collections
import numpy as np

# Paper's Table 1 (in-house data): name -> (description, overrides,
# (distribution AUC, morphology AUC) reported by the paper).
ROWS = {
    "task_node": (
        "task-specific morphology", {"tasks": ("node",)}, (None, 0.608)
    ),
    "task_graph": (
        "task-specific distribution", {"tasks": ("graph",)}, (0.785, None)
    ),
    "radius_only": (
        "single radius graph", {"graph.types": ("radius",)}, (0.785, 0.585)
    ),
    "knn_only": ("single KNN graph", {"graph.types": ("knn",)}, (0.742, 0.580)),
    "layers_2": ("2 layers", {"model.num_layers": 2}, (0.769, 0.597)),
    "layers_4": ("4 layers", {"model.num_layers": 4}, (0.751, 0.619)),
    "layers_16": ("16 layers", {"model.num_layers": 16}, (0.802, 0.615)),
    "proposed": (
        "proposed (multi-task, multi-graph, 8 layers, GradNorm)",
        {},
        (0.815, 0.631),
    ),
    # Not in the paper's table: the student of the two task-specific rows.
    "distill": (
        "knowledge distillation (student of the task-specific rows)",
        {},
        (None, None),
    ),
}
DISTILL_ROW = "distill"
# The teachers of DISTILL_ROW, one per task.
TEACHER_ROWS = ("task_node", "task_graph")


# The paper's CNN baselines (Table 1): name -> (description,
# configs/cnn_baseline.py variant, overrides, (distribution AUC, morphology
# AUC) reported by the paper). Image level: the cluster crop -> distribution;
# patch level: each calcification patch -> morphology.
_CNNS = (
    ("resnet18", "ResNet-18", (0.683, 0.565)),
    ("densenet121", "DenseNet-121", (0.688, 0.576)),
    ("mobilenet_v2", "MobileNetV2", (0.694, 0.575)),
    ("shufflenet_v2_x1_0", "ShuffleNetV2 1.0x", (0.678, 0.581)),
)
BASELINE_ROWS = {}
for _model, _title, (_dist, _morph) in _CNNS:
  BASELINE_ROWS[f"{_model}_image"] = (
      f"{_title} baseline, image level (distribution)",
      f"{_model}_image", {}, (_dist, None),
  )
  BASELINE_ROWS[f"{_model}_patch"] = (
      f"{_title} baseline, patch level (morphology)",
      f"{_model}_patch", {}, (None, _morph),
  )

# Training schedules (``config.protocol.schedule``): name -> (description,
# overrides of the MT-GCN rows, overrides of the CNN baseline rows).
# ``default`` keeps each config's own (30 epochs, early stopping after 10);
# ``paper`` is ``configs/mtgcn.py:paper``'s (hidden 128, lr 3e-4, 100
# epochs, no early stopping), which the default's 30 epochs undertrain
# against, and 100 epochs without early stopping for the CNN baselines.
SCHEDULES = {
    "default": ("each config's own", {}, {}),
    "paper": (
        "configs/mtgcn.py:paper schedule",
        {"model.hidden_size": 128, "learning_rate": 3e-4, "num_epochs": 100,
         "early_stopping_patience": 0},
        {"num_epochs": 100, "early_stopping_patience": 0},
    ),
}

# Row groups accepted in ``config.protocol.rows``.
GROUPS = {"baselines": tuple(BASELINE_ROWS),
          "all": tuple(ROWS) + tuple(BASELINE_ROWS)}
METRICS = ("graph_auc_ovo", "graph_auc_ovr", "node_auc_ovo", "node_auc_ovr")
STD_NOTE = "sample std over folds (ddof = 1)"


def _split(names: Sequence[str]) -> list[str]:
  """Names, with comma-joined ones (``--config.protocol.rows=a,b``) split."""
  return [n.strip() for x in names for n in str(x).split(",") if n.strip()]


def unknown_rows(names: Sequence[str]) -> list[str]:
  """The names that are neither a row nor a group."""
  return [n for n in _split(names)
          if n not in ROWS and n not in BASELINE_ROWS and n not in GROUPS]


def expand_rows(names: Sequence[str]) -> list[str]:
  """Row names with groups expanded, in order, without repeats.

  Args:
    names: names of ``ROWS`` / ``BASELINE_ROWS`` or ``GROUPS`` (or
      comma-joined names); empty means every ``ROWS`` row.

  Raises:
    ValueError: an unknown name (names ``config.protocol.rows``).
  """
  names = _split(names)
  unknown = unknown_rows(names)
  if unknown:
    raise ValueError(
        f"config.protocol.rows: unknown {unknown}; expected names of "
        f"{list(ROWS)}, {list(BASELINE_ROWS)} or {list(GROUPS)}"
    )
  rows = []
  for name in names or list(ROWS):
    rows += [r for r in GROUPS.get(name, (name,)) if r not in rows]
  return rows


def folds(config: ml_collections.ConfigDict) -> list[int]:
  """The fold indices to run (``protocol.folds``, else all ``num_folds``)."""
  p = config.protocol
  return [int(f) for f in (p.get("folds") or ())] or list(
      range(int(p.num_folds))
  )


def fold_workdir(workdir: str, row: str, fold: int) -> str:
  return os.path.join(workdir, row, f"fold{fold}")


def _copy(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(config.to_dict())


def _apply(config, overrides):
  for key, value in overrides.items():
    target = config
    *path, last = key.split(".")
    for p in path:
      target = target[p]
    target[last] = value
  if len(config.tasks) == 1:
    config.gradnorm.enabled = False
  return config


def row_config(
    config: ml_collections.ConfigDict, row: str, fold: int, workdir: str
) -> ml_collections.ConfigDict:
  """The training config of ``row`` on ``fold`` (a copy).

  Args:
    config: the protocol config (``protocol``, ``mtgcn``, ``baselines``).
    row: a name of ``ROWS`` or ``BASELINE_ROWS``.
    fold: the validation fold.
    workdir: the protocol's workdir (the distill row's teachers are there).
  """
  p = config.protocol
  schedule = p.get("schedule") or "default"
  if schedule not in SCHEDULES:
    raise ValueError(
        f"config.protocol.schedule={schedule!r}; expected one of "
        f"{list(SCHEDULES)}")
  _, mtgcn_schedule, cnn_schedule = SCHEDULES[schedule]
  if row in BASELINE_ROWS:
    _, variant, overrides, _ = BASELINE_ROWS[row]
    if variant not in config.baselines:
      raise ValueError(
          f"config.baselines: no config for {variant!r} (row {row!r}); "
          f"expected one of {sorted(config.baselines)}"
      )
    c = _apply(_apply(_copy(config.baselines[variant]), cnn_schedule),
               overrides)
  elif row == DISTILL_ROW:
    c = _apply(_copy(config.mtgcn), mtgcn_schedule)
    c.distill.teachers = tuple(
        fold_workdir(workdir, t, fold) for t in TEACHER_ROWS
    )
  else:
    c = _apply(_apply(_copy(config.mtgcn), mtgcn_schedule), ROWS[row][1])
  c.dataset.num_folds = int(p.num_folds)
  c.dataset.fold = int(fold)
  if p.get("num_epochs"):
    c.num_epochs = int(p.num_epochs)
  if p.get("dataset_builder_config"):
    c.dataset.builder_config = p.dataset_builder_config
  return c


def _load_json(path: str) -> dict[str, Any]:
  with open(path) as f:
    return json.load(f)


def fold_metrics(fold: int, results: dict[str, Any]) -> dict[str, Any]:
  """The table's test metrics of one fold run."""
  test = results.get("test", {})
  return {
      "fold": fold,
      "graph_auc_ovo": test.get("graph", {}).get("auc_ovo"),
      "graph_auc_ovr": test.get("graph", {}).get("auc_ovr"),
      "node_auc_ovo": test.get("node", {}).get("auc_ovo"),
      "node_auc_ovr": test.get("node", {}).get("auc_ovr"),
  }


def mean_std(values: Sequence[Optional[float]]):
  """``(mean, sample std (ddof = 1), n)`` of the finite values.

  The std is None for fewer than two values; the mean for none.
  """
  v = [float(x) for x in values if x is not None and np.isfinite(x)]
  if not v:
    return None, None, 0
  std = float(np.std(v, ddof=1)) if len(v) > 1 else None
  return float(np.mean(v)), std, len(v)


def summarize(per_fold: Sequence[dict[str, Any]]) -> dict[str, Any]:
  """``{metric: {mean, std, folds}}`` over the folds of one row."""
  summary = {}
  for key in METRICS:
    mean, std, n = mean_std([f[key] for f in per_fold])
    summary[key] = {"mean": mean, "std": std, "folds": n}
  return summary


class _Runner:
  """Trains (or loads) fold runs; every fold run happens at most once."""

  def __init__(self, config, workdir, train_fn, examples_and_info):
    self.config = config
    self.workdir = workdir
    self.train_fn = train_fn
    self.examples_and_info = examples_and_info
    self.report_only = bool(config.protocol.get("report_only"))
    self.trained_now = 0

  def fold(self, row: str, fold: int) -> Optional[dict[str, Any]]:
    """The results of ``row`` on ``fold``; None if missing (report_only)."""
    run_dir = fold_workdir(self.workdir, row, fold)
    path = os.path.join(run_dir, "results.json")
    wall = os.path.join(run_dir, "wall_seconds.json")
    if os.path.exists(path):
      results = _load_json(path)
    elif self.report_only:
      logging.info("%s fold %d: no %s; left out (report_only)", row, fold,
                   path)
      return None
    else:
      if row == DISTILL_ROW:
        for teacher in TEACHER_ROWS:
          if self.fold(teacher, fold) is None:
            return None
      start = time.time()
      kwargs = {}
      if self.examples_and_info is not None:
        kwargs["examples_and_info"] = self.examples_and_info
      results = self.train_fn(
          row_config(self.config, row, fold, self.workdir), run_dir, **kwargs
      )
      seconds = time.time() - start
      self.trained_now += 1
      os.makedirs(run_dir, exist_ok=True)
      with open(wall, "w") as f:
        json.dump({"wall_seconds": seconds}, f)
      logging.info("%s fold %d: %.0f s", row, fold, seconds)
    out = fold_metrics(fold, results)
    if os.path.exists(wall):
      out["wall_seconds"] = _load_json(wall)["wall_seconds"]
    return out


def schedule_of(config, row: str) -> str:
  """The schedule a row trains with, e.g. ``"paper: 100 epochs, lr 3e-04"``."""
  c = row_config(config, row, 0, "")
  name = config.protocol.get("schedule") or "default"
  text = f"{name}: {c.num_epochs} epochs, lr {c.learning_rate:.0e}"
  if c.get("early_stopping_patience"):
    text += f", early stop {c.early_stopping_patience}"
  if row not in BASELINE_ROWS:
    text += f", hidden {c.model.hidden_size}"
  return text


def _describe(config, row: str) -> dict[str, Any]:
  if row in BASELINE_ROWS:
    description, variant, overrides, paper = BASELINE_ROWS[row]
    source = f"configs/cnn_baseline.py:{variant}"
  else:
    description, overrides, paper = ROWS[row]
    source = f"configs/mtgcn.py:{config.protocol.variant}"
    if row == DISTILL_ROW:
      source += " with distill.teachers = the fold's " + " and ".join(
          TEACHER_ROWS
      ) + " runs"
  return {
      "description": description,
      "config": source,
      "schedule": schedule_of(config, row),
      "overrides": {k: list(v) if isinstance(v, tuple) else v
                    for k, v in overrides.items()},
      "paper_auc": {"distribution": paper[0], "morphology": paper[1]},
  }


def format_cell(mean, std, n=None, expected=None) -> str:
  """``mean ± std``, ``mean`` (one fold) or ``—``; notes missing folds."""
  if mean is None:
    return "—"
  text = f"{mean:.3f}" if std is None else f"{mean:.3f} ± {std:.3f}"
  if n is not None and expected is not None and n < expected:
    text += f" ({n} fold{'s' if n > 1 else ''})"
  return text


def render_table(table: dict[str, Any],
                 config: ml_collections.ConfigDict) -> str:
  """``ablation.md`` text of a table (``run_protocol``'s rows)."""
  p = config.protocol
  lines = [
      "# MT-GCN ablations and CNN baselines (test AUC, mean ± std over "
      "folds)",
      "",
      f"{p.num_folds}-fold patient-wise CV, MT-GCN variant `{p.variant}`"
      + f", schedule `{p.get('schedule') or 'default'}`"
      + (f", {p.num_epochs} epochs" if p.get("num_epochs") else "")
      + f"; std is the {STD_NOTE}, none for one fold. Paper values are "
      "from its in-house data (Table 1).",
      "",
      "| model | schedule | distribution AUC ovo | distribution AUC ovr | "
      "morphology AUC ovo | morphology AUC ovr | paper dist. / morph. |",
      "|---|---|---|---|---|---|---|",
  ]
  expected = len(folds(config))
  for row in table.values():
    s = row["summary"]
    paper = row["paper_auc"]
    paper_str = " / ".join(
        "—" if v is None else f"{v:.3f}"
        for v in (paper["distribution"], paper["morphology"])
    )
    cells = [
        format_cell(s[k]["mean"], s[k]["std"], s[k]["folds"], expected)
        for k in METRICS
    ]
    lines.append(
        f"| {row['description']} | {row.get('schedule', '')} | "
        + " | ".join(cells) + f" | {paper_str} |"
    )
  return "\n".join(lines) + "\n"


def run_protocol(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    train_fn: Optional[Callable[..., dict[str, Any]]] = None,
    examples_and_info: Optional[tuple[list[dict[str, Any]], dict]] = None,
) -> dict[str, Any]:
  """Runs the rows over the folds; writes ``ablation.json`` / ``.md``.

  Args:
    config: an ablation config (``configs/ablation.py``): ``protocol``
      (``rows``, ``num_folds``, ``folds``, ``schedule``, ``num_epochs``,
      ``dataset_builder_config``, ``report_only``, ``variant``), ``mtgcn``
      and ``baselines``.
    workdir: output folder; fold runs go to ``{row}/fold{k}``.
    train_fn: ``(config, workdir, **kwargs) -> results`` (tests); default
      ``training.loop.train_and_evaluate``.
    examples_and_info: already loaded examples for every run (tests).

  Returns:
    The table written to ``ablation.json``: row name -> description,
    config, overrides, paper AUCs, per-fold test AUCs and their summary;
    folds missing under ``report_only`` are listed in ``missing_folds``.
  """
  rows = expand_rows(list(config.protocol.get("rows") or ()))
  if train_fn is None:
    from mammojax.training import loop  # pylint: disable=g-import-not-at-top

    train_fn = loop.train_and_evaluate
  os.makedirs(workdir, exist_ok=True)
  runner = _Runner(config, workdir, train_fn, examples_and_info)
  table = {}
  for row in rows:
    per_fold, missing = [], []
    for fold in folds(config):
      result = runner.fold(row, fold)
      if result is None:
        missing.append(fold)
      else:
        per_fold.append(result)
    table[row] = {
        **_describe(config, row),
        "folds": per_fold,
        "missing_folds": missing,
        "summary": summarize(per_fold),
    }
  with open(os.path.join(workdir, "ablation.json"), "w") as f:
    json.dump(table, f, indent=2)
  with open(os.path.join(workdir, "ablation.md"), "w") as f:
    f.write(render_table(table, config))
  logging.info("ablation: %d fold runs trained now; table in %s",
               runner.trained_now, os.path.join(workdir, "ablation.md"))
  return table

"""The MT-GCN paper's Table 1 ablations with patient-wise k-fold CV.

Every row is ``configs/mtgcn.py`` with a few overrides; every row is trained
once per fold (``config.dataset.num_folds`` / ``fold``: the fold is the
validation set used for model selection) and evaluated on the same fixed,
patient-wise held-out test set, so rows and folds are comparable. The table
reports test AUC (Hand & Till one-vs-one, and one-vs-rest) as mean ± std over
folds, like the paper's Table 1.

The table's CNN baselines (``BASELINE_ROWS``: ResNet, DenseNet, MobileNet,
ShuffleNet as image-level distribution and patch-level morphology
classifiers) are ``configs/cnn_baseline.py`` variants run through the same
folds (same patient-wise splits). ``--rows`` names rows of either table;
``baselines`` stands for every baseline row and ``all`` for every row.

  python scripts/ablation.py --workdir=runs/ablation --folds=5
  python scripts/ablation.py --workdir=runs/ablation_quick --folds=2 \
      --num_epochs=5 --rows=proposed,task_node,task_graph
  python scripts/ablation.py --workdir=runs/ablation_quick --folds=2 \
      --num_epochs=5 --rows=resnet18_image,resnet18_patch

Runs are resumable: a fold whose ``results.json`` exists is not retrained.
``--report_only`` trains nothing and tabulates the folds that exist (a row
averaging fewer folds than ``--folds`` says how many).
Writes ``ablation.json`` and ``ablation.md`` into the workdir.
"""

import json
import os
import sys
import time

from absl import app
from absl import flags
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from configs import cnn_baseline  # pylint: disable=g-import-not-at-top,wrong-import-position
from configs import mtgcn  # pylint: disable=g-import-not-at-top,wrong-import-position

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", "runs/ablation", "Output folder.")
flags.DEFINE_string(
    "variant", "default", "configs/mtgcn.py variant (MT-GCN rows)."
)
flags.DEFINE_integer("folds", 5, "k of the patient-wise k-fold CV.")
flags.DEFINE_list("only_folds", [], "Run only these fold indices.")
flags.DEFINE_integer("num_epochs", 0, "Override config.num_epochs (0: keep).")
flags.DEFINE_list(
    "rows", [],
    "Rows to run (default: every ROWS row); names of ROWS or BASELINE_ROWS, "
    "'baselines' (every baseline row) or 'all'.",
)
flags.DEFINE_string("dataset_builder_config", "", "Override the dataset.")
flags.DEFINE_bool(
    "report_only", False,
    "Train nothing: build the table from the folds whose results.json "
    "exists (rows show how many folds they average when fewer than --folds).",
)

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
}


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


def _row(name):
  """``(description, config, overrides, paper)``; config builds the base."""
  if name in ROWS:
    description, overrides, paper = ROWS[name]
    return (description, lambda: mtgcn.get_config(FLAGS.variant), overrides,
            paper)
  description, variant, overrides, paper = BASELINE_ROWS[name]
  return (description, lambda: cnn_baseline.get_config(variant), overrides,
          paper)


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


def _mean_std(values):
  values = [v for v in values if v is not None and np.isfinite(v)]
  if not values:
    return None, None, 0
  return float(np.mean(values)), float(np.std(values)), len(values)


def _fmt(mean, std, n=None, expected=None):
  if mean is None:
    return "—"
  text = f"{mean:.3f} ± {std:.3f}"
  if n is not None and expected is not None and n < expected:
    text += f" ({n} fold{'s' if n > 1 else ''})"
  return text


def _folds():
  """The fold indices to run (``--only_folds``, else all ``--folds``)."""
  return [int(f) for f in FLAGS.only_folds] or list(range(FLAGS.folds))


def run_row(name, overrides, loop, base_config=None):
  """Trains every fold of one row; returns per-fold test metrics."""
  per_fold = []
  folds = _folds()
  base_config = base_config or (lambda: mtgcn.get_config(FLAGS.variant))
  for fold in folds:
    config = _apply(base_config(), overrides)
    config.dataset.num_folds = FLAGS.folds
    config.dataset.fold = fold
    if FLAGS.num_epochs:
      config.num_epochs = FLAGS.num_epochs
    if FLAGS.dataset_builder_config:
      config.dataset.builder_config = FLAGS.dataset_builder_config
    workdir = os.path.join(FLAGS.workdir, name, f"fold{fold}")
    path = os.path.join(workdir, "results.json")
    if os.path.exists(path):
      with open(path) as f:
        results = json.load(f)
    elif FLAGS.report_only:
      print(f"{name} fold {fold}: no {path}; left out (--report_only)",
            flush=True)
      continue
    else:
      start = time.time()
      results = loop.train_and_evaluate(config, workdir)
      print(f"{name} fold {fold}: {time.time() - start:.0f} s", flush=True)
    test = results.get("test", {})
    per_fold.append({
        "fold": fold,
        "graph_auc_ovo": test.get("graph", {}).get("auc_ovo"),
        "graph_auc_ovr": test.get("graph", {}).get("auc_ovr"),
        "node_auc_ovo": test.get("node", {}).get("auc_ovo"),
        "node_auc_ovr": test.get("node", {}).get("auc_ovr"),
    })
  return per_fold


def main(argv):
  del argv
  from mammojax import runtime  # pylint: disable=g-import-not-at-top
  from mammojax.training import loop  # pylint: disable=g-import-not-at-top

  runtime.configure_jax()
  runtime.quiet_library_logging()
  groups = {"baselines": list(BASELINE_ROWS),
            "all": list(ROWS) + list(BASELINE_ROWS)}
  rows = []
  for r in FLAGS.rows or list(ROWS):
    rows += [x for x in groups.get(r, [r]) if x not in rows]
  unknown = [r for r in rows if r not in ROWS and r not in BASELINE_ROWS]
  if unknown:
    raise app.UsageError(
        f"--rows: unknown {unknown}; known {list(ROWS)}, "
        f"{list(BASELINE_ROWS)}, baselines, all"
    )
  os.makedirs(FLAGS.workdir, exist_ok=True)
  table = {}
  for name in rows:
    description, base_config, overrides, paper = _row(name)
    per_fold = run_row(name, overrides, loop, base_config)
    summary = {}
    for key in ("graph_auc_ovo", "graph_auc_ovr", "node_auc_ovo",
                "node_auc_ovr"):
      mean, std, n = _mean_std([f[key] for f in per_fold])
      summary[key] = {"mean": mean, "std": std, "folds": n}
    table[name] = {
        "description": description,
        "config": (f"configs/cnn_baseline.py:{BASELINE_ROWS[name][1]}"
                   if name in BASELINE_ROWS
                   else f"configs/mtgcn.py:{FLAGS.variant}"),
        "overrides": {k: list(v) if isinstance(v, tuple) else v
                      for k, v in overrides.items()},
        "paper_auc": {"distribution": paper[0], "morphology": paper[1]},
        "folds": per_fold,
        "summary": summary,
    }
  with open(os.path.join(FLAGS.workdir, "ablation.json"), "w") as f:
    json.dump(table, f, indent=2)
  lines = [
      "# MT-GCN ablations and CNN baselines (test AUC, mean ± std over "
      "folds)",
      "",
      f"{FLAGS.folds}-fold patient-wise CV, MT-GCN variant `{FLAGS.variant}`"
      + (f", {FLAGS.num_epochs} epochs" if FLAGS.num_epochs else "")
      + ". Paper values are from its in-house data (Table 1).",
      "",
      "| model | distribution AUC ovo | distribution AUC ovr | morphology "
      "AUC ovo | morphology AUC ovr | paper dist. / morph. |",
      "|---|---|---|---|---|---|",
  ]
  expected = len(_folds())
  for name, row in table.items():
    s = row["summary"]
    paper = row["paper_auc"]
    paper_str = " / ".join(
        "—" if v is None else f"{v:.3f}"
        for v in (paper["distribution"], paper["morphology"])
    )
    cells = [
        _fmt(s[k]["mean"], s[k]["std"], s[k]["folds"], expected)
        for k in ("graph_auc_ovo", "graph_auc_ovr", "node_auc_ovo",
                  "node_auc_ovr")
    ]
    lines.append(
        f"| {row['description']} | " + " | ".join(cells) + f" | {paper_str} |"
    )
  text = "\n".join(lines) + "\n"
  with open(os.path.join(FLAGS.workdir, "ablation.md"), "w") as f:
    f.write(text)
  print(text)


if __name__ == "__main__":
  app.run(main)

"""DAE-GCN's Table 2 ablations and comparators over repeated splits.

Every row is ``configs/daegcn.py`` with the Table 2 switches of one
``configs.daegcn.ABLATIONS`` variant (disentangle, attribute learning
none / multi-task / GCN, ``L_rec``, ``h_i``):

=========== =========== ========= ===== ===== ==============================
row         disentangle attributes L_rec h_i   also
=========== =========== ========= ===== ===== ==============================
vanilla     no          none      no    no    Vanilla (ResNet-34 classifier)
multitask   no          multitask no    no    multi-task comparator
chen        no          GCN       no    no    Chen et al. (GCN, no split)
ae          no          none      yes   no
dae_no_hi   yes         none      yes   no
dae         yes         none      yes   yes
default     yes         GCN       yes   yes   DAE-GCN
=========== =========== ========= ===== ===== ==============================

Each row is trained once per repeated patient-wise 8:1:1 split
(``config.dataset.split_seed`` = 0 .. ``--splits`` - 1, the run seed
following it) and tested on that split's test patients; the table gives
test AUC, attribute accuracy (overall, shape, margin: Table 3) and the SVM
probe AUCs as mean ± sample std (ddof = 1) over the splits a row has, and
their number. The runs go split-major (every row on split 0, then every
row on split 1, ...), so a stopped protocol still has all rows on its first
splits. Runs go to ``workdir/{row}/split{k}`` and are resumable: a run
whose ``results.json`` has the ``daegcn`` analysis is not retrained; one
without it (stopped during training or the end-of-run report) is resumed
from its checkpoints by the loop. ``--report_only`` tabulates what exists.
``ablation.json`` keeps every run's values (with its split, best epoch,
validation AUC, the wall and CPU seconds of the run, from the
``ablation_run.json`` written next to its ``results.json``).

  python scripts/daegcn_ablation.py --workdir=runs/daegcn_ablation --splits=5
  python scripts/daegcn_ablation.py --workdir=runs/daegcn_quick --splits=2 \
      --num_epochs=5 --rows=vanilla,chen,default

``--set key=value`` overrides any config field of every row (e.g.
``--set=model.image_size=32``). Writes ``ablation.json`` and
``ablation.md`` into the workdir.
"""

import ast
import json
import os
import sys
import time
from typing import Any, Optional, Sequence

from absl import app
from absl import flags
from absl import logging
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from configs import daegcn as daegcn_configs  # pylint: disable=g-import-not-at-top,wrong-import-position

ROWS = ("vanilla", "multitask", "chen", "ae", "dae_no_hi", "dae", "default")
LABELS = {
    "vanilla": "Vanilla (ResNet-34)",
    "multitask": "multi-task",
    "chen": "Chen et al. (GCN)",
    "ae": "auto-encoder",
    "dae_no_hi": "disentangled, no h_i",
    "dae": "disentangled",
    "default": "DAE-GCN",
}

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command line (defined only when run as a script: importing this
  module next to ``mammojax.main``, which defines ``--workdir`` too, must
  not clash)."""
  flags.DEFINE_string("workdir", "runs/daegcn_ablation", "Output folder.")
  flags.DEFINE_integer("splits", 5, "Repeated patient-wise 8:1:1 splits.")
  flags.DEFINE_list("rows", list(ROWS), f"Rows to run, of {ROWS}.")
  flags.DEFINE_integer("num_epochs", 0,
                       "Override config.num_epochs (0: keep).")
  flags.DEFINE_multi_string(
      "set", [], "key=value config override of every row (Python literal)."
  )
  flags.DEFINE_bool("report_only", False, "Train nothing; tabulate the runs.")


def _parse_value(text: str) -> Any:
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def row_config(row: str, split: int, *, num_epochs: int = 0,
               overrides: Sequence[str] = ()):
  """``configs/daegcn.py:row`` on split ``split`` with the overrides."""
  if row not in ROWS:
    raise ValueError(f"--rows: unknown row {row!r}; expected some of {ROWS}")
  config = daegcn_configs.get_config("default")
  for item in overrides:
    key, sep, value = item.partition("=")
    if not sep:
      raise ValueError(f"--set={item!r}: expected key=value")
    node = config
    *parents, leaf = key.split(".")
    for part in parents:
      node = node[part]
    if leaf not in node and parents[-1:] != ["backbone_kwargs"]:
      raise ValueError(f"--set={item!r}: config has no field {key!r}")
    node[leaf] = _parse_value(value)
  daegcn_configs.set_ablation(config, row)
  config.dataset.split_seed = int(split)
  config.seed = int(split)
  if num_epochs:
    config.num_epochs = int(num_epochs)
  return config


def run_metrics(results: dict[str, Any]) -> dict[str, Optional[float]]:
  """Test AUC, attribute accuracies and probe AUCs of one run."""
  extra = results.get("daegcn", {})
  split = extra.get("test_split", "test")
  attrs = extra.get("attribute_accuracy", {}).get(split, {})
  probe = extra.get("probe_auc", {})
  return {
      "auc": results.get(split, {}).get("malignant", {}).get("auc_ovr"),
      "val_auc": results.get("val", {}).get("malignant", {}).get("auc_ovr"),
      "best_epoch": results.get("meta", {}).get("best_epoch"),
      "attribute_accuracy": attrs.get("overall", {}).get("accuracy"),
      "shape_accuracy": attrs.get("mass_shape", {}).get("accuracy"),
      "margin_accuracy": attrs.get("mass_margin", {}).get("accuracy"),
      "probe_disease": probe.get("h_ma + h_mi"),
      "probe_irrelevant": probe.get("h_i"),
  }


def is_complete(path: str) -> bool:
  """Whether ``path`` (a ``results.json``) holds a finished run.

  The loop writes ``results.json`` before the end-of-run report adds the
  ``daegcn`` analysis; a run stopped in between (or whose report failed)
  lacks it and is not tabulated as if it had no attributes or probe.
  """
  if not os.path.exists(path):
    return False
  with open(path) as f:
    return "daegcn" in json.load(f)


def mean_std(values: Sequence[Optional[float]]) -> dict[str, Any]:
  """Mean and sample std (ddof=1) of the finite values."""
  v = np.asarray([x for x in values if x is not None and np.isfinite(x)],
                 np.float64)
  if not len(v):
    return {"mean": None, "std": None, "n": 0}
  return {"mean": float(v.mean()),
          "std": float(v.std(ddof=1)) if len(v) > 1 else None,
          "n": int(len(v))}


def summarize(per_run: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
  """row -> metric -> mean / std / n over the row's splits."""
  out = {}
  for row, runs in per_run.items():
    keys = sorted({k for r in runs for k in r})
    out[row] = {k: mean_std([r.get(k) for r in runs]) for k in keys}
  return out


def _cell(stat: dict[str, Any], n_row: int) -> str:
  if stat is None or stat.get("mean") is None:
    return "-"
  text = f"{stat['mean']:.3f}"
  if stat.get("std") is not None:
    text += f" ± {stat['std']:.3f}"
  if stat.get("n", 0) != n_row:
    text += f" (n={stat['n']})"
  return text


METRICS = ("auc", "attribute_accuracy", "shape_accuracy", "margin_accuracy",
           "probe_disease", "probe_irrelevant")


def render_table(summary: dict[str, Any], splits: int) -> str:
  """The Markdown table (Table 2 switches + measured metrics).

  The last column is the number of splits the row's test AUC has; a cell
  over fewer splits (e.g. a probe that had one class) says its ``n``.
  """
  header = ("| row | disentangle | attribute learning | L_rec | h_i | "
            "test AUC | attribute acc. | shape acc. | margin acc. | "
            "probe h_ma+h_mi | probe h_i | splits |")
  lines = [header, "|" + "---|" * 12]
  for row, stats in summary.items():
    dis, head, rec, has_hi = daegcn_configs.ABLATIONS[row]
    n = stats.get("auc", {}).get("n", 0)
    lines.append(
        f"| {LABELS[row]} | {'yes' if dis else 'no'} | "
        f"{ {'none': '-', 'multitask': 'multi-task', 'gcn': 'L_gcn'}[head] } | "
        f"{'yes' if rec else 'no'} | {'yes' if has_hi else 'no'} | "
        + " | ".join(_cell(stats.get(k), n) for k in METRICS)
        + f" | {n}/{splits} |"
    )
  return "\n".join(lines) + "\n"


def render_per_split(per_run: dict[str, list[dict[str, Any]]],
                     splits: int) -> str:
  """Test AUC (and the probes) of every row on every split."""
  lines = ["| row | " + " | ".join(f"split {k}" for k in range(splits))
           + " |", "|" + "---|" * (splits + 1)]
  for row, runs in per_run.items():
    by_split = {r["split"]: r for r in runs}
    cells = []
    for k in range(splits):
      r = by_split.get(k)
      if r is None or r.get("auc") is None:
        cells.append("-")
        continue
      text = f"{r['auc']:.3f}"
      if r.get("probe_disease") is not None:
        text += f" ({r['probe_disease']:.3f} / "
        hi = r.get("probe_irrelevant")
        text += ("-" if hi is None else f"{hi:.3f}") + ")"
      cells.append(text)
    lines.append(f"| {LABELS[row]} | " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def run_protocol(workdir: str, rows: Sequence[str], splits: int, *,
                 num_epochs: int = 0, overrides: Sequence[str] = (),
                 report_only: bool = False,
                 examples_and_info=None) -> dict[str, Any]:
  """Trains (or reads) every split x row, split-major; writes the table."""
  from mammojax.training import loop  # pylint: disable=g-import-not-at-top

  per_run: dict[str, list[dict[str, Any]]] = {row: [] for row in rows}
  for k in range(splits):
    for row in rows:
      config = row_config(row, k, num_epochs=num_epochs, overrides=overrides)
      run_dir = os.path.join(workdir, row, f"split{k}")
      path = os.path.join(run_dir, "results.json")
      timing_path = os.path.join(run_dir, "ablation_run.json")
      if not is_complete(path):
        if report_only:
          continue
        wall, cpu = time.time(), time.process_time()
        loop.train_and_evaluate(config, run_dir,
                                examples_and_info=examples_and_info)
        timing = {"wall_seconds": time.time() - wall,
                  "cpu_seconds": time.process_time() - cpu,
                  "load_average": list(os.getloadavg()), "invocations": 1}
        if os.path.exists(timing_path):
          # A resumed run: its seconds add to those of the stopped part.
          with open(timing_path) as f:
            before = json.load(f)
          for key in ("wall_seconds", "cpu_seconds", "invocations"):
            timing[key] += before.get(key, 0)
        with open(timing_path, "w") as f:
          json.dump(timing, f, indent=2)
        logging.info("%s split %d: %.0f s wall, %.0f s CPU", row, k,
                     timing["wall_seconds"], timing["cpu_seconds"])
        if not is_complete(path):
          raise RuntimeError(
              f"{row} split {k}: {path} has no 'daegcn' analysis after the "
              "run (the end-of-run report failed: see its log)")
      with open(path) as f:
        metrics = {"split": k, **run_metrics(json.load(f))}
      if os.path.exists(timing_path):
        with open(timing_path) as f:
          metrics.update(json.load(f))
      per_run[row].append(metrics)
  summary = summarize(
      {row: [{key: r.get(key) for key in (*METRICS, "val_auc", "best_epoch",
                                          "wall_seconds", "cpu_seconds")}
             for r in runs] for row, runs in per_run.items()})
  table = render_table(summary, splits)
  out = {"rows": list(rows), "splits": splits, "num_epochs": num_epochs,
         "overrides": list(overrides), "summary": summary,
         "per_run": per_run}
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, "ablation.json"), "w") as f:
    json.dump(out, f, indent=2)
  with open(os.path.join(workdir, "ablation.md"), "w") as f:
    f.write("# DAE-GCN ablations (Table 2) and comparators\n\n")
    f.write(f"Test split of {splits} repeated patient-wise 8:1:1 splits; "
            "mean ± sample std over splits.\n\n")
    if overrides or num_epochs:
      f.write(f"Overrides: {list(overrides)}; epochs: "
              f"{num_epochs or 'config default'}.\n\n")
    f.write(table)
    f.write("\nPer split: test AUC (probe AUC h_ma+h_mi / h_i).\n\n")
    f.write(render_per_split(per_run, splits))
  return out


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  bad = [r for r in FLAGS.rows if r not in ROWS]
  if bad:
    raise app.UsageError(f"--rows: unknown {bad}; expected some of {ROWS}")
  out = run_protocol(FLAGS.workdir, FLAGS.rows, FLAGS.splits,
                     num_epochs=FLAGS.num_epochs, overrides=FLAGS.set,
                     report_only=FLAGS.report_only)
  print(render_table(out["summary"], FLAGS.splits))


if __name__ == "__main__":
  define_flags()
  app.run(main)

"""DiagNet's Fig. 3: accuracy and AUC over (n+, n-) and over lambda.

Runs, with ``mammojax.experiments.diagnet.run_config`` (patient-wise 80/20
splits repeated ``--repeats`` times, split seeds 0..R-1, the same for every
cell):

* ``baseline``: no adversarial augmentation, no regulariser (lambda = 0);
* (a) every ``(n+, n-)`` in {0, 1, 2} x {0, 2, 4} at lambda = 1 (with the
  augmentation; n+ = n- = 0 is the paper's "no graph regularisation");
* (b) lambda in {0, 0.5, 1, 2} at the best (n+, n-) of (a) (by mean test
  AUC, then accuracy; n+ = n- = 0, where J_g has no pairs, excluded).

The adversarial neighbours of a split are generated once and shared by the
cells (``diagnet.augment.cache_dir`` = ``WORKDIR/augment_cache``). Each cell
trains in ``WORKDIR/{cell}/repeat_{r}`` and is resumable (a
finished repeat is not retrained; ``--report_only`` trains nothing). Writes
``fig3.json``, ``fig3.md`` (the table: cell, n+, n-, lambda, accuracy and
AUC mean +/- std) and ``fig3.png`` (panel a: accuracy and AUC per (n+, n-);
panel b: over lambda) into WORKDIR.

  python scripts/diagnet_fig3.py --workdir runs/diagnet_fig3 --repeats 3
  python scripts/diagnet_fig3.py --workdir runs/fig3_small --repeats 1 \\
      --set num_epochs=4 --set diagnet.augment.num_candidates=40
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

N_POS = (0, 1, 2)
N_NEG = (0, 2, 4)
LAMBDAS = (0.0, 0.5, 1.0, 2.0)


def cell_name(n_pos, n_neg, weight, augment=True):
  if not augment:
    return "baseline"
  return f"npos{n_pos}_nneg{n_neg}_lambda{weight:g}"


def parse_value(text):
  """``key=value`` override values: JSON (numbers, lists, booleans) or str."""
  try:
    value = json.loads(text)
  except json.JSONDecodeError:
    return text
  return tuple(value) if isinstance(value, list) else value


def cell_config(base, n_pos, n_neg, weight, augment=True):
  import ml_collections  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  c = ml_collections.ConfigDict(base.to_dict())
  c.diagnet.graph.n_pos = int(n_pos)
  c.diagnet.graph.n_neg = int(n_neg)
  c.diagnet.graph.weight = float(weight)
  c.diagnet.augment.enabled = bool(augment)
  return c


def best_cell(rows):
  """The (n+, n-) of panel (a) with the best mean AUC (then accuracy).

  Only cells with a signed graph count: at n+ = n- = 0 J_g has no pairs,
  so a sweep over its weight lambda would train one model four times.
  """
  grid = [r for r in rows if r["panel"] == "a" and r["auc"]["mean"]
          is not None and r["n_pos"] + r["n_neg"] > 0]
  if not grid:
    return 1, 4
  top = max(grid, key=lambda r: (r["auc"]["mean"],
                                 r["accuracy"]["mean"] or 0.0))
  return top["n_pos"], top["n_neg"]


def fmt(cell):
  if cell["mean"] is None:
    return "n/a"
  std = "n/a" if cell["std"] is None else f"{cell['std']:.3f}"
  return f"{cell['mean']:.3f} ± {std}"


def markdown(rows, repeats):
  lines = [
      f"Test accuracy and AUC, mean ± std over {repeats} patient-wise "
      "80/20 split(s).",
      "",
      "| panel | cell | n+ | n- | lambda | augmentation | accuracy | AUC |",
      "|---|---|---|---|---|---|---|---|",
  ]
  for r in rows:
    lines.append(
        f"| {r['panel']} | {r['cell']} | {r['n_pos']} | {r['n_neg']} | "
        f"{r['lambda']:g} | {'yes' if r['augment'] else 'no'} | "
        f"{fmt(r['accuracy'])} | {fmt(r['auc'])} |"
    )
  return "\n".join(lines) + "\n"


def plot(rows, path):
  """Panel (a): grouped bars per (n+, n-); panel (b): lines over lambda."""
  from matplotlib import figure as mfigure  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  fig = mfigure.Figure(figsize=(11, 4), dpi=100)
  ax_a, ax_b = fig.subplots(1, 2)
  grid = [r for r in rows if r["panel"] == "a"]
  x = np.arange(len(grid))
  for k, (key, color) in enumerate((("accuracy", "tab:blue"),
                                    ("auc", "tab:red"))):
    means = [r[key]["mean"] or 0.0 for r in grid]
    stds = [r[key]["std"] or 0.0 for r in grid]
    ax_a.bar(x + (k - 0.5) * 0.38, means, 0.38, yerr=stds, color=color,
             label=key, capsize=2)
  base = [r for r in rows if r["panel"] == "baseline"]
  if base and base[0]["auc"]["mean"] is not None:
    ax_a.axhline(base[0]["auc"]["mean"], color="tab:red", ls=":", lw=1,
                 label="baseline AUC")
    ax_a.axhline(base[0]["accuracy"]["mean"] or 0, color="tab:blue", ls=":",
                 lw=1, label="baseline accuracy")
  ax_a.set_xticks(x, [f"({r['n_pos']},{r['n_neg']})" for r in grid],
                  fontsize=8)
  ax_a.set(xlabel="(n+, n-), lambda = 1", ylim=(0, 1.05),
           title="(a) signed-graph neighbours")
  ax_a.legend(fontsize="small", loc="lower right")
  lam = sorted((r for r in rows if r["panel"] == "b"),
               key=lambda r: r["lambda"])
  for key, color in (("accuracy", "tab:blue"), ("auc", "tab:red")):
    ls = [r["lambda"] for r in lam]
    means = np.asarray([r[key]["mean"] or np.nan for r in lam])
    stds = np.asarray([r[key]["std"] or 0.0 for r in lam])
    ax_b.errorbar(ls, means, yerr=stds, marker="o", color=color, label=key,
                  capsize=2)
  title = "(b) regulariser weight"
  if lam:
    title += f" at (n+, n-) = ({lam[0]['n_pos']}, {lam[0]['n_neg']})"
  ax_b.set(xlabel="lambda", ylim=(0, 1.05), title=title)
  ax_b.legend(fontsize="small", loc="lower right")
  fig.tight_layout()
  fig.savefig(path, format="png")
  return path


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--config", default="configs/diagnet.py")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--set", action="append", default=[],
                      metavar="KEY=VALUE", help="config override")
  parser.add_argument("--report_only", action="store_true")
  args = parser.parse_args(argv)
  from absl import logging  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top,unused-import
  from mammojax import runtime  # pylint: disable=g-import-not-at-top
  from mammojax.experiments import diagnet as protocol  # pylint: disable=g-import-not-at-top
  from mammojax.reporting import diagnet as report_lib  # pylint: disable=g-import-not-at-top
  import importlib.util  # pylint: disable=g-import-not-at-top

  runtime.configure_jax()
  logging.set_verbosity(logging.WARNING)
  path, _, variant = args.config.partition(":")
  spec = importlib.util.spec_from_file_location("diagnet_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  base = module.get_config(variant or "default")
  for item in args.set:
    key, _, value = item.partition("=")
    node = base
    *parents, leaf = key.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = parse_value(value)
  os.makedirs(args.workdir, exist_ok=True)
  if not base.diagnet.augment.cache_dir:
    # The cells share splits and augmentation settings: generate once.
    base.diagnet.augment.cache_dir = os.path.join(args.workdir,
                                                  "augment_cache")
  start = time.time()

  def run(panel, n_pos, n_neg, weight, augment=True):
    name = cell_name(n_pos, n_neg, weight, augment)
    cdir = os.path.join(args.workdir, name)
    c = cell_config(base, n_pos, n_neg, weight, augment)
    if args.report_only:
      runs = []
      for r in range(args.repeats):
        p = os.path.join(cdir, f"repeat_{r}", "results.json")
        if os.path.exists(p):
          with open(p) as f:
            runs.append(json.load(f))
      summary = protocol.summarise(c, runs, len(runs))
    else:
      summary = protocol.run_config(c, cdir, args.repeats)
    row = {"panel": panel, "cell": name, "n_pos": n_pos, "n_neg": n_neg,
           "lambda": weight, "augment": augment,
           "accuracy": summary["test"]["accuracy"],
           "auc": summary["test"]["auc"],
           "repeats": summary["num_repeats"]}
    print(markdown([row], args.repeats).splitlines()[-1], flush=True)
    return row

  rows = [run("baseline", 0, 0, 0.0, augment=False)]
  for n_pos in N_POS:
    for n_neg in N_NEG:
      rows.append(run("a", n_pos, n_neg, 1.0))
  best = best_cell(rows)
  for weight in LAMBDAS:
    rows.append(run("b", best[0], best[1], weight))
  out = {"rows": rows, "best": list(best), "repeats": args.repeats,
         "overrides": args.set, "config": args.config,
         "seconds": time.time() - start}
  with open(os.path.join(args.workdir, "fig3.json"), "w") as f:
    json.dump(out, f, indent=2)
  with open(os.path.join(args.workdir, "fig3.md"), "w") as f:
    f.write(markdown(rows, args.repeats))
  plot(rows, os.path.join(args.workdir, "fig3.png"))
  del report_lib
  print(markdown(rows, args.repeats))
  return out


if __name__ == "__main__":
  main()

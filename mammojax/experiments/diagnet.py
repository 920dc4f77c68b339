"""DiagNet's protocol: repeated patient-wise 80/20 splits, mean +/- std.

``run_protocol(config, workdir)`` (``config.protocol.name =
'diagnet_repeats'``, the main command of ``configs/diagnet.py``) trains
``config`` once per repeat ``r`` in ``protocol.num_repeats`` with
``dataset.split_seed = split_seed + r`` and ``seed = seed + r`` (a new
patient-wise train/test split, a new augmentation and initialisation), in
``workdir/repeat_{r}`` (resumable: a repeat whose ``results.json`` exists is
not retrained). It then writes ``workdir/results.json`` (test accuracy and
AUC as mean +/- sample std over the repeats, per-repeat values, the time of
each stage) and ``workdir/report.md`` with one test ROC curve per repeat
and the augmentation figure (Fig. 2) of repeat 0.

``run_config(config, workdir)`` is the same for any DiagNet config (the
Fig. 3 script runs one per grid cell).
"""

import json
import os
import shutil
import time
from typing import Any

from absl import logging
import ml_collections

from mammojax.reporting import diagnet as report_lib


def repeat_config(config: ml_collections.ConfigDict,
                  repeat: int) -> ml_collections.ConfigDict:
  """The single-run config of ``repeat`` (no protocol block)."""
  c = ml_collections.ConfigDict(config.to_dict())
  if "protocol" in c:
    del c["protocol"]
  c.dataset.split_seed = int(config.dataset.split_seed) + int(repeat)
  c.seed = int(config.seed) + int(repeat)
  return c


def run_config(config: ml_collections.ConfigDict, workdir: str,
               num_repeats: int) -> dict[str, Any]:
  """Trains ``num_repeats`` repeats of ``config``; returns the summary."""
  from mammojax.training import loop  # pylint: disable=g-import-not-at-top,import-outside-toplevel

  os.makedirs(workdir, exist_ok=True)
  start = time.time()
  runs = []
  for r in range(num_repeats):
    run_dir = os.path.join(workdir, f"repeat_{r}")
    path = os.path.join(run_dir, "results.json")
    if not os.path.exists(path):
      logging.info("diagnet repeat %d/%d -> %s", r + 1, num_repeats, run_dir)
      loop.train_and_evaluate(repeat_config(config, r), run_dir)
    with open(path) as f:
      runs.append(json.load(f))
  summary = summarise(config, runs, num_repeats)
  summary["protocol_seconds"] = time.time() - start
  return summary


def summarise(config, runs, num_repeats) -> dict[str, Any]:
  """Mean +/- std of the repeats' test accuracy and AUC, stage times."""
  acc, auc, stages = [], [], {}
  for res in runs:
    rep = res.get("test", {}).get("pathology", {})
    acc.append(rep.get("accuracy"))
    auc.append(rep.get("auc_ovo"))
    for k, v in res.get("diagnet", {}).get("stage_seconds", {}).items():
      stages[k] = stages.get(k, 0.0) + float(v or 0.0)
  first = runs[0].get("diagnet", {}) if runs else {}
  return {
      "dataset": f"{config.dataset.name}/{config.dataset.builder_config}",
      "num_repeats": num_repeats,
      "test_fraction": float(config.dataset.test_fraction),
      "split_seeds": [int(config.dataset.split_seed) + r
                      for r in range(num_repeats)],
      "test": {"accuracy": report_lib.mean_std(acc),
               "auc": report_lib.mean_std(auc)},
      "stage_seconds": stages,
      "discriminator_agreement": first.get("discriminator_agreement"),
      "test_masses": [res.get("splits", {}).get("test") for res in runs],
  }


def run_protocol(config: ml_collections.ConfigDict,
                 workdir: str) -> dict[str, Any]:
  """The main command's protocol; writes results.json and report.md."""
  n = int(config.protocol.num_repeats)
  if n < 1:
    raise ValueError(
        f"config.protocol.num_repeats={n}: expected at least 1"
    )
  summary = run_config(config, workdir, n)
  figures = {}
  curves = [report_lib.repeat_curve(os.path.join(workdir, f"repeat_{r}"))
            for r in range(n)]
  curves = [c for c in curves if c is not None]
  fig_dir = os.path.join(workdir, "figures")
  if curves:
    path = report_lib.plot_repeat_rocs(
        os.path.join(fig_dir, "roc_repeats.png"), curves,
        summary["test"]["auc"], "DiagNet, test set, one curve per repeat",
    )
    figures["Test ROC curves (malignant vs benign), one per repeat"] = (
        os.path.relpath(path, workdir))
  aug = os.path.join(workdir, "repeat_0", "figures", "augmentation.png")
  if os.path.exists(aug):
    os.makedirs(fig_dir, exist_ok=True)
    shutil.copy(aug, os.path.join(fig_dir, "augmentation.png"))
    figures["Adversarial augmentation (Fig. 2), repeat 0: originals, "
            "positive and negative neighbours"] = "figures/augmentation.png"
  summary["config"] = config.to_dict()
  with open(os.path.join(workdir, "results.json"), "w") as f:
    json.dump(summary, f, indent=2, default=float)
  with open(os.path.join(workdir, "report.md"), "w") as f:
    f.write(report_lib.render_repeats_report(summary, figures))
  logging.info("diagnet: test accuracy %s, AUC %s", summary["test"]["accuracy"],
               summary["test"]["auc"])
  return summary

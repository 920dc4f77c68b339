"""DAE-GCN's end-of-run analysis: attributes, the SVM probe, Fig. 3.

* Attribute accuracy (the paper's Table 3): per attribute, the fraction of
  the split's items with a known value whose arg-max within the attribute's
  values is right; ``overall`` pools every (item, attribute) pair with a
  known value (the paper's "overall prediction accuracy of multi
  attributes").
* The §3.3 probe (``svm_probe``): an RBF SVM (scikit-learn ``SVC``,
  standardised inputs) trained on the training split's codes of one part
  of ``h`` and scored by its decision values on the test split (AUC), for
  ``h_ma + h_mi`` (disease-related) and for ``h_i`` (disease-irrelevant).
  The paper reports 0.90 vs 0.57 on DDSM.
* Fig. 3: inputs and their reconstructions from ``h``, ``h_ma + h_mi``,
  ``h_i``, ``h_ma`` and ``h_mi`` (the other parts zeroed) as one PNG grid.
"""

import os
from typing import Any, Mapping, Optional, Sequence

import matplotlib

matplotlib.use("Agg")
from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

from mammojax.reporting import classification  # pylint: disable=g-import-not-at-top,wrong-import-position
from mammojax.reporting import report as report_lib  # pylint: disable=g-import-not-at-top,wrong-import-position

TASK = "malignant"
# Column label -> the factors of h the decoder keeps (Fig. 3's columns).
RECONSTRUCTIONS = (
    ("h", ("ma", "mi", "i")),
    ("h_ma + h_mi", ("ma", "mi")),
    ("h_i", ("i",)),
    ("h_ma", ("ma",)),
    ("h_mi", ("mi",)),
)
PROBES = (("h_ma + h_mi", ("ma", "mi")), ("h_i", ("i",)))


def attribute_accuracy(
    probs: np.ndarray, labels: np.ndarray, mask: np.ndarray,
    groups: Sequence[str], group_sizes: Sequence[int],
) -> dict[str, Any]:
  """Per-attribute and overall accuracy of group-wise arg-max predictions.

  Args:
    probs: ``[N, C]`` group-wise probabilities (groups contiguous).
    labels: int ``[N, G]`` value index per attribute, -1 missing.
    mask: bool ``[N]``, the real items.
    groups: attribute names.
    group_sizes: values per attribute.

  Returns:
    ``{attribute: {'accuracy', 'n'}, 'overall': {'accuracy', 'n'}}``
    (accuracy None where no item has a known value).
  """
  out, right, total, start = {}, 0, 0, 0
  for g, (name, size) in enumerate(zip(groups, group_sizes)):
    y = labels[:, g]
    known = mask & (y >= 0)
    pred = np.argmax(probs[:, start : start + size], axis=-1)
    hits = int(np.sum(pred[known] == y[known]))
    n = int(known.sum())
    out[name] = {"accuracy": hits / n if n else None, "n": n}
    right += hits
    total += n
    start += size
  out["overall"] = {"accuracy": right / total if total else None, "n": total}
  return out


def svm_probe(
    train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
    test_y: np.ndarray, *, seed: int = 0,
) -> Optional[float]:
  """Test AUC of an RBF SVM trained on ``(train_x, train_y)``.

  None when either split lacks one of the two classes.
  """
  from sklearn import metrics  # pylint: disable=g-import-not-at-top
  from sklearn import pipeline  # pylint: disable=g-import-not-at-top
  from sklearn import preprocessing  # pylint: disable=g-import-not-at-top
  from sklearn import svm  # pylint: disable=g-import-not-at-top

  train_y = np.asarray(train_y)
  test_y = np.asarray(test_y)
  if len(set(train_y.tolist())) < 2 or len(set(test_y.tolist())) < 2:
    return None
  if train_x.shape[1] == 0:
    return None
  clf = pipeline.make_pipeline(
      preprocessing.StandardScaler(),
      svm.SVC(kernel="rbf", C=1.0, gamma="scale", random_state=seed),
  )
  clf.fit(train_x, train_y)
  return float(metrics.roc_auc_score(test_y, clf.decision_function(test_x)))


def analyse(
    results: Mapping[str, Any],
    raw_outputs: Mapping[str, Mapping[str, np.ndarray]],
    *,
    nodes: Any,
    codes: Mapping[str, np.ndarray],
    labels: Mapping[str, np.ndarray],
    parts: Optional[Mapping[str, slice]],
    test_split: str,
    seed: int = 0,
) -> dict[str, Any]:
  """The ``daegcn`` section of ``results.json``.

  Args:
    results: the loop's results (for the test AUC).
    raw_outputs: split -> the task's eval outputs.
    nodes: the ``objectives.attribute_graph.AttributeNodes``.
    codes: ``{'train', 'test'}`` -> ``h [N, dim_h]``.
    labels: ``{'train', 'test'}`` -> pathology ``[N]``.
    parts: factor -> columns of ``h`` (None: not disentangled, no probe).
    test_split: the split ``codes['test']`` came from.
    seed: the SVM's seed.
  """
  out: dict[str, Any] = {
      "test_split": test_split,
      "auc": results.get(test_split, {}).get(TASK, {}).get("auc_ovr"),
  }
  attrs = {}
  for split, raw in raw_outputs.items():
    if "attribute_probs" in raw:
      attrs[split] = attribute_accuracy(
          raw["attribute_probs"], raw["attribute_labels"],
          raw[f"{TASK}_mask"], nodes.groups, nodes.group_sizes,
      )
  out["attribute_accuracy"] = attrs
  probe = {}
  if parts is not None:
    for label, keep in PROBES:
      cols = np.concatenate([
          np.arange(codes["train"].shape[1])[parts[k]] for k in keep
      ])
      probe[label] = svm_probe(
          codes["train"][:, cols], labels["train"],
          codes["test"][:, cols], labels["test"], seed=seed,
      )
  out["probe_auc"] = probe
  return out


def plot_reconstructions(
    inputs: np.ndarray, reconstructions: Mapping[str, np.ndarray], path: str,
    *, title: str = "",
) -> str:
  """Rows = items; columns = input and each reconstruction (Fig. 3)."""
  cols = ["input", *reconstructions]
  n = len(inputs)
  fig, axes = plt.subplots(
      n, len(cols), figsize=(1.6 * len(cols), 1.6 * n + 0.4), squeeze=False
  )
  for r in range(n):
    for c, name in enumerate(cols):
      img = inputs[r] if name == "input" else reconstructions[name][r]
      ax = axes[r, c]
      ax.imshow(np.clip(img, 0, 1), cmap="gray", vmin=0, vmax=1)
      ax.set_xticks([])
      ax.set_yticks([])
      if r == 0:
        ax.set_title(name, fontsize=8)
  if title:
    fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path


def write_run_report(
    workdir: str, config: Any, data: Any, results: dict[str, Any],
    raw_outputs: Mapping[str, Any], *, inputs: np.ndarray,
    reconstructions: Mapping[str, np.ndarray], test_split: str,
) -> str:
  """ROC / confusion figures, the reconstruction grid and ``report.md``."""
  figures = classification.write_task_figures(
      workdir, raw_outputs.get(test_split, {}),
      results.get(test_split, {}).get(TASK, {}), task=TASK,
      class_names=["benign", "malignant"], title="benign vs malignant",
      split=test_split,
  )
  if reconstructions:
    path = os.path.join(workdir, "figures", "reconstructions.png")
    plot_reconstructions(
        inputs, reconstructions, path,
        title=f"DAE-GCN reconstructions ({test_split} items)",
    )
    figures["Reconstructions from parts of h (Fig. 3)"] = os.path.relpath(
        path, workdir
    )
  extra = results.get("daegcn", {})
  attributes = {}
  for split, rep in extra.get("attribute_accuracy", {}).items():
    for name, value in rep.items():
      attributes[f"{split} {name}"] = (
          f"{report_lib.format_value(value['accuracy'])} (n={value['n']})"
      )
  m = config.model
  report = {
      "title": "DAE-GCN run report",
      "run": {
          "workdir": os.path.abspath(workdir),
          "dataset": f"{config.dataset.name}/{config.dataset.builder_config}",
          "encoder": m.backbone,
          "input": f"mass crop, {m.image_size} x {m.image_size}",
          "h": f"h_ma {m.dim_ma}, h_mi {m.dim_mi}, h_i {m.dim_i}",
          "disentangle": m.disentangle,
          "attribute head": m.attribute_head,
          "reconstruction (L_rec)": m.reconstruct,
          "attribute nodes": ", ".join(data.nodes.names),
          **classification.run_facts(results, "ROIs"),
          "skipped examples": extra.get("skipped"),
      },
      "tasks": {
          f"benign vs malignant, {name}": results[name][TASK]
          for name in ("test", "val") if TASK in results.get(name, {})
      },
      "losses": classification.loss_table(results),
      "attribute accuracy (Table 3)": attributes or "no attribute head",
      "SVM probe AUC, test (Sec. 3.3)": extra.get("probe_auc") or (
          "not disentangled"
      ),
      "build report": results.get("build_report", {}),
  }
  path = os.path.join(workdir, "report.md")
  report_lib.write_markdown_report(path, report, figures)
  return path

"""Markdown run report: metrics tables, figure links and run info.

`results` layout (everything JSON-like)::

  {
    "title": "MT-GCN, fold 0",                 # optional
    "run": {"config": "configs/mtgcn.py", "steps": 1000, ...},
    "tasks": {                                 # one entry per task head
      "node (morphology)": metrics.classification_report(...),
      "graph (distribution)": metrics.classification_report(...),
    },
    "losses": {"test": {"loss": 1.2, "loss_node": 0.7, ...}},  # optional
    "notes": ["..."],                          # optional
    "<other>": {...},                          # optional extra sections,
  }                                            # rendered as key/value tables

Numbers are printed with 4 decimals; undefined values (None) as ``n/a``.
"""

import json
import os
import pathlib
from typing import Any, Mapping

PathLike = str | os.PathLike[str]

_SUMMARY_COLUMNS = (
    ("auc_ovo", "AUC ovo (Hand & Till)"),
    ("auc_ovr", "AUC ovr (macro)"),
    ("accuracy", "accuracy"),
    ("macro_f1", "macro F1"),
    ("macro_specificity", "macro specificity"),
)
_RESERVED = ("title", "run", "tasks", "losses", "notes")


def format_value(value: Any) -> str:
  """Table cell text: floats with 4 decimals, None as ``n/a``."""
  if value is None:
    return "n/a"
  if isinstance(value, bool):
    return str(value)
  if isinstance(value, float):
    return f"{value:.4f}"
  if isinstance(value, int):
    return str(value)
  if isinstance(value, (list, tuple, dict)):
    text = json.dumps(value, default=str)
  else:
    text = str(value)
  return text.replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
  """Markdown table lines."""
  lines = ["| " + " | ".join(header) + " |"]
  lines.append("|" + "|".join("---" for _ in header) + "|")
  lines += ["| " + " | ".join(format_value(c) for c in r) + " |" for r in rows]
  return lines


def _key_values(section: Mapping[str, Any]) -> list[str]:
  """Two-column key/value table."""
  return _table(["key", "value"], [[str(k), v] for k, v in section.items()])


def _task_section(name: str, rep: Mapping[str, Any]) -> list[str]:
  """Per-class table and confusion matrix of one task."""
  names = rep["class_names"]
  lines = [f"### {name}", ""]
  lines.append(
      f"{rep.get('num_samples', 'n/a')} samples"
      + (
          f" ({rep['num_excluded']} excluded: padding / unknown label)"
          if rep.get("num_excluded")
          else ""
      )
      + "."
  )
  lines.append("")
  rows = []
  reasons = rep.get("per_class_auc_reason", {})
  for c in names:
    auc = rep["per_class_auc"].get(c)
    auc_text = (
        format_value(auc) if auc is not None
        else f"n/a ({reasons.get(c, 'undefined')})"
    )
    rows.append([
        c,
        rep.get("support", {}).get(c),
        auc_text,
        rep.get("per_class_f1", {}).get(c),
        rep.get("per_class_specificity", {}).get(c),
    ])
  lines += _table(["class", "support", "AUC (ovr)", "F1", "specificity"], rows)
  if "confusion_matrix" in rep:
    lines += ["", "Confusion matrix (rows: true, columns: predicted):", ""]
    lines += _table(
        ["true \\ pred", *names],
        [[n, *row] for n, row in zip(names, rep["confusion_matrix"])],
    )
  for note in rep.get("notes", []):
    lines += ["", f"*Note:* {note}"]
  lines.append("")
  return lines


def render_markdown(
    results: Mapping[str, Any], figures: Mapping[str, str]
) -> str:
  """The report text (see module docstring for `results`)."""
  lines = [f"# {results.get('title', 'mammojax run report')}", ""]
  tasks = results.get("tasks", {})
  if tasks:
    lines += ["## Metrics", ""]
    lines += _table(
        ["task", "n", *[title for _, title in _SUMMARY_COLUMNS]],
        [
            [name, rep.get("num_samples"), *[rep.get(k) for k, _ in
                                             _SUMMARY_COLUMNS]]
            for name, rep in tasks.items()
        ],
    )
    lines += [
        "",
        "AUC ovo is Hand & Till's M over pairs of classes present in the "
        "split; AUC ovr is the macro mean of the per-class one-vs-rest AUCs "
        "of present classes.",
        "",
    ]
    for name, rep in tasks.items():
      lines += _task_section(name, rep)
  losses = results.get("losses", {})
  if losses:
    terms = sorted({k for v in losses.values() for k in v},
                   key=lambda k: (k != "loss", k))
    lines += ["## Losses", ""]
    lines += _table(
        ["split", *terms],
        [[split, *[v.get(k) for k in terms]] for split, v in losses.items()],
    )
    lines += [
        "",
        "Each term is its mean over the split's items (task heads: "
        "cross-entropy; other terms as the method defines them); ``loss`` "
        "is their weighted sum.",
        "",
    ]
  if figures:
    lines += ["## Figures", ""]
    for caption, rel in figures.items():
      rel = pathlib.PurePath(rel).as_posix()
      lines += [f"**{caption}**", "", f"![{caption}]({rel})", ""]
  for key, section in results.items():
    if key in _RESERVED:
      continue
    lines += [f"## {key}", ""]
    if isinstance(section, Mapping):
      lines += _key_values(section)
    else:
      lines.append(format_value(section))
    lines.append("")
  if results.get("run"):
    lines += ["## Run", ""] + _key_values(results["run"]) + [""]
  if results.get("notes"):
    lines += ["## Notes", ""] + [f"- {n}" for n in results["notes"]] + [""]
  return "\n".join(lines).rstrip() + "\n"


def write_markdown_report(
    path: PathLike,
    results: Mapping[str, Any],
    figures: Mapping[str, str],
) -> pathlib.Path:
  """Writes the Markdown report.

  Args:
    path: output ``.md`` file (folders are created).
    results: see the module docstring; ``tasks`` values are
      `mammojax.training.metrics.classification_report` dicts.
    figures: caption → image path relative to the report's folder.

  Returns:
    The report path.
  """
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(render_markdown(results, figures), encoding="utf-8")
  return path

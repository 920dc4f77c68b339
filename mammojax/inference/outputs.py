"""Writers of a predict run: findings.json per image, predictions.csv, the
skipped-input log, and the output file names.

findings.json (one per image; ``findings_dict``):

* ``source``, ``sop_instance_uid``, ``study_instance_uid``,
  ``series_instance_uid``, ``patient_id``, ``laterality``, ``view``,
  ``pixel_spacing_mm`` (row, column), ``rows`` / ``columns`` (stored grid);
* ``status`` (``inference.results.STATUSES``) and ``reason``;
* ``ingestion``: flip, crop box, scale, VOI and polarity applied on reading;
* ``calcifications``: ``id``, ``center_rc`` (row, column) and ``center_xy``
  in the stored DICOM pixel grid (the inverse of the flip / crop / resize
  of ingestion), ``center_mm`` (row, column times the pixel spacing),
  ``bbox_xy`` (inclusive, stored grid), ``area_px`` / ``area_mm2``,
  ``cluster_id``, ``morphology`` (BI-RADS class of the run's vocabulary ->
  probability) and ``predicted_morphology``;
* ``clusters``: ``cluster_id``, ``calcification_ids``, ``bbox_xy`` (of its
  members' boxes), ``distribution`` probabilities and
  ``predicted_distribution``;
* ``image_probabilities`` (image methods: task -> class -> probability);
* ``model``: workdir, method, dataset, config hash, checkpoint step and
  path, mammojax version; ``outputs``: the files written for the image.
"""

import csv
import json
import os
import re
from typing import Any, Optional, Sequence

import numpy as np

from mammojax.inference import results as results_lib

CSV_COLUMNS = (
    "source", "status", "reason", "sop_instance_uid", "patient_id",
    "laterality", "view", "num_calcifications", "num_clusters",
    "predicted_distributions", "top_probability", "findings_json",
    "overlay_png", "structured_report",
)


def output_stem(source: str, meta: Any, used: set[str]) -> str:
  """A unique, file-system safe name for one input's outputs."""
  base = os.path.splitext(os.path.basename(str(source)))[0] or "image"
  if meta is not None and getattr(meta, "sop_uid", None):
    base = f"{base}_{str(meta.sop_uid)[-8:]}"
  base = re.sub(r"[^A-Za-z0-9._-]+", "_", base)
  stem, k = base, 1
  while stem in used:
    k += 1
    stem = f"{base}_{k}"
  used.add(stem)
  return stem


def _spacing(meta: Any) -> Optional[list[float]]:
  if meta is None or meta.pixel_spacing_mm is None:
    return None
  return [float(v) for v in meta.pixel_spacing_mm]


def findings_dict(pred: results_lib.ImagePrediction, model_facts: dict,
                  outputs: Optional[dict] = None) -> dict[str, Any]:
  """The findings.json content of one prediction (module docstring)."""
  meta = pred.meta
  spacing = _spacing(meta)
  calcs = []
  for c in pred.calcifications:
    x, y = c["center_xy"]
    entry = {
        "id": c["id"], "center_rc": [y, x], "center_xy": [x, y],
        "center_mm": ([y * spacing[0], x * spacing[1]] if spacing else None),
        "bbox_xy": c["bbox_xy"], "area_px": c["area_px"],
        "area_mm2": (c["area_px"] * spacing[0] * spacing[1]
                     if spacing else None),
        "cluster_id": c["cluster_id"],
        "morphology": c.get("morphology"),
        "predicted_morphology": c.get("predicted_morphology"),
    }
    calcs.append(entry)
  clusters = []
  for cl in pred.clusters:
    boxes = np.asarray(
        [pred.calcifications[i]["bbox_xy"] for i in cl["calcification_ids"]],
        np.float64).reshape(-1, 4)
    clusters.append({
        "cluster_id": cl["cluster_id"],
        "calcification_ids": list(cl["calcification_ids"]),
        "bbox_xy": ([float(boxes[:, 0].min()), float(boxes[:, 1].min()),
                     float(boxes[:, 2].max()), float(boxes[:, 3].max())]
                    if len(boxes) else None),
        "distribution": cl.get("distribution"),
        "predicted_distribution": cl.get("predicted_distribution"),
    })
  return {
      "format": "mammojax-findings",
      "format_version": 1,
      "source": os.path.abspath(pred.source),
      "status": pred.status,
      "reason": pred.reason,
      "kind": pred.kind,
      "sop_instance_uid": getattr(meta, "sop_uid", None),
      "study_instance_uid": getattr(meta, "study_uid", None),
      "series_instance_uid": getattr(meta, "series_uid", None),
      "patient_id": getattr(meta, "patient_id", None),
      "laterality": getattr(meta, "laterality", None),
      "view": getattr(meta, "view", None),
      "rows": getattr(meta, "rows", None),
      "columns": getattr(meta, "columns", None),
      "pixel_spacing_mm": spacing,
      "pixel_spacing_missing": bool(getattr(meta, "pixel_spacing_missing",
                                            False)),
      "ingestion": pred.geometry,
      "calcification_source": pred.calcification_source,
      "counts": pred.counts,
      "calcifications": calcs,
      "clusters": clusters,
      "image_probabilities": pred.image_probabilities,
      "model": model_facts,
      "outputs": outputs or {},
  }


def write_json(path: str, data: Any) -> str:
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  with open(path, "w") as f:
    json.dump(data, f, indent=2)
    f.write("\n")
  return path


def csv_row(findings: dict[str, Any]) -> dict[str, Any]:
  """One predictions.csv row from a findings dict."""
  dists = [c["predicted_distribution"] for c in findings["clusters"]
           if c.get("predicted_distribution")]
  top = None
  if findings["clusters"] and findings["clusters"][0].get("distribution"):
    top = max(max(c["distribution"].values()) for c in findings["clusters"])
  elif findings["image_probabilities"]:
    top = max(max(v.values()) for v in
              findings["image_probabilities"].values())
  outputs = findings["outputs"]
  return {
      "source": findings["source"], "status": findings["status"],
      "reason": findings["reason"] or "",
      "sop_instance_uid": findings["sop_instance_uid"] or "",
      "patient_id": findings["patient_id"] or "",
      "laterality": findings["laterality"] or "",
      "view": findings["view"] or "",
      "num_calcifications": len(findings["calcifications"]),
      "num_clusters": len(findings["clusters"]),
      "predicted_distributions": ";".join(dists),
      "top_probability": "" if top is None else f"{top:.4f}",
      "findings_json": outputs.get("findings_json", ""),
      "overlay_png": outputs.get("overlay_png", ""),
      "structured_report": outputs.get("structured_report", ""),
  }


def write_csv(path: str, rows: Sequence[dict[str, Any]]) -> str:
  """predictions.csv: one row per input (``CSV_COLUMNS``)."""
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  with open(path, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    for row in rows:
      writer.writerow(row)
  return path


def write_skipped(path: str, entries: Sequence[tuple[str, str, str]]) -> str:
  """skipped.log: ``status<TAB>path<TAB>reason`` per skipped input."""
  with open(path, "w") as f:
    for status, source, reason in entries:
      f.write(f"{status}\t{source}\t{reason}\n")
  return path

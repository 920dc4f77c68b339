"""Calcifications of one image for prediction: detected or annotated, clustered.

Where they come from:

* ``--annotations FILE`` (the training format, docs/architecture.md): the
  image's entry (matched by SOP Instance UID, else by file path) gives the
  calcification centres in the stored grid and, if present, the clusters;
  entries without clusters form one cluster of all their calcifications,
  as in training (``graph_examples.examples_from_image``).
* Otherwise ``calcification_detector.detect_calcifications`` runs on the
  laterality-normalised full-resolution image inside the breast mask
  (eroded 1 mm), with the detector the run's dataset was built with: the
  ``detector_method`` / ``detector_threshold`` of the dataset's builder
  config (CBIS-DDSM), else the module's default multiscale detector (the
  synthetic, DICOM-folder and INbreast builders take annotated positions,
  so their runs never saw a detector; multiscale is the best measured one,
  scripts/measure_detector.py).

Clusters of detections: the paper's graphs are one per annotated cluster
and the paper gives no clustering rule, so detections are grouped by
single linkage, the reading of BI-RADS' "grouped" (calcifications within
about 1 cm of each other): two detections closer than
``link_mm`` (default 10 mm) are in one cluster; clusters with fewer than
``min_size`` (default 3) detections are dropped as isolated specks (their
count is reported as ``unclustered``).
"""

import dataclasses
import os
from typing import Any, Optional, Sequence

import numpy as np
from scipy import sparse
from scipy.sparse import csgraph
from scipy.spatial import cKDTree
import tqdm

from mammojax.data import annotations as annotations_lib
from mammojax.data import calcification_detector
from mammojax.data import calcifications as calcs_lib
from mammojax.inference import datasets
from mammojax.inference import ingest
from mammojax.inference import results as results_lib


@dataclasses.dataclass(frozen=True)
class DetectorOptions:
  """How calcifications are found in a predict run."""

  method: str = "multiscale"
  threshold: Optional[float] = None
  link_mm: float = 10.0
  min_size: int = 3
  patch_size: int = 14


def detector_options(config, **overrides) -> DetectorOptions:
  """The run's detector (its dataset's builder config) plus ``overrides``."""
  cfg = datasets.builder_config(config.dataset, "patch_size")
  kwargs = {}
  if cfg is not None:
    kwargs["patch_size"] = int(cfg.patch_size)
    if hasattr(cfg, "detector_method"):
      kwargs["method"] = cfg.detector_method
      kwargs["threshold"] = cfg.detector_threshold
  kwargs.update({k: v for k, v in overrides.items() if v is not None})
  return DetectorOptions(**kwargs)


def detect(
    image01: np.ndarray, roi_mask: np.ndarray, spacing_mm: float,
    options: DetectorOptions,
) -> calcs_lib.Calcifications:
  """Detections inside ``roi_mask`` (grid of ``image01``)."""
  return calcification_detector.detect_calcifications(
      image01, pixel_spacing_mm=spacing_mm, roi_mask=roi_mask,
      method=options.method, threshold=options.threshold,
  )


def cluster(
    centers_xy: np.ndarray, spacing_mm: float, options: DetectorOptions
) -> tuple[list[np.ndarray], int]:
  """Single-linkage clusters of ``centers_xy``.

  Returns:
    ``(clusters, unclustered)``: index arrays (sorted, clusters ordered by
    their first member) and the number of detections left out.
  """
  n = len(centers_xy)
  if n == 0:
    return [], 0
  tree = cKDTree(np.asarray(centers_xy, np.float64))
  pairs = tree.query_pairs(options.link_mm / spacing_mm, output_type="ndarray")
  adjacency = sparse.coo_matrix(
      (np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
  _, labels = csgraph.connected_components(adjacency, directed=False)
  groups = [np.flatnonzero(labels == k) for k in np.unique(labels)]
  kept = [g for g in groups if len(g) >= options.min_size]
  kept.sort(key=lambda g: int(g[0]))
  return kept, n - sum(len(g) for g in kept)


class AnnotationIndex:
  """The entries of an annotations file, by SOP Instance UID and file."""

  def __init__(self, path: str):
    self.path = str(path)
    data = annotations_lib.load_annotations(path)
    self.vocabularies = data["vocabularies"]
    self._by_file, self._by_uid = {}, {}
    root = os.path.dirname(os.path.abspath(path))
    for entry in data["images"]:
      self._by_file[os.path.abspath(os.path.join(root, entry["file"]))] = entry
      uid = (entry.get("labels") or {}).get("sop_instance_uid")
      if uid:
        self._by_uid[str(uid)] = entry

  def find(self, source: str, sop_uid: Optional[str]) -> Optional[dict]:
    """The entry of ``source`` (by UID, then path), or None."""
    if sop_uid and sop_uid in self._by_uid:
      return self._by_uid[sop_uid]
    return self._by_file.get(os.path.abspath(source))


def from_annotation(
    entry: dict[str, Any],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[np.ndarray]]:
  """Stored-grid centres, boxes, areas and clusters of one annotation entry.

  Returns:
    ``(centers_xy [n, 2], bboxes [n, 4], areas [n], clusters)``: stored
    pixel grid; boxes / areas from the contour where given, else a 1-pixel
    box (area from ``diameter_mm`` when given, else 1 px); clusters as index
    arrays into the calcifications.
  """
  calcs = entry.get("calcifications") or []
  spacing = entry.get("pixel_spacing_mm") or (0.1, 0.1)
  centers = np.asarray([c["center_xy"] for c in calcs],
                       np.float64).reshape(-1, 2)
  bboxes, areas = [], []
  for c, (x, y) in zip(calcs, centers):
    contour = c.get("contour_xy")
    if contour:
      pts = np.asarray(contour, np.float64)
      bboxes.append([pts[:, 0].min(), pts[:, 1].min(),
                     pts[:, 0].max(), pts[:, 1].max()])
      # Shoelace area of the polygon.
      px, py = pts[:, 0], pts[:, 1]
      areas.append(max(1.0, 0.5 * abs(
          np.dot(px, np.roll(py, 1)) - np.dot(py, np.roll(px, 1)))))
    else:
      bboxes.append([x, y, x, y])
      d = c.get("diameter_mm")
      areas.append(
          np.pi * (d / 2) ** 2 / (spacing[0] * spacing[1]) if d else 1.0)
  index = {c["id"]: i for i, c in enumerate(calcs)}
  clusters = [
      np.asarray([index[i] for i in cl["calcification_ids"] if i in index],
                 np.int64)
      for cl in entry.get("clusters") or []
  ]
  clusters = [c for c in clusters if len(c)]
  if not clusters and len(calcs):
    clusters = [np.arange(len(calcs))]
  return (centers, np.asarray(bboxes, np.float64).reshape(-1, 4),
          np.asarray(areas, np.float64), clusters)


def _stored_boxes(full, boxes_out: np.ndarray) -> np.ndarray:
  """Inclusive output-grid boxes ``[n, 4]`` mapped into the stored grid."""
  lo = full.to_stored_xy(boxes_out[:, :2])
  hi = full.to_stored_xy(boxes_out[:, 2:])
  return np.concatenate(
      [np.minimum(lo, hi), np.maximum(lo, hi)], axis=1).reshape(-1, 4)


@dataclasses.dataclass
class FoundCalcifications:
  """The calcifications of one image, ready for a model.

  Attributes:
    prediction: its ``ImagePrediction`` (``calcifications`` and
      ``clusters`` filled with geometry; probabilities still to come).
    mammogram: the ``load_dicom(orient=True, crop=False)`` image, the grid
      of training's patches and coordinates.
    centers_xy: ``[n, 2]`` centres in ``mammogram.image``'s grid.
    clusters: index arrays into the calcifications.
    patch_size: node patch size of the run's dataset.
  """

  prediction: results_lib.ImagePrediction
  mammogram: Any
  centers_xy: np.ndarray
  clusters: list[np.ndarray]
  patch_size: int


def _find(source, full, options, annotations):
  if annotations is not None:
    entry = annotations.find(source, full.meta.sop_uid)
    if entry is None:
      raise results_lib.PredictError(
          results_lib.NO_CALCIFICATION,
          f"{annotations.path} has no entry for this file")
    stored, boxes, areas, clusters = from_annotation(entry)
    centers = np.asarray(full.to_output_xy(stored), np.float64).reshape(-1, 2)
    counts = {"annotated": len(stored)}
    origin = "annotations"
  else:
    spacing = float(full.meta.pixel_spacing_mm[1])
    mask = ingest.breast_mask(full.image, spacing)
    found = detect(full.image, mask, spacing, options)
    centers = np.asarray(found.centers_xy, np.float64).reshape(-1, 2)
    stored = full.to_stored_xy(centers).reshape(-1, 2)
    boxes = _stored_boxes(full, np.asarray(found.bboxes, np.float64))
    areas = np.asarray(found.areas, np.float64)
    clusters, unclustered = cluster(centers, spacing, options)
    counts = {"detections": len(found), "unclustered": unclustered}
    origin = "detector"
  return centers, stored, boxes, areas, clusters, counts, origin


def read_and_find(
    sources: Sequence[str], config: Any, *, timer: results_lib.Timer,
    annotations: Optional[AnnotationIndex] = None,
    detector_overrides: Optional[dict[str, Any]] = None,
    progress: bool = True,
) -> tuple[list[results_lib.ImagePrediction], list[FoundCalcifications]]:
  """Reads every source as training does and finds its calcifications.

  Each file goes through ``load_dicom(orient=True, crop=False)`` (full
  resolution, laterality-normalised: the grid of training's patches), the
  breast check, then the annotations or the detector and clustering
  (module docstring). Failures become predictions with a status.

  Returns:
    ``(predictions, found)``: one prediction per source, in order, and the
    images with at least one cluster.
  """
  options = detector_options(config, **dict(detector_overrides or {}))
  predictions, found = [], []
  for source in tqdm.tqdm(sources, desc="images", disable=not progress):
    try:
      with timer.stage("ingestion"):
        full = ingest.load(source, orient=True, crop=False)
        ingest.check_breast(full.image, source)
    except results_lib.PredictError as e:
      predictions.append(results_lib.failed(str(source), e))
      continue
    pred = results_lib.ImagePrediction(
        source=str(source), meta=full.meta,
        image=ingest.stored_image(full), geometry=ingest.geometry(full))
    predictions.append(pred)
    try:
      with timer.stage("detection"):
        centers, stored, boxes, areas, clusters, counts, origin = _find(
            source, full, options, annotations)
    except results_lib.PredictError as e:
      pred.status, pred.reason = e.status, e.reason
      continue
    pred.calcification_source, pred.counts = origin, counts
    if not clusters:
      pred.status = results_lib.NO_CALCIFICATION
      pred.reason = f"no calcification cluster found ({origin}: {counts})"
      continue
    cluster_of = {int(i): k for k, members in enumerate(clusters)
                  for i in members}
    pred.calcifications = [
        {"id": i, "center_xy": [float(v) for v in stored[i]],
         "bbox_xy": [float(v) for v in boxes[i]],
         "area_px": float(areas[i]), "cluster_id": cluster_of.get(i)}
        for i in range(len(stored))
    ]
    pred.clusters = [
        {"cluster_id": k, "calcification_ids": [int(i) for i in members]}
        for k, members in enumerate(clusters)
    ]
    found.append(FoundCalcifications(
        pred, full, centers, clusters, options.patch_size))
  return predictions, found

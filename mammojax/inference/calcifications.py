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
from typing import Any, Optional

import numpy as np
from scipy import sparse
from scipy.sparse import csgraph
from scipy.spatial import cKDTree

from mammojax.data import annotations as annotations_lib
from mammojax.data import calcification_detector
from mammojax.data import calcifications as calcs_lib
from mammojax.inference import datasets


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

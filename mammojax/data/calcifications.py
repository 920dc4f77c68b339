"""Calcifications as graph nodes: from masks or point ROIs.

One calcification = one external contour of a binary calcification mask, as in
MT-GCN (Du et al., "Automatic Calcification Morphology and Distribution
Classification for Breast Mammograms With Multi-Task Graph Convolutional Neural
Network", IEEE JBHI 2023; arXiv:2105.06822). Its node centre is the
bounding-box centre in pixel `xy` (x = column, y = row, pixel centres at
integer positions), its node feature a `size x size` patch of the image centred
on it (zero-padded at the borders), and its node coordinates the centre
normalised by the image width / height.

Calcifications found in an image by the detector come from
`calcification_detector.detect_calcifications` (its filters are in
`calcification_filters`); `match_to_annotations` scores such detections
against annotated centres.

Everything here is numpy / scipy; no JAX.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

# 8-connectivity for foreground components (OpenCV `findContours` semantics).
EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


@dataclasses.dataclass(frozen=True)
class Calcifications:
  """A set of calcifications of one image.

  Attributes:
    centers_xy: float64 `[n, 2]` bounding-box centres, pixel `xy`.
    bboxes: float64 `[n, 4]` inclusive boxes `(x_min, y_min, x_max, y_max)`.
    areas: float64 `[n]` areas in pixels (pixel count for masks, polygon or
      disk area for point ROIs).
    label_image: int32 `[H, W]` with `k + 1` on the pixels of calcification
      `k` and 0 elsewhere, or None when built from points.
  """

  centers_xy: np.ndarray
  bboxes: np.ndarray
  areas: np.ndarray
  label_image: Optional[np.ndarray] = None

  def __len__(self) -> int:
    return int(self.centers_xy.shape[0])


def empty(label_image: Optional[np.ndarray] = None) -> Calcifications:
  """No calcifications (with `label_image`, all zero, if given)."""
  return Calcifications(
      centers_xy=np.zeros((0, 2)),
      bboxes=np.zeros((0, 4)),
      areas=np.zeros((0,)),
      label_image=label_image,
  )


def from_label_image(labels: np.ndarray, num: int) -> Calcifications:
  """Centres / boxes / areas of components `1..num` of a label image."""
  if num == 0:
    return empty(labels.astype(np.int32))
  slices = ndimage.find_objects(labels, max_label=num)
  bboxes = np.array(
      [(s[1].start, s[0].start, s[1].stop - 1, s[0].stop - 1) for s in slices],
      dtype=np.float64,
  )
  centers = np.stack(
      [(bboxes[:, 0] + bboxes[:, 2]) / 2, (bboxes[:, 1] + bboxes[:, 3]) / 2],
      axis=1,
  )
  areas = np.bincount(labels.ravel(), minlength=num + 1)[1:].astype(np.float64)
  return Calcifications(centers, bboxes, areas, labels.astype(np.int32))


def components_from_mask(mask: np.ndarray) -> Calcifications:
  """One calcification per external contour of a binary mask.

  Equivalent to OpenCV `findContours(RETR_EXTERNAL)` + filled drawing: holes
  are filled first (so anything nested inside a ring belongs to the ring),
  then 8-connected components are labelled in raster order of their first
  pixel.

  Args:
    mask: `[H, W]` array, non-zero = calcification.

  Returns:
    `Calcifications` with bounding-box centres, inclusive boxes, pixel areas
    (of the hole-filled component) and the label image.
  """
  mask = np.asarray(mask)
  if mask.ndim != 2:
    raise ValueError(f"mask must be 2-D [H, W], got shape {mask.shape}")
  filled = ndimage.binary_fill_holes(mask != 0)
  labels, num = ndimage.label(filled, structure=EIGHT_CONNECTED)
  return from_label_image(labels, num)


def from_points(
    points_xy: Sequence[np.ndarray], radius_px: float = 3.0
) -> Calcifications:
  """Calcifications from point-list ROIs (INbreast style).

  A 1-point ROI becomes a disk of `radius_px` around the point; a 2-point ROI
  the box spanned by its points (area floored at one pixel); a contour of
  >= 3 points its bounding box and polygon (shoelace) area.

  Args:
    points_xy: sequence of `[k, 2]` pixel `xy` point lists, one per ROI.
    radius_px: radius given to single-point ROIs.

  Returns:
    `Calcifications` without a label image.
  """
  if not len(points_xy):
    return empty()
  bboxes, areas = [], []
  for i, pts in enumerate(points_xy):
    pts = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
    if pts.shape[0] == 0:
      raise ValueError(f"ROI {i} has no points")
    if pts.shape[0] == 1:
      (x, y), r = pts[0], float(radius_px)
      bboxes.append((x - r, y - r, x + r, y + r))
      areas.append(np.pi * r * r)
      continue
    lo, hi = pts.min(0), pts.max(0)
    bboxes.append((lo[0], lo[1], hi[0], hi[1]))
    x, y = pts[:, 0], pts[:, 1]
    shoelace = 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))
    areas.append(max(shoelace, 1.0))
  bboxes = np.asarray(bboxes, dtype=np.float64)
  centers = np.stack(
      [(bboxes[:, 0] + bboxes[:, 2]) / 2, (bboxes[:, 1] + bboxes[:, 3]) / 2],
      axis=1,
  )
  return Calcifications(centers, bboxes, np.asarray(areas), None)


def patch_origins(centers_xy: np.ndarray, size: int) -> np.ndarray:
  """int64 `[n, 2]` top-left `(x, y)` of each `size` patch.

  The patch covers `round(c) - size // 2 ... round(c) + (size - 1) // 2`
  (rounding half up), so for even sizes the extra pixel is before the centre.
  """
  centers = np.asarray(centers_xy, dtype=np.float64).reshape(-1, 2)
  return np.floor(centers + 0.5).astype(np.int64) - size // 2


def extract_patches(
    image01: np.ndarray, centers_xy: np.ndarray, size: int = 14
) -> np.ndarray:
  """Cuts one `size x size` patch per centre, zero outside the image.

  Args:
    image01: `[H, W]` image.
    centers_xy: `[n, 2]` pixel `xy` centres.
    size: patch side in pixels (14 in MT-GCN).

  Returns:
    float32 `[n, size, size]`; patch `k` row `a`, column `b` is the image at
    `(y0 + a, x0 + b)` with `(x0, y0) = patch_origins(...)[k]`, or 0 where
    that falls outside the image. For a bounding-box centre this equals the
    authors' `img[cy - 7:cy + 7, cx - 7:cx + 7]` with `cx = x + w // 2`
    inside the image; at the borders they re-centre the clipped crop, here
    it stays in place and the outside is zero.
  """
  image = np.asarray(image01, dtype=np.float32)
  if image.ndim != 2:
    raise ValueError(f"image01 must be 2-D [H, W], got shape {image.shape}")
  origins = patch_origins(centers_xy, size)
  if origins.shape[0] == 0:
    return np.zeros((0, size, size), np.float32)
  height, width = image.shape
  # Centres far outside the image are clipped to a fully-padded window.
  origins = np.clip(origins, [-size, -size], [width, height])
  padded = np.pad(image, size)
  offsets = np.arange(size)
  rows = origins[:, 1, None] + size + offsets  # [n, size]
  cols = origins[:, 0, None] + size + offsets
  return padded[rows[:, :, None], cols[:, None, :]]


def normalise_coords(
    centers_xy: np.ndarray, image_shape: Sequence[int]
) -> np.ndarray:
  """float32 `[n, 2]` = `(x / width, y / height)`; `image_shape = (H, W)`."""
  height, width = int(image_shape[0]), int(image_shape[1])
  centers = np.asarray(centers_xy, dtype=np.float64).reshape(-1, 2)
  return (centers / np.array([width, height], np.float64)).astype(np.float32)


def node_labels_from_masks(
    centers_xy: np.ndarray,
    masks: Sequence[np.ndarray],
    labels: Sequence[int],
    *,
    size: int = 14,
) -> np.ndarray:
  """Label of the morphology mask that overlaps each node's patch.

  Args:
    centers_xy: `[n, 2]` node centres (pixel `xy`).
    masks: `K` bool `[H, W]` morphology masks (e.g. annotated boxes/polygons).
    labels: `K` morphology indices, one per mask.
    size: patch side; the overlap window is the node's patch.

  Returns:
    int32 `[n]`: the label of the mask with the most pixels inside the patch
    (ties -> the first mask), -1 where no mask touches the patch. (The
    authors' code takes the largest label index among all touching masks and
    0 = "not suspicious" where none touches; overlap is a label-order-free
    choice, and -1 keeps unlabelled nodes out of the loss.)
  """
  origins = patch_origins(centers_xy, size)
  n = origins.shape[0]
  if len(masks) != len(labels):
    raise ValueError(f"{len(masks)} masks but {len(labels)} labels")
  if n == 0 or not len(masks):
    return np.full((n,), -1, np.int32)
  counts = np.zeros((len(masks), n), np.int64)
  for k, mask in enumerate(masks):
    mask = np.asarray(mask, dtype=bool)
    height, width = mask.shape
    # Summed-area table with a zero first row / column.
    table = np.zeros((height + 1, width + 1), np.int64)
    table[1:, 1:] = mask.cumsum(0).cumsum(1)
    x0 = np.clip(origins[:, 0], 0, width)
    y0 = np.clip(origins[:, 1], 0, height)
    x1 = np.clip(origins[:, 0] + size, 0, width)
    y1 = np.clip(origins[:, 1] + size, 0, height)
    counts[k] = table[y1, x1] - table[y0, x1] - table[y1, x0] + table[y0, x0]
  best = counts.argmax(0)
  out = np.asarray(labels, np.int32)[best]
  return np.where(counts.max(0) > 0, out, -1).astype(np.int32)


@dataclasses.dataclass(frozen=True)
class Matching:
  """One-to-one matching of detections to annotations.

  Attributes:
    pairs: int64 `[m, 2]` (detection index, annotation index).
    true_positives / false_positives / false_negatives: counts.
  """

  pairs: np.ndarray
  true_positives: int
  false_positives: int
  false_negatives: int

  @property
  def precision(self) -> float:
    denom = self.true_positives + self.false_positives
    return self.true_positives / denom if denom else 1.0

  @property
  def recall(self) -> float:
    denom = self.true_positives + self.false_negatives
    return self.true_positives / denom if denom else 1.0

  @property
  def f1(self) -> float:
    p, r = self.precision, self.recall
    return 2 * p * r / (p + r) if p + r else 0.0


def match_to_annotations(
    detected_xy: np.ndarray, true_xy: np.ndarray, tol_px: float
) -> Matching:
  """Greedy one-to-one matching within `tol_px` (closest pairs first).

  Ties in distance are broken by (detection, annotation) index, so the result
  is deterministic. Greedy closest-first equals an optimal assignment except
  in rare chains of near-equidistant pairs, which is immaterial for
  precision / recall at a tolerance below the typical spacing.
  """
  det = np.asarray(detected_xy, np.float64).reshape(-1, 2)
  ref = np.asarray(true_xy, np.float64).reshape(-1, 2)
  if det.shape[0] == 0 or ref.shape[0] == 0:
    return Matching(np.zeros((0, 2), np.int64), 0, det.shape[0], ref.shape[0])
  # Sparse candidate pairs via a KD-tree keeps this O(n log n).
  pairs = cKDTree(det).sparse_distance_matrix(
      cKDTree(ref), tol_px, output_type="ndarray"
  )
  order = np.lexsort((pairs["j"], pairs["i"], pairs["v"]))
  used_det = np.zeros(det.shape[0], bool)
  used_ref = np.zeros(ref.shape[0], bool)
  matched = []
  for i, j in zip(pairs["i"][order], pairs["j"][order]):
    if not used_det[i] and not used_ref[j]:
      used_det[i] = used_ref[j] = True
      matched.append((i, j))
  tp = len(matched)
  return Matching(
      np.asarray(matched, np.int64).reshape(-1, 2),
      tp,
      det.shape[0] - tp,
      ref.shape[0] - tp,
  )

"""Per-image prediction results and the stage timer of a predict run."""

import contextlib
import dataclasses
import time
from typing import Any, Optional

import numpy as np

# Image statuses. Every status but OK and NO_CALCIFICATION means the image
# could not be analysed (see ``FAILED``).
OK = "ok"
NO_CALCIFICATION = "no_calcification"
NO_BREAST = "no_breast"
NOT_DICOM = "not_dicom"
NOT_MAMMOGRAPHY = "not_mammography"
TRUNCATED = "truncated"
UNREADABLE = "unreadable"
ERROR = "error"
STATUSES = (OK, NO_CALCIFICATION, NO_BREAST, NOT_DICOM, NOT_MAMMOGRAPHY,
            TRUNCATED, UNREADABLE, ERROR)
# Statuses of images that were read and analysed (an image without
# calcifications is a result, not a failure).
ANALYSED = (OK, NO_CALCIFICATION)

# What a method's predictions are about.
KIND_CALCIFICATIONS = "calcifications"
KIND_IMAGE = "image"

STAGES = ("ingestion", "detection", "graphs", "model")


class PredictError(Exception):
  """One input that cannot be predicted: a status and a reason."""

  def __init__(self, status: str, reason: str):
    super().__init__(f"{status}: {reason}")
    self.status = status
    self.reason = reason


@dataclasses.dataclass
class ImagePrediction:
  """What a method predicted on one input file.

  Coordinates are in the stored pixel grid of the DICOM file (no flip, no
  crop, no resize): ``xy`` = (column, row), pixel centres at integers.

  Attributes:
    source: the input path.
    status: one of ``STATUSES``.
    reason: why nothing (or nothing more) could be predicted, else None.
    kind: ``KIND_CALCIFICATIONS`` or ``KIND_IMAGE``.
    meta: ``dicom.DicomMeta`` of the file when it could be read.
    image: float32 ``[rows, columns]`` display image in the stored grid
      (``[0, 1]``, bright = dense), for the overlay; dropped once written.
    geometry: the ingestion facts (flip, crop box, scale, VOI, inversion).
    calcifications: per calcification: ``id``, ``center_xy``, ``bbox_xy``
      (x0, y0, x1, y1 inclusive), ``area_px``, ``cluster_id``,
      ``morphology`` (class -> probability), ``predicted_morphology``.
    clusters: per cluster: ``cluster_id``, ``calcification_ids``,
      ``distribution`` (class -> probability), ``predicted_distribution``.
    image_probabilities: task -> class -> probability (image methods).
    heatmap: float32 ``[rows, columns]`` Grad-CAM map in the stored grid.
    calcification_source: 'detector', 'annotations' or None.
    counts: extra counts (e.g. ``detections``, ``unclustered``).
  """

  source: str
  status: str = OK
  reason: Optional[str] = None
  kind: str = KIND_CALCIFICATIONS
  meta: Any = None
  image: Optional[np.ndarray] = None
  geometry: dict[str, Any] = dataclasses.field(default_factory=dict)
  calcifications: list[dict[str, Any]] = dataclasses.field(
      default_factory=list)
  clusters: list[dict[str, Any]] = dataclasses.field(default_factory=list)
  image_probabilities: dict[str, dict[str, float]] = dataclasses.field(
      default_factory=dict)
  heatmap: Optional[np.ndarray] = None
  calcification_source: Optional[str] = None
  counts: dict[str, int] = dataclasses.field(default_factory=dict)

  @property
  def analysed(self) -> bool:
    return self.status in ANALYSED


def failed(source: str, error: PredictError, **kwargs) -> ImagePrediction:
  """An ``ImagePrediction`` of an input that could not be predicted."""
  return ImagePrediction(
      source=source, status=error.status, reason=error.reason, **kwargs)


class Timer:
  """Wall seconds per stage (``STAGES``), summed over images."""

  def __init__(self):
    self.seconds = {s: 0.0 for s in STAGES}

  @contextlib.contextmanager
  def stage(self, name: str):
    if name not in self.seconds:
      raise ValueError(f"unknown stage {name!r}; expected one of {STAGES}")
    start = time.perf_counter()
    try:
      yield
    finally:
      self.seconds[name] += time.perf_counter() - start

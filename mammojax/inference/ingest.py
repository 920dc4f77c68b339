"""Reading one input image for prediction, with statuses for bad input.

The same ``dicom.load_dicom`` path as training (VOI LUT / windowing,
MONOCHROME1, laterality orientation, crop, resize); its ``DicomError``
becomes a ``results.PredictError`` with a status
(``not_dicom``, ``not_mammography``, ``truncated``, ``unreadable``), and an
image in which ``breast_region.breast_bbox`` finds no breast is
``no_breast``. The ``Mammogram`` keeps the geometry, so findings map back
into the stored grid with ``Mammogram.to_stored_xy``.
"""

import pathlib
from typing import Any

import numpy as np
from scipy import ndimage

from mammojax.data import breast_region
from mammojax.data import dicom
from mammojax.data import resample
from mammojax.data.builders import base
from mammojax.inference import results

# DicomError reason prefixes -> status (the rest is UNREADABLE).
_REASONS = (
    ("not a DICOM file", results.NOT_DICOM),
    ("no such file", results.NOT_DICOM),
    ("Modality is", results.NOT_MAMMOGRAPHY),
    ("file is truncated", results.TRUNCATED),
)


def status_of(error: dicom.DicomError) -> str:
  """The status of a ``DicomError`` (by its ``reason``)."""
  reason = error.reason or ""
  for prefix, status in _REASONS:
    if reason.startswith(prefix):
      return status
  if "truncated" in reason:
    return results.TRUNCATED
  if "SOP class" in reason or "not a mammogram" in reason:
    return results.NOT_MAMMOGRAPHY
  return results.UNREADABLE


def load(source: str, **kwargs) -> dicom.Mammogram:
  """``dicom.load_dicom(source, **kwargs)``, raising ``PredictError``."""
  try:
    return dicom.load_dicom(source, **kwargs)
  except dicom.DicomError as e:
    raise results.PredictError(status_of(e), e.reason) from e


def check_breast(image: np.ndarray, source: str) -> None:
  """Raises ``PredictError(no_breast)`` when the image shows no breast."""
  if breast_region.breast_bbox(image) is None:
    raise results.PredictError(
        results.NO_BREAST,
        f"no breast found in {source}: no bright component covers 1% of the "
        "image after Otsu thresholding (blank or non-breast image)",
    )


def breast_mask(image: np.ndarray, pixel_spacing_mm: float,
                erode_mm: float = 1.0) -> np.ndarray:
  """The breast (largest Otsu component, holes filled), eroded ``erode_mm``.

  The erosion keeps detections off the skin line, whose edge is not a
  calcification (as scripts/measure_detector.py does).
  """
  mask = image > breast_region.otsu_threshold(image)
  mask = ndimage.binary_opening(mask, iterations=2)
  labels, n = ndimage.label(mask)
  if n == 0:
    return mask
  sizes = np.bincount(labels.ravel())[1:]
  mask = ndimage.binary_fill_holes(labels == int(np.argmax(sizes)) + 1)
  steps = max(1, int(round(erode_mm / max(pixel_spacing_mm, 1e-3))))
  return ndimage.binary_erosion(mask, iterations=steps)


def stored_image(mammogram: dicom.Mammogram) -> np.ndarray:
  """An uncropped, unresized ``load_dicom`` image back in the stored grid."""
  image = mammogram.image
  if mammogram.flipped:
    image = image[:, ::-1]
  return np.ascontiguousarray(image)


def geometry(mammogram: dicom.Mammogram) -> dict[str, Any]:
  """The ingestion facts of findings.json."""
  return {
      "stored_shape": list(mammogram.stored_shape),
      "flipped": bool(mammogram.flipped),
      "laterality_inferred": bool(mammogram.laterality_inferred),
      "crop_box_xy": list(mammogram.crop_box),
      "scale_yx": [float(s) for s in mammogram.scale],
      "voi": mammogram.voi,
      "inverted": bool(mammogram.inverted),
  }


def load_whole_image(
    source: str, image_size: tuple[int, int], downsample: int = 1,
) -> tuple[Any, dicom.Mammogram]:
  """The whole-image builders' view of ``source`` (``whole_image.load_view``).

  ``base.read_dataset`` (block-averaged by ``downsample``) then
  ``load_dicom(orient=True, crop=True, resize=image_size)``; header problems
  are found first (``dicom.read_metadata``) so every bad file gets its
  status.

  Returns:
    ``(dataset, view)``: the in-memory (downsampled) dataset and the view.
  """
  try:
    dicom.read_metadata(source)
    ds = base.read_dataset(pathlib.Path(source), downsample=downsample)
  except dicom.DicomError as e:
    raise results.PredictError(status_of(e), e.reason) from e
  except Exception as e:  # pylint: disable=broad-except
    raise results.PredictError(
        results.UNREADABLE, f"cannot read the pixel data ({e})") from e
  return ds, load(ds, orient=True, crop=True, resize=tuple(image_size))


def view_map_to_stored(
    values: np.ndarray, view: dicom.Mammogram,
) -> np.ndarray:
  """A map over a resized view back onto the view's stored grid.

  The inverse of ``load_dicom``'s crop, mirror and resize: ``values`` (any
  size, aligned with ``view.image``) is resized to the view, its content
  part (without the zero padding) resized to the crop box, mirrored back
  for flipped views and placed at the crop box of a zero ``stored_shape``
  array.
  """
  values = np.asarray(values, np.float32)
  height, width = view.image.shape
  if values.shape != (height, width):
    values = resample.resize_image(values, (height, width))
  x0, y0, x1, y1 = view.crop_box
  sy, sx = view.scale
  content = (min(height, max(1, int(round((y1 - y0) * sy)))),
             min(width, max(1, int(round((x1 - x0) * sx)))))
  region = resample.resize_image(values[: content[0], : content[1]],
                                 (y1 - y0, x1 - x0))
  if view.flipped:
    region = region[:, ::-1]
  out = np.zeros(view.stored_shape, np.float32)
  out[y0:y1, x0:x1] = region
  return out

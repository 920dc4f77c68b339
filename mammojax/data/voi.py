"""Grey levels of a DICOM image: Modality LUT, VOI LUT / windowing, polarity.

Numpy ports of PS3.3 C.11.1 (Modality LUT: Modality LUT Sequence or
RescaleSlope / RescaleIntercept) and C.11.2 (VOI: VOI LUT Sequence or
windowing, LINEAR, LINEAR_EXACT, SIGMOID) giving the same output values as
pydicom's `apply_modality_lut` / `apply_voi_lut`; `load_dicom`
(`mammojax.data.dicom`) maps the VOI output to [0, 1].

Display polarity (bright = dense, MONOCHROME2 convention; `needs_inversion`).
The image is inverted once if PhotometricInterpretation is MONOCHROME1 *or*
PresentationLUTShape is INVERSE. The two are not applied twice: in the DX
and MG IODs (PS3.3 C.8.11.1.1) Presentation LUT Shape is "an identity
transformation ... other than to account for the value of Photometric
Interpretation": INVERSE *shall* be used with MONOCHROME1 and IDENTITY with
MONOCHROME2, i.e. INVERSE restates the MONOCHROME1 inversion. So
MONOCHROME1 + INVERSE (e.g. Hologic) is displayed with low stored values
white, exactly like plain MONOCHROME1. (Applying pydicom's
`apply_presentation_lut` and then inverting MONOCHROME1 again would invert
twice and give a negative image.) MONOCHROME2 + INVERSE, which the MG IOD
does not allow but standalone objects use, is inverted once; the
non-conformant MONOCHROME1 + IDENTITY is inverted (photometric wins).
"""

from __future__ import annotations

import struct
from typing import Any, Sequence

import numpy as np
from pydicom import dataset as pydicom_dataset
from pydicom import multival
from pydicom import uid as pydicom_uid

from mammojax.data import breast_region
from mammojax.data import dicom_header

VOI_FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")


# ---------------------------------------------------------------------------
# Pure LUT / windowing math (numpy), PS3.3 C.11.1 and C.11.2.
# ---------------------------------------------------------------------------


def _as_float(x: Any) -> np.ndarray:
  """Float copy of `x`: keeps float32/float64, integers become float64."""
  x = np.asarray(x)
  if np.issubdtype(x.dtype, np.floating):
    return x.astype(x.dtype, copy=True)
  return x.astype(np.float64)


def apply_rescale(x: Any, slope: float, intercept: float) -> np.ndarray:
  """Modality rescale `x * slope + intercept` (float64 for integer input)."""
  out = _as_float(x)
  out *= slope
  out += intercept
  return out


def apply_lut(x: Any, first_map: int, lut: Any) -> np.ndarray:
  """Table lookup `lut[clip(x - first_map, 0, n - 1)]` (PS3.3 C.11.1.1).

  Inputs below `first_map` get entry 0, inputs past the table the last entry.
  Non-integer inputs are truncated towards zero after the offset, like
  pydicom.
  """
  lut = np.asarray(lut)
  idx = np.asarray(x).astype(np.float64) - first_map
  idx = np.clip(idx, 0, lut.shape[0] - 1).astype(np.int64)
  return lut[idx]


def lut_dtype(bits: int) -> np.dtype:
  """Entry dtype for a VOI LUT of `bits` bits (8 or 10-16, C.8.11.3.1.5)."""
  if bits == 8:
    return np.dtype(np.uint8)
  if 10 <= bits <= 16:
    return np.dtype(np.uint16)
  raise ValueError(f"{bits} bits per LUT entry is not supported (8, 10-16)")


def apply_voi_lut_sequence(
    x: Any, descriptor: Sequence[int], lut_data: Any
) -> np.ndarray:
  """Applies one VOI LUT Sequence item.

  Args:
    x: modality values, any shape.
    descriptor: LUTDescriptor `[n_entries (0 means 65536), first_map, bits]`.
    lut_data: the `n_entries` LUT values.

  Returns:
    Array like `x` of uint8 (bits 8) or uint16 (bits 10-16), the LUT output
    in `[0, 2**bits - 1]`.
  """
  n_entries, first_map, bits = (int(v) for v in descriptor)
  n_entries = n_entries or 2**16
  lut = np.asarray(lut_data, dtype=np.int64)[:n_entries].astype(
      lut_dtype(bits)
  )
  return apply_lut(x, first_map, lut)


def apply_windowing(
    x: Any,
    center: float,
    width: float,
    function: str = "LINEAR",
    y_min: float = 0.0,
    y_max: float = 1.0,
) -> np.ndarray:
  """VOI windowing (PS3.3 C.11.2.1.2.1, C.11.2.1.3.1, C.11.2.1.3.2).

  Args:
    x: modality values, any shape.
    center: Window Center.
    width: Window Width (>= 1 for LINEAR, > 0 otherwise).
    function: 'LINEAR', 'LINEAR_EXACT' or 'SIGMOID' (VOILUTFunction).
    y_min: output value for the bottom of the window.
    y_max: output value for the top of the window.

  Returns:
    Float array like `x` (float64 for integer input) in [y_min, y_max].
  """
  function = function.strip().upper()
  out = _as_float(x)
  y_range = y_max - y_min
  if function in ("LINEAR", "LINEAR_EXACT"):
    if function == "LINEAR":
      if width < 1:
        raise ValueError("LINEAR windowing needs Window Width >= 1")
      center, width = center - 0.5, width - 1.0
    elif width <= 0:
      raise ValueError("LINEAR_EXACT windowing needs Window Width > 0")
    below = out <= center - width / 2
    above = out > center + width / 2
    if width > 0:
      out = ((out - center) / width + 0.5) * y_range + y_min
    out[below] = y_min
    out[above] = y_max
    return out
  if function == "SIGMOID":
    if width <= 0:
      raise ValueError("SIGMOID windowing needs Window Width > 0")
    return y_range / (1.0 + np.exp(-4.0 * (out - center) / width)) + y_min
  raise ValueError(
      f"unsupported VOILUTFunction {function!r}; expected one of "
      f"{', '.join(VOI_FUNCTIONS)}"
  )


def invert(x: np.ndarray) -> np.ndarray:
  """Polarity inversion of an image in [0, 1]."""
  return (1.0 - x).astype(x.dtype)


def normalise_min_max(x: Any) -> np.ndarray:
  """Min-max scaling to [0, 1] (a constant image becomes zeros)."""
  x = _as_float(x)
  lo, hi = float(x.min()), float(x.max())
  if hi <= lo:
    return np.zeros_like(x)
  return (x - lo) / (hi - lo)


# ---------------------------------------------------------------------------
# Dataset-level helpers.
# ---------------------------------------------------------------------------


def lut_values(item: pydicom_dataset.Dataset, ds: Any) -> np.ndarray:
  """LUTData of a LUT item as integers (US list or OW bytes)."""
  elem = item["LUTData"]
  n_entries = int(item.LUTDescriptor[0]) or 2**16
  if elem.VR == "OW" or isinstance(elem.value, bytes):
    little = True
    file_meta = getattr(ds, "file_meta", None)
    tsyntax = getattr(file_meta, "TransferSyntaxUID", None)
    if tsyntax is not None and tsyntax == pydicom_uid.ExplicitVRBigEndian:
      little = False
    fmt = f"{'<' if little else '>'}{n_entries}H"
    return np.asarray(struct.unpack_from(fmt, elem.value), dtype=np.int64)
  value = elem.value
  if not isinstance(value, (list, tuple, multival.MultiValue)):
    value = [value]
  return np.asarray(list(value), dtype=np.int64)


def stored_range(ds: pydicom_dataset.Dataset) -> tuple[float, float]:
  """Range of representable stored values from BitsStored / signedness."""
  bits = int(ds.BitsStored)
  if int(ds.get("PixelRepresentation", 0)) == 1:
    return float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)
  return 0.0, float(2**bits - 1)


def window_output_range(ds: pydicom_dataset.Dataset) -> tuple[float, float]:
  """pydicom's windowing output range `(y_min, y_max)` for `ds`.

  `[0, 2**LUTbits - 1]` with a Modality LUT Sequence, else the stored range,
  mapped through RescaleSlope/Intercept when both are present (so a negative
  slope gives y_min > y_max).
  """
  if ds.get("ModalityLUTSequence"):
    bits = int(ds.ModalityLUTSequence[0].LUTDescriptor[2])
    y_min, y_max = 0.0, float(2**bits - 1)
  else:
    y_min, y_max = stored_range(ds)
  slope = ds.get("RescaleSlope")
  intercept = ds.get("RescaleIntercept")
  if slope is not None and intercept is not None:
    y_min = y_min * float(slope) + float(intercept)
    y_max = y_max * float(slope) + float(intercept)
  return y_min, y_max


def modality_lut(x: Any, ds: pydicom_dataset.Dataset) -> np.ndarray:
  """Modality LUT Sequence or RescaleSlope/Intercept from `ds` (C.11.1)."""
  if ds.get("ModalityLUTSequence"):
    item = ds.ModalityLUTSequence[0]
    n_entries, first_map, bits = (int(v) for v in item.LUTDescriptor)
    lut = lut_values(item, ds)[: n_entries or 2**16]
    # pydicom uses dtype f"uint{bits}", which fails for e.g. 12-bit LUTs.
    dtype = np.uint8 if bits <= 8 else np.uint16
    return apply_lut(x, first_map, lut.astype(dtype))
  slope = ds.get("RescaleSlope")
  intercept = ds.get("RescaleIntercept")
  if slope is not None and intercept is not None:
    return apply_rescale(x, float(slope), float(intercept))
  return np.asarray(x)


def has_voi_lut_sequence(ds: pydicom_dataset.Dataset) -> bool:
  """True if the first VOI LUT Sequence item has LUTDescriptor and LUTData."""
  seq = ds.get("VOILUTSequence")
  if not seq:
    return False
  return (
      seq[0].get("LUTDescriptor") is not None
      and seq[0].get("LUTData") is not None
  )


def has_window(ds: pydicom_dataset.Dataset) -> bool:
  """True if both WindowCenter and WindowWidth hold a value."""
  return (
      ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None
  )


def window_params(
    ds: pydicom_dataset.Dataset, index: int = 0
) -> tuple[float, float, str]:
  """(center, width, VOILUTFunction) of window `index` (function default
  LINEAR)."""
  centers = dicom_header.float_values(ds.WindowCenter)
  widths = dicom_header.float_values(ds.WindowWidth)
  if not 0 <= index < min(len(centers), len(widths)):
    raise IndexError(
        f"window_index {index} out of range: the file has "
        f"{len(centers)} WindowCenter and {len(widths)} WindowWidth values"
    )
  function = ds.get("VOILUTFunction") or "LINEAR"
  return centers[index], widths[index], str(function).strip().upper()


def voi_lut(
    x: Any,
    ds: pydicom_dataset.Dataset,
    *,
    index: int = 0,
    prefer_lut: bool = True,
) -> np.ndarray:
  """Numpy port of `pydicom.pixels.apply_voi_lut` (same output values)."""
  lut_ok, win_ok = has_voi_lut_sequence(ds), has_window(ds)
  if lut_ok and (prefer_lut or not win_ok):
    item = ds.VOILUTSequence[index]
    return apply_voi_lut_sequence(
        x, item.LUTDescriptor, lut_values(item, ds)
    )
  if win_ok:
    center, width, function = window_params(ds, index)
    y_min, y_max = window_output_range(ds)
    return apply_windowing(x, center, width, function, y_min, y_max)
  return np.asarray(x)


def needs_inversion(ds: pydicom_dataset.Dataset) -> bool:
  """True if low values display white: MONOCHROME1 or INVERSE LUT shape.

  Both together mean ONE inversion (see the module docstring).
  """
  photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
  shape = str(ds.get("PresentationLUTShape", "") or "").strip().upper()
  return photometric == "MONOCHROME1" or shape == "INVERSE"


# ---------------------------------------------------------------------------
# FOR PROCESSING images (raw detector data).
# ---------------------------------------------------------------------------

# Percentiles of the breast's values that span the display window of a FOR
# PROCESSING image.
PROCESSING_PERCENTILES = (0.5, 99.5)


def processing_display(
    values: Any, ds: pydicom_dataset.Dataset
) -> tuple[np.ndarray, bool]:
  """Display transform of a FOR PROCESSING image -> ([0, 1], inverted).

  Raw detector data carry no VOI window, so min-max scaling (what a missing
  window means for a presentation image) leaves the breast in a few grey
  levels next to the unattenuated background. The transform, in order:

  1. LIN data (PixelIntensityRelationship 'LIN': values proportional to the
     X-ray intensity) become log data: ``log(1 + x - min(x))`` (the offset
     removes the detector's dark level). LOG (and OTHER / missing) data are
     kept.
  2. Polarity to bright = dense: with PixelIntensityRelationshipSign +1
     (lower values = less X-ray intensity = denser) the values are negated;
     with -1 they are kept; without the sign, MONOCHROME1 / INVERSE invert
     as for presentation images (``needs_inversion``).
  3. A robust window inside the breast: the breast is the part above the
     Otsu threshold of the oriented values; its 0.5th and 99.5th
     percentiles (``PROCESSING_PERCENTILES``) map to 0 and 1 (clipped).

  Returns:
    ``(image, inverted)``: float32 in [0, 1], bright = dense, and whether
    the polarity step negated the values.
  """
  x = np.asarray(values, np.float64)
  relationship = (dicom_header.text_value(ds, "PixelIntensityRelationship")
                  or "").upper()
  if relationship == "LIN":
    x = np.log1p(np.maximum(x - x.min(), 0.0))
  sign = ds.get("PixelIntensityRelationshipSign")
  try:
    sign = int(sign) if sign is not None else None
  except (TypeError, ValueError):
    sign = None
  inverted = sign == 1 if sign in (1, -1) else needs_inversion(ds)
  if inverted:
    x = -x
  small = x[::4, ::4] if min(x.shape) >= 64 else x
  breast = small[small > breast_region.otsu_threshold(small)]
  if breast.size < 16:
    breast = small.ravel()
  lo, hi = np.percentile(breast, PROCESSING_PERCENTILES)
  if hi <= lo:
    return np.zeros(x.shape, np.float32), inverted
  return np.clip((x - lo) / (hi - lo), 0.0, 1.0).astype(np.float32), inverted

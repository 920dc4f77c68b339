"""DICOM mammogram ingestion: stored pixels -> float32 image in [0, 1].

Pipeline of `load_dicom` (each step is also a public pure function):

1. read (path or in-memory `pydicom.Dataset`, same code path), check Modality
   (MG unless `allow_non_mg`), PixelData and codec; decode with pydicom.
2. Modality LUT: Modality LUT Sequence or RescaleSlope/RescaleIntercept.
3. VOI: VOI LUT Sequence or windowing (LINEAR, LINEAR_EXACT, SIGMOID; PS3.3
   C.11.2), mapped to [0, 1] over the VOI output range; without a VOI the
   image is min-max normalised over its own values.
4. Display polarity (bright = dense, MONOCHROME2 convention). The image is
   inverted once if PhotometricInterpretation is MONOCHROME1 *or*
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
5. Orientation (`orient=True`): right breasts are mirrored so the chest wall
   is at column 0; without laterality the side with more tissue is taken as
   the chest wall (recorded in `Mammogram.laterality_inferred`).
6. Breast crop (`crop=True`): Otsu threshold + largest connected component,
   bounding box + margin.
7. Resize (`resize=`): long side (int) or fit into (H, W) with zero padding at
   the bottom/right; area averaging when shrinking, linear when enlarging.

`Mammogram.to_output_xy` / `to_stored_xy` map annotation coordinates (stored
pixel grid, xy = (column, row), pixel centres at integers) to the output image
and back.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import pathlib
import re
import struct
from typing import Any, Sequence

import numpy as np
import pydicom
from pydicom import dataset as pydicom_dataset
from pydicom import errors as pydicom_errors
from pydicom import multival
from pydicom import pixels as pydicom_pixels
from pydicom import uid as pydicom_uid
from scipy import ndimage
from scipy import sparse

PathOrDataset = str | os.PathLike | pydicom_dataset.Dataset

VOI_MODES = ("auto", "lut", "window", "none")
VOI_FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")
INSTALL_HINT = "pip install mammojax[dicom]"

# SOP classes that are mammograms even when Modality is missing.
_MG_SOP_CLASSES = frozenset({
    "1.2.840.10008.5.1.4.1.1.1.2",  # Digital Mammography - For Presentation
    "1.2.840.10008.5.1.4.1.1.1.2.1",  # Digital Mammography - For Processing
    "1.2.840.10008.5.1.4.1.1.13.1.3",  # Breast Tomosynthesis
})

# Mammography view codes (DICOM ViewPosition / CID 4014 abbreviations).
_VIEW_ALIASES = {
    "CC": "CC", "MLO": "MLO", "ML": "MLO", "LM": "LM", "LMO": "LMO",
    "XCCL": "XCCL", "XCCM": "XCCM", "FB": "FB", "SIO": "SIO", "ISO": "ISO",
    "AT": "AT", "CV": "CV",
}
# ViewCodeSequence Code Meaning (lower case, letters only) -> view.
_VIEW_MEANINGS = {
    "craniocaudal": "CC",
    "mediolateraloblique": "MLO",
    "mediolateral": "MLO",
    "lateromedial": "LM",
    "lateromedialoblique": "LMO",
    "craniocaudalexaggeratedlaterally": "XCCL",
    "craniocaudalexaggeratedmedially": "XCCM",
    "caudocranialfrombelow": "FB",
    "superolateraltoinferomedialoblique": "SIO",
    "axillarytail": "AT",
    "cleavage": "CV",
}
# ViewCodeSequence Code Value (SNOMED RT / SNOMED CT) -> view.
_VIEW_CODES = {
    "R-10242": "CC", "399162004": "CC",
    "R-10226": "MLO", "399368009": "MLO",
    "R-10224": "MLO", "399260004": "MLO",
    "R-10228": "LM", "399352003": "LM",
    "R-10230": "LMO",
}
_SIDE_TOKENS = {"LEFT": "L", "RIGHT": "R"}
_COMBINED = re.compile(r"^(L|R)(CC|MLO|ML|LM|LMO|XCCL|XCCM)$")


class DicomError(ValueError):
  """A DICOM file that cannot be turned into a mammogram image.

  The message is `"<source>: <reason>"`; both parts are also attributes.
  """

  def __init__(self, source: str, reason: str):
    super().__init__(f"{source}: {reason}")
    self.source = source
    self.reason = reason


@dataclasses.dataclass(frozen=True)
class DicomMeta:
  """Header facts of one DICOM image (read without decoding pixels).

  `*_source` fields name the attribute a value came from (None: not found).
  `pixel_spacing_mm` is (row, column) spacing; `pixel_spacing_missing` is True
  when neither ImagerPixelSpacing nor PixelSpacing gave a usable value.
  """

  source: str
  patient_id: str | None
  study_uid: str | None
  series_uid: str | None
  sop_uid: str | None
  sop_class_uid: str | None
  modality: str | None
  manufacturer: str | None
  laterality: str | None
  laterality_source: str | None
  view: str | None
  view_source: str | None
  pixel_spacing_mm: tuple[float, float] | None
  pixel_spacing_source: str | None
  pixel_spacing_missing: bool
  photometric: str | None
  bits_stored: int | None
  bits_allocated: int | None
  pixel_representation: int | None
  rows: int | None
  columns: int | None
  transfer_syntax: str | None


@dataclasses.dataclass(frozen=True)
class Mammogram:
  """A display-ready mammogram plus the geometry that produced it.

  Attributes:
    image: float32 `[H, W]` in [0, 1], bright = dense.
    meta: header facts.
    laterality: 'L' / 'R' used for orientation (header or inferred), or None
      when `orient=False` and the header has none.
    laterality_inferred: True if `laterality` was guessed from the image.
    flipped: True if the stored image was mirrored left-right.
    crop_box: (x0, y0, x1, y1) half-open box in the stored pixel grid.
    scale: (sy, sx) output pixels per stored pixel.
    stored_shape: (rows, columns) of the stored image.
    voi: 'lut', 'window' or 'none' (min-max), the VOI actually applied.
    window: (center, width, function) when `voi == 'window'`.
    inverted: True if MONOCHROME1 / INVERSE polarity was undone.
  """

  image: np.ndarray
  meta: DicomMeta
  laterality: str | None
  laterality_inferred: bool
  flipped: bool
  crop_box: tuple[int, int, int, int]
  scale: tuple[float, float]
  stored_shape: tuple[int, int]
  voi: str
  window: tuple[float, float, str] | None
  inverted: bool

  def to_output_xy(self, xy: Any) -> np.ndarray:
    """Maps stored-pixel xy `[..., 2]` into the output image grid."""
    xy = np.asarray(xy, dtype=np.float64)
    x0, y0, x1, _ = self.crop_box
    sy, sx = self.scale
    if self.flipped:
      # Mirror inside the stored frame: x -> W - 1 - x, crop starts at W - x1.
      u = x1 - 1 - xy[..., 0]
    else:
      u = xy[..., 0] - x0
    v = xy[..., 1] - y0
    return np.stack([(u + 0.5) * sx - 0.5, (v + 0.5) * sy - 0.5], axis=-1)

  def to_stored_xy(self, xy: Any) -> np.ndarray:
    """Maps output-image xy `[..., 2]` back into the stored pixel grid."""
    xy = np.asarray(xy, dtype=np.float64)
    x0, y0, x1, _ = self.crop_box
    sy, sx = self.scale
    u = (xy[..., 0] + 0.5) / sx - 0.5
    v = (xy[..., 1] + 0.5) / sy - 0.5
    x = x1 - 1 - u if self.flipped else u + x0
    return np.stack([x, v + y0], axis=-1)


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


def _lut_values(item: pydicom_dataset.Dataset, ds: Any) -> np.ndarray:
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
    lut = _lut_values(item, ds)[: n_entries or 2**16]
    # pydicom uses dtype f"uint{bits}", which fails for e.g. 12-bit LUTs.
    dtype = np.uint8 if bits <= 8 else np.uint16
    return apply_lut(x, first_map, lut.astype(dtype))
  slope = ds.get("RescaleSlope")
  intercept = ds.get("RescaleIntercept")
  if slope is not None and intercept is not None:
    return apply_rescale(x, float(slope), float(intercept))
  return np.asarray(x)


def _multi(value: Any) -> list[float]:
  """A DS value with VM >= 1 as a list of floats."""
  if isinstance(value, (list, tuple, multival.MultiValue)):
    return [float(v) for v in value]
  return [float(value)]


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
  centers = _multi(ds.WindowCenter)
  widths = _multi(ds.WindowWidth)
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
        x, item.LUTDescriptor, _lut_values(item, ds)
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
# Metadata.
# ---------------------------------------------------------------------------


def _text(ds: pydicom_dataset.Dataset, keyword: str) -> str | None:
  """Stripped string value of an attribute, None if missing or empty."""
  value = ds.get(keyword)
  if value is None:
    return None
  if isinstance(value, multival.MultiValue):
    value = "\\".join(str(v) for v in value)
  value = str(value).strip()
  return value or None


def _int(ds: pydicom_dataset.Dataset, keyword: str) -> int | None:
  """Integer value of an attribute, None if missing."""
  value = ds.get(keyword)
  return None if value is None else int(value)


def _tokens(text: str) -> list[str]:
  """Upper-case alphanumeric tokens of a name like `Mass-Test_P_1_LEFT_CC`."""
  return [t for t in re.split(r"[^A-Za-z0-9]+", text.upper()) if t]


def parse_side_and_view(text: str | None) -> tuple[str | None, str | None]:
  """(laterality, view) parsed from a name like `..._LEFT_CC` or `P1_R_MLO`.

  Single-letter sides ('L', 'R') count only next to a view token, and
  combined tokens like `LCC` / `RMLO` give both.
  """
  if not text:
    return None, None
  tokens = _tokens(text)
  side = view = None
  for tok in tokens:
    if tok in _SIDE_TOKENS and side is None:
      side = _SIDE_TOKENS[tok]
    elif tok in _VIEW_ALIASES and view is None:
      view = _VIEW_ALIASES[tok]
    elif (m := _COMBINED.match(tok)) and side is None and view is None:
      side, view = m.group(1), _VIEW_ALIASES[m.group(2)]
  if side is None and view is not None:
    singles = [t for t in tokens if t in ("L", "R")]
    if len(set(singles)) == 1:
      side = singles[0]
  return side, view


def _laterality(ds: pydicom_dataset.Dataset) -> tuple[str | None, str | None]:
  """Laterality and the attribute it came from."""
  for keyword in ("ImageLaterality", "Laterality"):
    value = (_text(ds, keyword) or "").upper()
    if value in ("L", "R"):
      return value, keyword
  for keyword in ("PatientID", "SeriesDescription"):
    side, _ = parse_side_and_view(_text(ds, keyword))
    if side:
      return side, keyword
  return None, None


def _view_from_code_sequence(ds: pydicom_dataset.Dataset) -> str | None:
  """View from ViewCodeSequence (Code Meaning, else Code Value)."""
  seq = ds.get("ViewCodeSequence")
  if not seq:
    return None
  item = seq[0]
  meaning = re.sub(r"[^a-z]", "", str(item.get("CodeMeaning", "")).lower())
  if meaning in _VIEW_MEANINGS:
    return _VIEW_MEANINGS[meaning]
  return _VIEW_CODES.get(str(item.get("CodeValue", "")).strip())


def _view(ds: pydicom_dataset.Dataset) -> tuple[str | None, str | None]:
  """View (CC, MLO, ...; ML -> MLO) and the attribute it came from.

  ViewPosition counts only if it is a mammography view code (Hologic flat
  field images say 'FLATFIELD'); PatientOrientation only if it holds a view
  (CBIS-DDSM puts 'CC' / 'MLO' there instead of the direction pair).
  """
  position = (_text(ds, "ViewPosition") or "").upper()
  if position in _VIEW_ALIASES:
    return _VIEW_ALIASES[position], "ViewPosition"
  view = _view_from_code_sequence(ds)
  if view:
    return view, "ViewCodeSequence"
  orientation = (_text(ds, "PatientOrientation") or "").upper()
  if orientation in _VIEW_ALIASES:
    return _VIEW_ALIASES[orientation], "PatientOrientation"
  for keyword in ("PatientID", "SeriesDescription"):
    _, view = parse_side_and_view(_text(ds, keyword))
    if view:
      return view, keyword
  return None, None


def _spacing(
    ds: pydicom_dataset.Dataset,
) -> tuple[tuple[float, float] | None, str | None]:
  """(row, col) spacing in mm: ImagerPixelSpacing, else PixelSpacing."""
  for keyword in ("ImagerPixelSpacing", "PixelSpacing"):
    value = ds.get(keyword)
    if value is None:
      continue
    try:
      values = _multi(value)
    except (TypeError, ValueError):
      continue
    if len(values) == 1:
      values = values * 2
    if len(values) == 2 and all(np.isfinite(values)) and min(values) > 0:
      return (values[0], values[1]), keyword
  return None, None


def _source_name(source: Any, ds: pydicom_dataset.Dataset | None) -> str:
  """Human-readable name of a path or in-memory dataset for messages."""
  if isinstance(source, pydicom_dataset.Dataset):
    filename = getattr(source, "filename", None)
    if isinstance(filename, str) and filename:
      return filename
    sop = _text(source, "SOPInstanceUID")
    return f"<in-memory Dataset SOPInstanceUID={sop}>"
  return str(source)


def metadata_from_dataset(
    ds: pydicom_dataset.Dataset, source: str = "<dataset>"
) -> DicomMeta:
  """Builds `DicomMeta` from a (header-only or full) dataset."""
  laterality, laterality_source = _laterality(ds)
  view, view_source = _view(ds)
  spacing, spacing_source = _spacing(ds)
  file_meta = getattr(ds, "file_meta", None)
  tsyntax = getattr(file_meta, "TransferSyntaxUID", None)
  return DicomMeta(
      source=source,
      patient_id=_text(ds, "PatientID"),
      study_uid=_text(ds, "StudyInstanceUID"),
      series_uid=_text(ds, "SeriesInstanceUID"),
      sop_uid=_text(ds, "SOPInstanceUID"),
      sop_class_uid=_text(ds, "SOPClassUID"),
      modality=_text(ds, "Modality"),
      manufacturer=_text(ds, "Manufacturer"),
      laterality=laterality,
      laterality_source=laterality_source,
      view=view,
      view_source=view_source,
      pixel_spacing_mm=spacing,
      pixel_spacing_source=spacing_source,
      pixel_spacing_missing=spacing is None,
      photometric=_text(ds, "PhotometricInterpretation"),
      bits_stored=_int(ds, "BitsStored"),
      bits_allocated=_int(ds, "BitsAllocated"),
      pixel_representation=_int(ds, "PixelRepresentation"),
      rows=_int(ds, "Rows"),
      columns=_int(ds, "Columns"),
      transfer_syntax=None if tsyntax is None else str(tsyntax),
  )


# ---------------------------------------------------------------------------
# Reading and validation.
# ---------------------------------------------------------------------------


def _check_truncated(ds: pydicom_dataset.Dataset, name: str) -> None:
  """Raises if the last top-level element holds fewer bytes than declared.

  pydicom reads a cut-off file without complaint; its raw elements keep the
  declared length, so a short final value reveals the truncation.
  """
  raw = getattr(ds, "_dict", None)
  if not raw:
    return
  last = raw[max(raw)]
  length = getattr(last, "length", None)
  value = getattr(last, "value", None)
  if length is None or length == 0xFFFFFFFF or not isinstance(value, bytes):
    return
  if len(value) < length:
    raise DicomError(
        name,
        f"file is truncated: element {last.tag} declares {length} bytes but "
        f"only {len(value)} are present",
    )


def _read(source: Any, *, stop_before_pixels: bool) -> pydicom_dataset.Dataset:
  """Reads a path (or passes a Dataset through), raising DicomError."""
  if isinstance(source, pydicom_dataset.Dataset):
    return source
  name = str(source)
  path = pathlib.Path(source)
  if not path.is_file():
    raise DicomError(name, "no such file")
  try:
    ds = pydicom.dcmread(path, stop_before_pixels=stop_before_pixels)
  except pydicom_errors.InvalidDicomError:
    raise DicomError(
        name,
        "not a DICOM file (no 'DICM' prefix after the 128-byte preamble)",
    ) from None
  except Exception as e:  # pylint: disable=broad-except
    raise DicomError(name, f"unreadable DICOM file ({e})") from e
  _check_truncated(ds, name)
  return ds


def _check_modality(
    ds: pydicom_dataset.Dataset, name: str, allow_non_mg: bool
) -> None:
  """MG modality (or a mammography SOP class) unless `allow_non_mg`."""
  if allow_non_mg:
    return
  modality = _text(ds, "Modality")
  if modality is None and _text(ds, "SOPClassUID") in _MG_SOP_CLASSES:
    return
  if modality != "MG":
    raise DicomError(
        name,
        f"Modality is {modality!r}, not 'MG' (pass allow_non_mg=True to load "
        "it anyway)",
    )


def _decode(ds: pydicom_dataset.Dataset, name: str) -> np.ndarray:
  """Decodes PixelData to a 2-D array of stored values, raising DicomError."""
  if "PixelData" not in ds:
    raise DicomError(name, "no PixelData element (header-only file)")
  for keyword in ("Rows", "Columns", "BitsAllocated", "BitsStored"):
    if ds.get(keyword) is None:
      raise DicomError(name, f"{keyword} is missing; cannot decode PixelData")
  photometric = (_text(ds, "PhotometricInterpretation") or "").upper()
  if photometric not in ("MONOCHROME1", "MONOCHROME2"):
    raise DicomError(
        name,
        f"PhotometricInterpretation {photometric or None!r} is not "
        "supported; expected MONOCHROME1 or MONOCHROME2",
    )
  frames = int(ds.get("NumberOfFrames", 1) or 1)
  if frames != 1:
    raise DicomError(
        name, f"{frames} frames; only single-frame 2-D images are supported"
    )
  file_meta = getattr(ds, "file_meta", None)
  tsyntax = getattr(file_meta, "TransferSyntaxUID", None)
  if tsyntax is None:
    # In-memory datasets may lack file meta; native little endian is the
    # only sensible reading. Work on a copy so the caller's object is kept.
    ds = copy.copy(ds)
    ds.file_meta = pydicom_dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = pydicom_uid.ExplicitVRLittleEndian
    tsyntax = ds.file_meta.TransferSyntaxUID
  tsyntax = pydicom_uid.UID(str(tsyntax))
  if tsyntax.is_compressed:
    try:
      decoder = pydicom_pixels.get_decoder(tsyntax)
    except NotImplementedError:
      raise DicomError(
          name,
          f"transfer syntax {tsyntax} ({tsyntax.name}) has no pixel data "
          "decoder in pydicom",
      ) from None
    if not decoder.is_available:
      options = "; ".join(decoder.missing_dependencies)
      raise DicomError(
          name,
          f"cannot decode {tsyntax.name} pixel data: no codec installed; "
          f"run `{INSTALL_HINT}` (pylibjpeg + pylibjpeg-openjpeg) or "
          f"install one of: {options}",
      )
  try:
    arr = ds.pixel_array
  except Exception as e:  # pylint: disable=broad-except
    message = " ".join(str(e).split())
    raise DicomError(
        name,
        f"cannot decode {tsyntax.name} pixel data ({message}); the file may "
        f"be corrupt or need another codec ({INSTALL_HINT})",
    ) from e
  if arr.ndim != 2:
    raise DicomError(name, f"decoded pixel array has shape {arr.shape}")
  return arr


def read_metadata(source: PathOrDataset) -> DicomMeta:
  """Header facts of a DICOM file without decoding pixels.

  Args:
    source: path, or an in-memory `pydicom.Dataset`.

  Returns:
    `DicomMeta`; works for header-only files (no PixelData).

  Raises:
    DicomError: not a DICOM file, or truncated.
  """
  ds = _read(source, stop_before_pixels=True)
  return metadata_from_dataset(ds, _source_name(source, ds))


def find_dicom_files(folder: str | os.PathLike) -> list[pathlib.Path]:
  """All DICOM files under `folder`, recursively, sorted.

  Accepts `*.dcm` (any case) and extension-less files whose bytes 128-131
  are `DICM`; skips DICOMDIR index files.
  """
  root = pathlib.Path(folder)
  if not root.is_dir():
    raise DicomError(str(folder), "not a directory")
  found = []
  for path in root.rglob("*"):
    if not path.is_file() or path.name.upper() == "DICOMDIR":
      continue
    if path.suffix.lower() == ".dcm":
      found.append(path)
    elif not path.suffix:
      try:
        with open(path, "rb") as f:
          head = f.read(132)
      except OSError:
        continue
      if head[128:132] == b"DICM":
        found.append(path)
  return sorted(found)


# ---------------------------------------------------------------------------
# Geometry: orientation, crop, resize.
# ---------------------------------------------------------------------------


def _block_mean(image: np.ndarray, factor: int) -> np.ndarray:
  """Block average by an integer factor (edges trimmed); for masks only."""
  if factor <= 1:
    return image
  h = image.shape[0] // factor * factor
  w = image.shape[1] // factor * factor
  if h == 0 or w == 0:
    return image
  return image[:h, :w].reshape(h // factor, factor, w // factor, factor).mean(
      axis=(1, 3)
  )


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
  """Otsu's threshold of `values` (maximises between-class variance)."""
  values = np.asarray(values, dtype=np.float64).ravel()
  lo, hi = float(values.min()), float(values.max())
  if hi <= lo:
    return lo
  hist, edges = np.histogram(values, bins=bins, range=(lo, hi))
  centres = (edges[:-1] + edges[1:]) / 2
  w0 = np.cumsum(hist)
  w1 = w0[-1] - w0
  m0 = np.cumsum(hist * centres)
  mean0 = m0 / np.maximum(w0, 1)
  mean1 = (m0[-1] - m0) / np.maximum(w1, 1)
  between = w0 * w1 * (mean0 - mean1) ** 2
  return float(edges[int(np.argmax(between[:-1])) + 1])


def tissue_side(image: np.ndarray) -> str:
  """'left' or 'right': the half of the image holding more tissue signal."""
  small = _block_mean(image, max(1, max(image.shape) // 256))
  half = small.shape[1] // 2
  left = float(small[:, :half].sum())
  right = float(small[:, small.shape[1] - half :].sum())
  return "right" if right > left else "left"


def breast_bbox(
    image: np.ndarray, *, margin: float = 0.01, min_area: float = 0.01
) -> tuple[int, int, int, int] | None:
  """Bounding box (x0, y0, x1, y1), half-open, of the breast in `image`.

  Otsu threshold on a ~512 px copy, binary opening (drops thin lines and
  specks), largest connected component, box grown by `margin` times the
  long side. None if the image is tiny or the component covers less than
  `min_area` of the image (then the full frame should be kept).
  """
  h, w = image.shape
  if min(h, w) < 16:
    return None
  factor = max(1, max(h, w) // 512)
  small = _block_mean(image, factor)
  mask = small > otsu_threshold(small)
  mask = ndimage.binary_opening(mask, iterations=2)
  labels, n = ndimage.label(mask)
  if n == 0:
    return None
  sizes = np.bincount(labels.ravel())[1:]
  best = int(np.argmax(sizes)) + 1
  if sizes[best - 1] < min_area * mask.size:
    return None
  rows, cols = np.nonzero(labels == best)
  pad = int(round(margin * max(h, w)))
  x0 = max(0, cols.min() * factor - pad)
  y0 = max(0, rows.min() * factor - pad)
  x1 = min(w, (cols.max() + 1) * factor + pad)
  y1 = min(h, (rows.max() + 1) * factor + pad)
  # Block means drop the last partial block: extend to the edge if touched.
  if cols.max() + 1 >= small.shape[1]:
    x1 = w
  if rows.max() + 1 >= small.shape[0]:
    y1 = h
  return int(x0), int(y0), int(x1), int(y1)


def resample_matrix(n_in: int, n_out: int) -> sparse.csr_matrix:
  """Sparse `[n_out, n_in]` resampling weights on pixel-centre grids.

  Output pixel j sits at input position `(j + 0.5) * n_in / n_out - 0.5`.
  Shrinking averages the covered input area (box filter); enlarging
  interpolates linearly (edge values repeated).
  """
  s = n_out / n_in
  j = np.arange(n_out)
  if n_out <= n_in:
    a, b = j / s, (j + 1) / s
    k_max = int(np.ceil(1 / s)) + 1
    rows, cols, vals = [], [], []
    for k in range(k_max + 1):
      i = np.floor(a).astype(np.int64) + k
      wgt = (np.minimum(b, i + 1) - np.maximum(a, i)) * s
      ok = (wgt > 1e-12) & (i < n_in)
      rows.append(j[ok])
      cols.append(i[ok])
      vals.append(wgt[ok])
    rows, cols, vals = map(np.concatenate, (rows, cols, vals))
  else:
    src = np.clip((j + 0.5) / s - 0.5, 0, n_in - 1)
    i0 = np.floor(src).astype(np.int64)
    i1 = np.minimum(i0 + 1, n_in - 1)
    f = src - i0
    rows = np.concatenate([j, j])
    cols = np.concatenate([i0, i1])
    vals = np.concatenate([1 - f, f])
  return sparse.csr_matrix((vals, (rows, cols)), shape=(n_out, n_in))


def resize_image(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
  """Resamples `image` `[h, w]` to `shape` (area down, linear up)."""
  h, w = image.shape
  out_h, out_w = shape
  ry = resample_matrix(h, out_h)
  rx = resample_matrix(w, out_w)
  tmp = np.asarray(ry @ image.astype(np.float32))
  return np.asarray(rx @ tmp.T).T.astype(np.float32)


def _target_shape(
    h: int, w: int, resize: int | tuple[int, int]
) -> tuple[tuple[int, int], tuple[int, int]]:
  """(content shape, canvas shape) for a `resize` spec keeping aspect."""
  if isinstance(resize, (int, np.integer)):
    factor = int(resize) / max(h, w)
    content = (max(1, round(h * factor)), max(1, round(w * factor)))
    return content, content
  out_h, out_w = (int(v) for v in resize)
  factor = min(out_h / h, out_w / w)
  content = (
      min(out_h, max(1, round(h * factor))),
      min(out_w, max(1, round(w * factor))),
  )
  return content, (out_h, out_w)


# ---------------------------------------------------------------------------
# Entry point.
# ---------------------------------------------------------------------------


def load_dicom(
    source: PathOrDataset,
    *,
    voi: str = "auto",
    window_index: int = 0,
    orient: bool = True,
    crop: bool = True,
    resize: int | tuple[int, int] | None = None,
    allow_non_mg: bool = False,
) -> Mammogram:
  """Loads a mammogram as float32 `[H, W]` in [0, 1], bright = dense.

  Args:
    source: path to a DICOM file or an in-memory `pydicom.Dataset`.
    voi: 'auto' (VOI LUT Sequence, else window, else min-max), 'lut',
      'window' (these two raise if the file lacks them) or 'none' (min-max
      of the modality values).
    window_index: which of several windows / VOI LUTs to use.
    orient: mirror right breasts so the chest wall is at column 0.
    crop: crop to the breast bounding box (full frame if none is found).
    resize: None; an int long side; or (H, W) to fit into with zero padding
      at the bottom / right.
    allow_non_mg: accept a Modality other than MG.

  Returns:
    `Mammogram` with the image, metadata and geometry.

  Raises:
    DicomError: any unreadable, unsupported or inconsistent input.
  """
  if voi not in VOI_MODES:
    raise ValueError(f"voi must be one of {VOI_MODES}, got {voi!r}")
  ds = _read(source, stop_before_pixels=False)
  name = _source_name(source, ds)
  _check_modality(ds, name, allow_non_mg)
  stored = _decode(ds, name)
  meta = metadata_from_dataset(ds, name)

  values = modality_lut(stored, ds)
  if not np.issubdtype(values.dtype, np.floating):
    values = values.astype(np.float32)
  lut_ok, win_ok = has_voi_lut_sequence(ds), has_window(ds)
  if voi == "lut" and not lut_ok:
    raise DicomError(name, "voi='lut' but the file has no VOI LUT Sequence")
  if voi == "window" and not win_ok:
    raise DicomError(
        name, "voi='window' but the file has no WindowCenter/WindowWidth"
    )
  mode = voi
  if voi == "auto":
    mode = "lut" if lut_ok else "window" if win_ok else "none"
  window = None
  try:
    if mode == "lut":
      item = ds.VOILUTSequence[window_index]
      bits = int(item.LUTDescriptor[2])
      out = apply_voi_lut_sequence(
          values, item.LUTDescriptor, _lut_values(item, ds)
      )
      image = out.astype(np.float32) / np.float32(2**bits - 1)
    elif mode == "window":
      window = window_params(ds, window_index)
      image = apply_windowing(values.astype(np.float32), *window, 0.0, 1.0)
    else:
      image = normalise_min_max(values.astype(np.float32))
  except (IndexError, ValueError) as e:
    raise DicomError(name, f"cannot apply VOI ({e})") from e
  image = np.clip(image.astype(np.float32), 0.0, 1.0)
  inverted = needs_inversion(ds)
  if inverted:
    image = invert(image)

  rows, cols = image.shape
  laterality, inferred = meta.laterality, False
  flipped = False
  if orient:
    if laterality is None:
      laterality = "R" if tissue_side(image) == "right" else "L"
      inferred = True
    flipped = laterality == "R"
    if flipped:
      image = image[:, ::-1]

  box = (0, 0, cols, rows)
  if crop:
    found = breast_bbox(image)
    if found is not None:
      x0, y0, x1, y1 = found
      image = image[y0:y1, x0:x1]
      # Store the box in the stored (unflipped) pixel grid.
      box = (cols - x1, y0, cols - x0, y1) if flipped else found

  scale = (1.0, 1.0)
  if resize is not None:
    h, w = image.shape
    content, canvas = _target_shape(h, w, resize)
    image = resize_image(image, content)
    scale = (content[0] / h, content[1] / w)
    if canvas != content:
      padded = np.zeros(canvas, dtype=np.float32)
      padded[: content[0], : content[1]] = image
      image = padded

  return Mammogram(
      image=np.ascontiguousarray(np.clip(image, 0.0, 1.0), dtype=np.float32),
      meta=meta,
      laterality=laterality,
      laterality_inferred=inferred,
      flipped=flipped,
      crop_box=tuple(int(v) for v in box),
      scale=scale,
      stored_shape=(rows, cols),
      voi=mode,
      window=window,
      inverted=inverted,
  )

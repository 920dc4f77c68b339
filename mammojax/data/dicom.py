"""DICOM mammogram ingestion: stored pixels -> float32 image in [0, 1].

This module reads and validates DICOM files (`DicomError`), finds them in
folders and runs the `load_dicom` pipeline. The steps live in sibling
modules, one concept each, and their public names are re-exported here
(`__all__`), so `dicom.<name>` works for all of them:

- `mammojax.data.dicom_header`: `DicomMeta`, laterality, view, pixel spacing
  (step 1's metadata).
- `mammojax.data.voi`: Modality LUT, VOI LUT / windowing, display polarity
  (steps 2-4).
- `mammojax.data.breast_region`: chest-wall side, breast box (steps 5-6).
- `mammojax.data.resample`: area / linear resampling (step 7).

Pipeline of `load_dicom` (each step is also a public pure function):

1. read (path or in-memory `pydicom.Dataset`, same code path), check Modality
   (MG unless `allow_non_mg`), PixelData and codec; decode with pydicom.
2. Modality LUT: Modality LUT Sequence or RescaleSlope/RescaleIntercept.
3. VOI: VOI LUT Sequence or windowing (LINEAR, LINEAR_EXACT, SIGMOID; PS3.3
   C.11.2), mapped to [0, 1] over the VOI output range; without a VOI the
   image is min-max normalised over its own values.
4. Display polarity (bright = dense, MONOCHROME2 convention). The image is
   inverted once if PhotometricInterpretation is MONOCHROME1 *or*
   PresentationLUTShape is INVERSE, never twice (MONOCHROME1 + INVERSE, e.g.
   Hologic, is one inversion; the `voi` module docstring gives the reading
   of PS3.3 C.8.11.1.1).
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
from typing import Any, Sequence
import warnings

import numpy as np
import pydicom
from pydicom import dataset as pydicom_dataset
from pydicom import errors as pydicom_errors
from pydicom import pixels as pydicom_pixels
from pydicom import uid as pydicom_uid

# The pipeline steps, one module per concept. Their public names are
# re-exported (`__all__`), so `dicom.<name>` keeps working.
from mammojax.data.breast_region import breast_bbox
from mammojax.data.breast_region import otsu_threshold
from mammojax.data.breast_region import tissue_side
from mammojax.data.dicom_header import DicomMeta
from mammojax.data.dicom_header import metadata_from_dataset
from mammojax.data.dicom_header import parse_side_and_view
from mammojax.data.dicom_header import text_value
from mammojax.data.resample import resample_matrix
from mammojax.data.resample import resize_image
from mammojax.data.resample import target_shape
from mammojax.data.voi import VOI_FUNCTIONS
from mammojax.data.voi import apply_lut
from mammojax.data.voi import apply_rescale
from mammojax.data.voi import apply_voi_lut_sequence
from mammojax.data.voi import apply_windowing
from mammojax.data.voi import has_voi_lut_sequence
from mammojax.data.voi import has_window
from mammojax.data.voi import invert
from mammojax.data.voi import lut_dtype
from mammojax.data.voi import lut_values
from mammojax.data.voi import modality_lut
from mammojax.data.voi import needs_inversion
from mammojax.data.voi import normalise_min_max
from mammojax.data.voi import processing_display
from mammojax.data.voi import stored_range
from mammojax.data.voi import voi_lut
from mammojax.data.voi import window_output_range
from mammojax.data.voi import window_params

__all__ = [
    # Defined here.
    "DicomError",
    "INSTALL_HINT",
    "Mammogram",
    "PathOrDataset",
    "VOI_MODES",
    "ACCEPT_RULE_KINDS",
    "FOR_PROCESSING_MODES",
    "accept_reason",
    "check_accept_rules",
    "codec_hint",
    "find_dicom_files",
    "load_dicom",
    "read_dataset",
    "read_metadata",
    # mammojax.data.dicom_header
    "DicomMeta",
    "metadata_from_dataset",
    "parse_side_and_view",
    # mammojax.data.voi
    "VOI_FUNCTIONS",
    "apply_lut",
    "apply_rescale",
    "apply_voi_lut_sequence",
    "apply_windowing",
    "has_voi_lut_sequence",
    "has_window",
    "invert",
    "lut_dtype",
    "modality_lut",
    "needs_inversion",
    "normalise_min_max",
    "processing_display",
    "stored_range",
    "voi_lut",
    "window_output_range",
    "window_params",
    # mammojax.data.breast_region
    "breast_bbox",
    "otsu_threshold",
    "tissue_side",
    # mammojax.data.resample
    "resample_matrix",
    "resize_image",
]

PathOrDataset = str | os.PathLike | pydicom_dataset.Dataset

VOI_MODES = ("auto", "lut", "window", "processing", "none")
INSTALL_HINT = "pip install 'mammojax[dicom]'"

# SOP classes that are mammograms even when Modality is missing.
ACCEPT_RULE_KINDS = ("modality", "sop_class", "body_part")
FOR_PROCESSING_MODES = ("display", "min_max")
_MG_SOP_CLASSES = frozenset({
    "1.2.840.10008.5.1.4.1.1.1.2",  # Digital Mammography - For Presentation
    "1.2.840.10008.5.1.4.1.1.1.2.1",  # Digital Mammography - For Processing
    "1.2.840.10008.5.1.4.1.1.13.1.3",  # Breast Tomosynthesis
})


class DicomError(ValueError):
  """A DICOM file that cannot be turned into a mammogram image.

  The message is `"<source>: <reason>"`; both parts are also attributes.
  """

  def __init__(self, source: str, reason: str):
    super().__init__(f"{source}: {reason}")
    self.source = source
    self.reason = reason


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
    voi: 'lut', 'window', 'processing' (the FOR PROCESSING display
      transform, `voi.processing_display`) or 'none' (min-max), the VOI
      actually applied.
    window: (center, width, function) when `voi == 'window'`.
    inverted: True if MONOCHROME1 / INVERSE polarity (or, for 'processing',
      a +1 PixelIntensityRelationshipSign) was undone.
    accepted_by: why the file counts as a mammogram: 'MG', 'mammography
      SOP class', an `accept_non_mg` rule or 'allow_non_mg'.
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
  accepted_by: str = "MG"

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
# Reading and validation.
# ---------------------------------------------------------------------------


def _source_name(source: Any, ds: pydicom_dataset.Dataset | None) -> str:
  """Human-readable name of a path or in-memory dataset for messages."""
  if isinstance(source, pydicom_dataset.Dataset):
    filename = getattr(source, "filename", None)
    if isinstance(filename, str) and filename:
      return filename
    sop = text_value(source, "SOPInstanceUID")
    return f"<in-memory Dataset SOPInstanceUID={sop}>"
  return str(source)


_TRUNCATED_WARNINGS = ("End of file reached", "Expected sequence item",
                       "Unexpected end of file")


def _check_truncated(ds: pydicom_dataset.Dataset, name: str,
                     file_size: int | None = None) -> None:
  """Raises if the last top-level element holds fewer bytes than declared.

  pydicom reads a cut-off file without complaint; its raw elements keep the
  declared length, so a short final value (or, for a value whose reading
  was deferred, a value that would end past the end of the file) reveals
  the truncation.
  """
  raw = getattr(ds, "_dict", None)
  if not raw:
    return
  last = raw[max(raw)]
  length = getattr(last, "length", None)
  if length is None or length == 0xFFFFFFFF:
    return
  value = getattr(last, "value", None)
  if isinstance(value, bytes):
    present = len(value)
  elif value is None and file_size is not None and getattr(
      last, "value_tell", None) is not None:
    present = max(file_size - last.value_tell, 0)
  else:
    return
  if present < length:
    raise DicomError(
        name,
        f"file is truncated: element {last.tag} declares {length} bytes but "
        f"only {present} are present",
    )


def _check_fragments(ds: pydicom_dataset.Dataset, name: str) -> None:
  """Raises if encapsulated PixelData items declare more bytes than follow.

  Walks the Basic Offset Table and fragment items (PS3.5 A.4): each item is
  tag (FFFE,E000) + 4-byte length + value; a cut inside a fragment leaves an
  item whose declared length runs past the end of the value.
  """
  if "PixelData" not in ds:
    return
  elem = ds["PixelData"]
  value = elem.value
  if not getattr(elem, "is_undefined_length", False) or not isinstance(
      value, bytes):
    return
  offset, index = 0, 0
  while offset + 8 <= len(value):
    group, element, length = np.frombuffer(value, "<u2", 2, offset).tolist() + [
        int(np.frombuffer(value, "<u4", 1, offset + 4)[0])]
    if (group, element) == (0xFFFE, 0xE0DD):
      return
    if (group, element) != (0xFFFE, 0xE000):
      raise DicomError(
          name,
          f"file is truncated or corrupt: encapsulated PixelData item {index} "
          f"at byte {offset} has tag ({group:04X},{element:04X}), not a "
          "fragment item (FFFE,E000)")
    if offset + 8 + length > len(value):
      raise DicomError(
          name,
          f"file is truncated: encapsulated PixelData fragment {index} "
          f"declares {length} bytes but only {len(value) - offset - 8} are "
          "present")
    offset += 8 + length
    index += 1


def read_dataset(
    source: PathOrDataset, *, stop_before_pixels: bool = False
) -> pydicom_dataset.Dataset:
  """Reads a DICOM file (or passes a Dataset through), raising DicomError.

  Truncated files are diagnosed as such on both paths: a value shorter than
  its declared length, pydicom's end-of-file warnings (a file cut inside an
  encapsulated PixelData makes pydicom return an EMPTY dataset with only a
  warning), an empty dataset from a non-empty file, and encapsulated
  fragments shorter than declared. With ``stop_before_pixels`` the whole
  structure is still parsed (values over 1 KB are skipped, not loaded), so a
  header-only read notices a cut in the pixel data too.
  """
  if isinstance(source, pydicom_dataset.Dataset):
    return source
  name = str(source)
  path = pathlib.Path(source)
  if not path.is_file():
    raise DicomError(name, "no such file")
  size = path.stat().st_size
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    try:
      if stop_before_pixels:
        ds = pydicom.dcmread(path, defer_size="1 KB")
      else:
        ds = pydicom.dcmread(path)
    except pydicom_errors.InvalidDicomError:
      raise DicomError(
          name,
          "not a DICOM file (no 'DICM' prefix after the 128-byte preamble)",
      ) from None
    except EOFError as e:
      raise DicomError(name, f"file is truncated ({e})") from e
    except Exception as e:  # pylint: disable=broad-except
      raise DicomError(name, f"unreadable DICOM file ({e})") from e
  for w in caught:
    message = str(w.message)
    if any(key in message for key in _TRUNCATED_WARNINGS):
      raise DicomError(
          name, f"file is truncated ({size} bytes; pydicom: {message})")
  if not len(ds) and size > 132:
    raise DicomError(
        name,
        f"file is truncated or corrupt: pydicom read no data element from "
        f"{size} bytes")
  _check_truncated(ds, name, size)
  if not stop_before_pixels:
    _check_fragments(ds, name)
  return ds


def accept_reason(
    ds: pydicom_dataset.Dataset, accept_non_mg: Sequence[str] = ()
) -> str | None:
  """Why ``ds`` counts as a mammogram, or None if it does not.

  'MG' for Modality MG, 'mammography SOP class' for a missing Modality with
  a mammography SOP class; else the first matching rule of
  ``accept_non_mg`` (see ``check_accept_rules``), returned as written.
  """
  modality = (text_value(ds, "Modality") or "").upper()
  sop = text_value(ds, "SOPClassUID") or ""
  if modality == "MG":
    return "MG"
  if not modality and sop in _MG_SOP_CLASSES:
    return "mammography SOP class"
  body = (text_value(ds, "BodyPartExamined") or "").upper()
  for rule in accept_non_mg:
    kind, _, value = rule.partition(":")
    if ((kind == "modality" and modality == value.upper())
        or (kind == "sop_class" and sop == value)
        or (kind == "body_part" and body == value.upper())):
      return rule
  return None


def check_accept_rules(accept_non_mg: Sequence[str], where: str) -> tuple[str, ...]:
  """Validates ``accept_non_mg`` rules; returns them as a tuple.

  Each rule is ``'modality:<code>'`` (e.g. ``'modality:OT'``,
  ``'modality:RG'``), ``'sop_class:<UID>'`` (e.g. Secondary Capture
  ``'sop_class:1.2.840.10008.5.1.4.1.1.7'``) or ``'body_part:<value>'``
  (e.g. ``'body_part:BREAST'`` for BodyPartExamined BREAST).

  Raises:
    ValueError: a malformed rule (names ``where``, e.g. the config key).
  """
  if isinstance(accept_non_mg, str):
    accept_non_mg = (accept_non_mg,) if accept_non_mg else ()
  rules = tuple(accept_non_mg)
  for rule in rules:
    kind, sep, value = str(rule).partition(":")
    if not sep or kind not in ACCEPT_RULE_KINDS or not value:
      raise ValueError(
          f"{where}: rule {rule!r} is not 'modality:<code>', "
          "'sop_class:<UID>' or 'body_part:<value>' (e.g. 'modality:OT', "
          "'sop_class:1.2.840.10008.5.1.4.1.1.7', 'body_part:BREAST')")
  return rules


def _check_modality(
    ds: pydicom_dataset.Dataset, name: str, allow_non_mg: bool,
    accept_non_mg: Sequence[str],
) -> str:
  """MG modality (or a mammography SOP class, or an accept rule)."""
  reason = accept_reason(ds, accept_non_mg)
  if reason is not None:
    return reason
  if allow_non_mg:
    return "allow_non_mg"
  modality = text_value(ds, "Modality")
  sop = text_value(ds, "SOPClassUID")
  sop_name = pydicom_uid.UID(sop).name if sop else None
  body = text_value(ds, "BodyPartExamined")
  raise DicomError(
      name,
      f"Modality is {modality!r}, not 'MG' (SOP class {sop_name or sop!r}, "
      f"BodyPartExamined {body!r}); to accept such files set "
      "config.dataset.accept_non_mg, e.g. ('modality:"
      f"{modality or 'OT'}',) or ('body_part:BREAST',) (load_dicom(..., "
      "accept_non_mg=...))",
  )


# Transfer syntax UID -> what decodes it (pydicom 3's decoder plugins).
_JPEG2000 = (
    "Pillow built with OpenJPEG (a core dependency, so usually present) or "
    f"pylibjpeg + pylibjpeg-openjpeg (`{INSTALL_HINT}`)")
_HTJ2K = f"pylibjpeg + pylibjpeg-openjpeg (`{INSTALL_HINT}`)"
_JPEG_LS = (
    "pyjpegls (installed with highdicom, a core dependency) or pylibjpeg + "
    f"pylibjpeg-libjpeg (`{INSTALL_HINT}`)")
_JPEG_LOSSLESS = (
    f"pylibjpeg + pylibjpeg-libjpeg (`{INSTALL_HINT}`) or gdcm>=3.0.10; "
    "Pillow does not decode lossless JPEG")
_JPEG_LOSSY = (
    "Pillow (a core dependency; 8-bit only) or pylibjpeg + "
    f"pylibjpeg-libjpeg (`{INSTALL_HINT}`; 12-bit too)")
_CODECS = {
    "1.2.840.10008.1.2.4.90": _JPEG2000,
    "1.2.840.10008.1.2.4.91": _JPEG2000,
    "1.2.840.10008.1.2.4.201": _HTJ2K,
    "1.2.840.10008.1.2.4.202": _HTJ2K,
    "1.2.840.10008.1.2.4.203": _HTJ2K,
    "1.2.840.10008.1.2.4.80": _JPEG_LS,
    "1.2.840.10008.1.2.4.81": _JPEG_LS,
    "1.2.840.10008.1.2.4.57": _JPEG_LOSSLESS,
    "1.2.840.10008.1.2.4.70": _JPEG_LOSSLESS,
    "1.2.840.10008.1.2.4.50": _JPEG_LOSSY,
    "1.2.840.10008.1.2.4.51": _JPEG_LOSSY,
    "1.2.840.10008.1.2.5": (
        "nothing beyond numpy (pydicom's own RLE decoder; pylibjpeg-rle is "
        "faster)"),
}


def codec_hint(transfer_syntax: str) -> str:
  """What to install to decode ``transfer_syntax`` (docs/datasets.md)."""
  uid = pydicom_uid.UID(str(transfer_syntax))
  needed = _CODECS.get(str(uid))
  if needed is None:
    return f"no decoder of pydicom's handles {uid.name}"
  return f"{uid.name} needs {needed}"


def _decode(ds: pydicom_dataset.Dataset, name: str) -> np.ndarray:
  """Decodes PixelData to a 2-D array of stored values, raising DicomError."""
  if "PixelData" not in ds:
    raise DicomError(name, "no PixelData element (header-only file)")
  for keyword in ("Rows", "Columns", "BitsAllocated", "BitsStored"):
    if ds.get(keyword) is None:
      raise DicomError(name, f"{keyword} is missing; cannot decode PixelData")
  photometric = (text_value(ds, "PhotometricInterpretation") or "").upper()
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
      raise DicomError(
          name,
          f"cannot decode {tsyntax.name} pixel data: no codec installed; "
          f"{codec_hint(tsyntax)}",
      )
  try:
    arr = ds.pixel_array
  except Exception as e:  # pylint: disable=broad-except
    message = " ".join(str(e).split())
    raise DicomError(
        name,
        f"cannot decode {tsyntax.name} pixel data ({message}); the file may "
        f"be corrupt or need another codec ({codec_hint(tsyntax)})",
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
  ds = read_dataset(source, stop_before_pixels=True)
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
    accept_non_mg: Sequence[str] = (),
    for_processing: str = "display",
) -> Mammogram:
  """Loads a mammogram as float32 `[H, W]` in [0, 1], bright = dense.

  Args:
    source: path to a DICOM file or an in-memory `pydicom.Dataset`.
    voi: 'auto' (VOI LUT Sequence, else window, else for a FOR PROCESSING
      image the display transform of `for_processing`, else min-max),
      'lut', 'window' (these two raise if the file lacks them),
      'processing' (the FOR PROCESSING display transform on any image) or
      'none' (min-max of the modality values).
    window_index: which of several windows / VOI LUTs to use.
    orient: mirror right breasts so the chest wall is at column 0.
    crop: crop to the breast bounding box (full frame if none is found).
    resize: None; an int long side; or (H, W) to fit into with zero padding
      at the bottom / right.
    allow_non_mg: accept any Modality.
    accept_non_mg: rules that accept non-MG files ('modality:OT',
      'sop_class:<UID>', 'body_part:BREAST'; `check_accept_rules`), e.g.
      digitised films stored as Secondary Capture.
    for_processing: what 'auto' does with a FOR PROCESSING image without
      VOI: 'display' (`voi.processing_display`: log for LIN data, polarity
      from PixelIntensityRelationshipSign, a percentile window inside the
      breast) or 'min_max' (as a presentation image without a window).

  Returns:
    `Mammogram` with the image, metadata and geometry.

  Raises:
    DicomError: any unreadable, unsupported or inconsistent input.
  """
  if voi not in VOI_MODES:
    raise ValueError(f"voi must be one of {VOI_MODES}, got {voi!r}")
  if for_processing not in FOR_PROCESSING_MODES:
    raise ValueError(f"for_processing must be one of {FOR_PROCESSING_MODES},"
                     f" got {for_processing!r}")
  accept_non_mg = check_accept_rules(accept_non_mg, "accept_non_mg")
  ds = read_dataset(source)
  name = _source_name(source, ds)
  accepted_by = _check_modality(ds, name, allow_non_mg, accept_non_mg)
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
    if (mode == "none" and for_processing == "display"
        and meta.presentation_intent == "FOR PROCESSING"):
      mode = "processing"
  window = None
  inverted = None
  try:
    if mode == "lut":
      item = ds.VOILUTSequence[window_index]
      bits = int(item.LUTDescriptor[2])
      out = apply_voi_lut_sequence(
          values, item.LUTDescriptor, lut_values(item, ds)
      )
      image = out.astype(np.float32) / np.float32(2**bits - 1)
    elif mode == "window":
      window = window_params(ds, window_index)
      image = apply_windowing(values.astype(np.float32), *window, 0.0, 1.0)
    elif mode == "processing":
      image, inverted = processing_display(values, ds)
    else:
      image = normalise_min_max(values.astype(np.float32))
  except (IndexError, ValueError) as e:
    raise DicomError(name, f"cannot apply VOI ({e})") from e
  image = np.clip(image.astype(np.float32), 0.0, 1.0)
  if inverted is None:  # The processing transform orients by itself.
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
    content, canvas = target_shape(h, w, resize)
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
      inverted=bool(inverted),
      accepted_by=accepted_by,
  )

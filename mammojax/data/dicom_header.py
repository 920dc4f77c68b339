"""DICOM header facts (`DicomMeta`) of a dataset, without decoding pixels.

Identifiers (patient, study, series, SOP instance and class), modality,
manufacturer and pixel format, plus the three facts mammography needs:

- laterality: ImageLaterality, Laterality, else parsed from PatientID /
  SeriesDescription (`parse_side_and_view`, e.g. `..._LEFT_CC`, `P1_R_MLO`);
- view (CC, MLO, ...; ML -> MLO): ViewPosition, ViewCodeSequence,
  PatientOrientation, else parsed from PatientID / SeriesDescription;
- pixel spacing in mm, (row, column): ImagerPixelSpacing, else PixelSpacing;
- presentation intent (FOR PRESENTATION / FOR PROCESSING, from
  PresentationIntentType or the SOP class), PixelIntensityRelationship
  (LIN / LOG / OTHER) and BodyPartExamined, which decide the display
  transform and whether a non-MG file is accepted (`mammojax.data.dicom`).

`text_value` and `float_values` read single attribute values; the sibling
DICOM modules (`mammojax.data.dicom`, `mammojax.data.voi`) use them too.
`mammojax.data.dicom.read_metadata` reads a file's header into `DicomMeta`.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import numpy as np
from pydicom import dataset as pydicom_dataset
from pydicom import multival


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
  presentation_intent: str | None = None
  pixel_intensity_relationship: str | None = None
  body_part: str | None = None


# ---------------------------------------------------------------------------
# Attribute values.
# ---------------------------------------------------------------------------


def text_value(ds: pydicom_dataset.Dataset, keyword: str) -> str | None:
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


def float_values(value: Any) -> list[float]:
  """A DS value with VM >= 1 as a list of floats."""
  if isinstance(value, (list, tuple, multival.MultiValue)):
    return [float(v) for v in value]
  return [float(value)]


# ---------------------------------------------------------------------------
# Laterality, view, pixel spacing.
# ---------------------------------------------------------------------------


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
    value = (text_value(ds, keyword) or "").upper()
    if value in ("L", "R"):
      return value, keyword
  for keyword in ("PatientID", "SeriesDescription"):
    side, _ = parse_side_and_view(text_value(ds, keyword))
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
  position = (text_value(ds, "ViewPosition") or "").upper()
  if position in _VIEW_ALIASES:
    return _VIEW_ALIASES[position], "ViewPosition"
  view = _view_from_code_sequence(ds)
  if view:
    return view, "ViewCodeSequence"
  orientation = (text_value(ds, "PatientOrientation") or "").upper()
  if orientation in _VIEW_ALIASES:
    return _VIEW_ALIASES[orientation], "PatientOrientation"
  for keyword in ("PatientID", "SeriesDescription"):
    _, view = parse_side_and_view(text_value(ds, keyword))
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
      values = float_values(value)
    except (TypeError, ValueError):
      continue
    if len(values) == 1:
      values = values * 2
    if len(values) == 2 and all(np.isfinite(values)) and min(values) > 0:
      return (values[0], values[1]), keyword
  return None, None


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
      patient_id=text_value(ds, "PatientID"),
      study_uid=text_value(ds, "StudyInstanceUID"),
      series_uid=text_value(ds, "SeriesInstanceUID"),
      sop_uid=text_value(ds, "SOPInstanceUID"),
      sop_class_uid=text_value(ds, "SOPClassUID"),
      modality=text_value(ds, "Modality"),
      manufacturer=text_value(ds, "Manufacturer"),
      laterality=laterality,
      laterality_source=laterality_source,
      view=view,
      view_source=view_source,
      pixel_spacing_mm=spacing,
      pixel_spacing_source=spacing_source,
      pixel_spacing_missing=spacing is None,
      photometric=text_value(ds, "PhotometricInterpretation"),
      bits_stored=_int(ds, "BitsStored"),
      bits_allocated=_int(ds, "BitsAllocated"),
      pixel_representation=_int(ds, "PixelRepresentation"),
      rows=_int(ds, "Rows"),
      columns=_int(ds, "Columns"),
      transfer_syntax=None if tsyntax is None else str(tsyntax),
      presentation_intent=presentation_intent(ds),
      pixel_intensity_relationship=(
          text_value(ds, "PixelIntensityRelationship") or "").upper() or None,
      body_part=(text_value(ds, "BodyPartExamined") or "").upper() or None,
  )


def presentation_intent(ds: pydicom_dataset.Dataset) -> str | None:
  """PresentationIntentType ('FOR PRESENTATION' / 'FOR PROCESSING') or None.

  Falls back to the SOP class (the DX / MG / IO "For Processing" classes end
  in '.1') when the attribute is missing.
  """
  value = text_value(ds, "PresentationIntentType")
  if value:
    return value.upper()
  sop = text_value(ds, "SOPClassUID") or ""
  if sop in _FOR_PROCESSING_CLASSES:
    return "FOR PROCESSING"
  if sop in _FOR_PRESENTATION_CLASSES:
    return "FOR PRESENTATION"
  return None


_FOR_PROCESSING_CLASSES = frozenset({
    "1.2.840.10008.5.1.4.1.1.1.1.1",  # DX For Processing
    "1.2.840.10008.5.1.4.1.1.1.2.1",  # Digital Mammography For Processing
    "1.2.840.10008.5.1.4.1.1.1.3.1",  # Intra-oral For Processing
})
_FOR_PRESENTATION_CLASSES = frozenset({
    "1.2.840.10008.5.1.4.1.1.1.1",
    "1.2.840.10008.5.1.4.1.1.1.2",
    "1.2.840.10008.5.1.4.1.1.1.3",
})


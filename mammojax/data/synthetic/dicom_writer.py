"""DICOM output: MG "For Presentation" datasets and Part 10 files.

Stored pixels are wrapped in a "Digital Mammography X-Ray Image - For
Presentation" dataset with deterministic UIDs (seed, patient, image), view
codes, pixel spacing, photometric interpretation and VOI window.

The datasets follow the Digital Mammography X-Ray Image IOD (PS3.3 A.26) as
David Clunie's validator ``dciodvfy`` (Debian package ``dicom3tools``)
checks it, with 0 errors (``tests/data/synthetic_dicom_conformance_test.py``):
General Anatomy Mandatory Macro (Anatomic Region Sequence = SCT 76752008
"Breast"), Image Laterality only (the General Series Laterality is Type 2C
and must be absent when Image Laterality is sent), View Code Sequence with
SNOMED CT codes (SCT 399162004 cranio-caudal, 399368009 medio-lateral
oblique, CID 4014) and an empty View Modifier Code Sequence, DX Image
LossyImageCompression "00", Mammography Image PositionerType "MAMMOGRAPHIC"
and OrganExposed "BREAST", an empty Acquisition Context Sequence.
"""

import copy
import os
import pathlib

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from mammojax.data.synthetic.layout import ImageSpec
from mammojax.data.synthetic.planning import _BreastPlan

MG_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.2"
# SNOMED CT codes (scheme "SCT", PS3.16 CID 4014 View for Mammography).
_SNOMED_VIEW = {"CC": ("399162004", "cranio-caudal"),
                "MLO": ("399368009", "medio-lateral oblique")}
_BREAST = ("76752008", "Breast")  # CID 4031 Common Anatomic Regions.


def _uid(spec: ImageSpec, *parts: str) -> str:
  """A deterministic UID from the seed, patient and `parts`."""
  return generate_uid(entropy_srcs=["mammojax-synthetic", str(spec.seed),
                                    spec.patient_id, *parts])


def _code(value: str, meaning: str, scheme: str = "SCT") -> Dataset:
  """A Code Sequence item (CodeValue, CodingSchemeDesignator, CodeMeaning)."""
  item = Dataset()
  item.CodeValue = value
  item.CodingSchemeDesignator = scheme
  item.CodeMeaning = meaning
  return item


def _make_dataset(spec: ImageSpec, plan: _BreastPlan, pix: np.ndarray,
                  center: float, width: float, function: str) -> Dataset:
  """Wraps stored pixels [H, W] uint16 in an MG For Presentation dataset."""
  sop_uid = _uid(spec, spec.image_id, "sop")
  meta = FileMetaDataset()
  meta.MediaStorageSOPClassUID = MG_FOR_PRESENTATION
  meta.MediaStorageSOPInstanceUID = sop_uid
  meta.TransferSyntaxUID = ExplicitVRLittleEndian
  meta.ImplementationClassUID = pydicom.uid.PYDICOM_IMPLEMENTATION_UID
  meta.ImplementationVersionName = "MAMMOJAX_SYN1"
  ds = Dataset()
  ds.file_meta = meta
  ds.SpecificCharacterSet = "ISO_IR 100"
  ds.ImageType = ["DERIVED", "PRIMARY", ""]
  ds.SOPClassUID = MG_FOR_PRESENTATION
  ds.SOPInstanceUID = sop_uid
  ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20240101"
  ds.StudyTime = ds.SeriesTime = ds.ContentTime = "120000"
  ds.AccessionNumber = ""
  ds.Modality = "MG"
  ds.PresentationIntentType = "FOR PRESENTATION"
  ds.Manufacturer = "mammojax synthetic"
  ds.ReferringPhysicianName = ""
  ds.PatientName = f"Synthetic^{spec.patient_id}"
  ds.PatientID = spec.patient_id
  ds.PatientBirthDate = ""
  ds.PatientSex = "F"
  ds.BodyPartExamined = "BREAST"
  ds.StudyInstanceUID = _uid(spec, "study")
  ds.SeriesInstanceUID = _uid(spec, spec.image_id, "series")
  ds.StudyID = "1"
  ds.SeriesNumber = 1
  ds.InstanceNumber = spec.index + 1
  ds.ImageLaterality = spec.laterality
  ds.ViewPosition = spec.view
  ds.ViewCodeSequence = [_code(*_SNOMED_VIEW[spec.view])]
  ds.ViewCodeSequence[0].ViewModifierCodeSequence = []
  ds.AnatomicRegionSequence = [_code(*_BREAST)]
  ds.AcquisitionContextSequence = []
  ds.PositionerType = "MAMMOGRAPHIC"
  ds.OrganExposed = "BREAST"
  ds.LossyImageCompression = "00"
  ds.PatientOrientation = ["P", "L"] if spec.laterality == "L" else ["A", "R"]
  ds.BurnedInAnnotation = "NO"
  ds.BreastImplantPresent = "NO"
  ds.PartialView = "NO"
  ds.DetectorType = "DIRECT"
  ds.ImagerPixelSpacing = [plan.spacing, plan.spacing]
  ds.PixelSpacing = [plan.spacing, plan.spacing]
  ds.BodyPartThickness = round(plan.thickness, 1)
  ds.SamplesPerPixel = 1
  mono1 = plan.monochrome1
  ds.PhotometricInterpretation = "MONOCHROME1" if mono1 else "MONOCHROME2"
  ds.PresentationLUTShape = "INVERSE" if mono1 else "IDENTITY"
  ds.PixelIntensityRelationship = "LOG"
  ds.PixelIntensityRelationshipSign = 1 if mono1 else -1
  ds.Rows, ds.Columns = pix.shape
  ds.BitsAllocated = 16
  ds.BitsStored = plan.bits
  ds.HighBit = plan.bits - 1
  ds.PixelRepresentation = 0
  ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "US"
  ds.WindowCenter = center
  ds.WindowWidth = width
  ds.VOILUTFunction = function
  ds.WindowCenterWidthExplanation = "synthetic"
  ds.PixelData = np.ascontiguousarray(pix, dtype="<u2").tobytes()
  return ds


def write_dicom(path: str | os.PathLike, ds: Dataset) -> None:
  """Writes `ds` as a DICOM Part 10 file (Explicit VR Little Endian)."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  ds.save_as(path, enforce_file_format=True)


MG_FOR_PROCESSING = "1.2.840.10008.5.1.4.1.1.1.2.1"


def for_processing(ds: Dataset, relationship: str = "LIN") -> Dataset:
  """A "For Processing" version of a synthetic For Presentation dataset.

  What a detector's raw output looks like: SOP class Digital Mammography
  X-Ray Image - For Processing, PresentationIntentType FOR PROCESSING and no
  VOI window. ``relationship`` 'LOG' keeps the stored values (log
  attenuation, as written); 'LIN' stores values proportional to the X-ray
  intensity behind the breast, ``max * exp(-4 * a)`` with ``a`` the
  presentation values scaled to [0, 1] (bright = dense), as MONOCHROME2 with
  PixelIntensityRelationshipSign +1 (lower values = less intensity), so the
  unattenuated background is the brightest part, as in raw detector data.

  Args:
    ds: a dataset of `generate_image` (not modified).
    relationship: 'LIN' or 'LOG'.
  """
  if relationship not in ("LIN", "LOG"):
    raise ValueError(f"relationship must be 'LIN' or 'LOG', got "
                     f"{relationship!r}")
  out = copy.deepcopy(ds)
  sop_uid = generate_uid(entropy_srcs=[str(ds.SOPInstanceUID), "processing",
                                       relationship])
  out.SOPClassUID = out.file_meta.MediaStorageSOPClassUID = MG_FOR_PROCESSING
  out.SOPInstanceUID = out.file_meta.MediaStorageSOPInstanceUID = sop_uid
  out.PresentationIntentType = "FOR PROCESSING"
  out.ImageType = ["ORIGINAL", "PRIMARY", ""]
  for keyword in ("WindowCenter", "WindowWidth", "VOILUTFunction",
                  "WindowCenterWidthExplanation"):
    if keyword in out:
      delattr(out, keyword)
  if relationship == "LIN":
    max_value = 2**int(ds.BitsStored) - 1
    a = ds.pixel_array.astype(np.float64) / max_value
    if str(ds.PhotometricInterpretation) == "MONOCHROME1":
      a = 1.0 - a
    lin = np.rint(max_value * np.exp(-4.0 * a)).astype(np.uint16)
    out.PixelData = np.ascontiguousarray(lin, dtype="<u2").tobytes()
    out.PhotometricInterpretation = "MONOCHROME2"
    out.PresentationLUTShape = "IDENTITY"
    out.PixelIntensityRelationship = "LIN"
    out.PixelIntensityRelationshipSign = 1
  return out

"""Helpers that build miniature dataset download trees for the parser tests.

CSV rows are copied byte-exactly from the real files in tests/testdata; the
DICOMs are tiny generated stand-ins (or header-only files declaring the real
image size) carrying the UIDs and header fields the parsers read.
"""

import pathlib

import numpy as np
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

TESTDATA = pathlib.Path(__file__).resolve().parents[2] / 'testdata'


def csv_records(path: pathlib.Path, sep: bytes = b'\r\n') -> list[bytes]:
  """[header, record 0, record 1, ...] of a CSV file, bytes kept exact.

  Embedded bare '\\n' inside quoted CBIS-DDSM paths stay inside a record
  because records end with CRLF.
  """
  recs = path.read_bytes().split(sep)
  if recs[-1] == b'':
    recs = recs[:-1]
  return recs


def write_trimmed_csv(
  src: pathlib.Path, dst: pathlib.Path, indices, sep: bytes = b'\r\n'
) -> list[bytes]:
  """Writes the header and the chosen records of `src` to `dst`."""
  recs = csv_records(src, sep)
  kept = [recs[i + 1] for i in indices]
  dst.parent.mkdir(parents=True, exist_ok=True)
  dst.write_bytes(sep.join([recs[0], *kept]) + sep)
  return kept


def write_dicom(
  path: pathlib.Path,
  *,
  rows: int = 32,
  columns: int = 24,
  pixels: np.ndarray | None = None,
  header_only: bool = False,
  study_uid: str | None = None,
  series_uid: str | None = None,
  image_laterality: str | None = None,
  laterality: str | None = None,
  view: str | None = None,
  patient_id: str = 'anon',
  with_uids: bool = True,
) -> pathlib.Path:
  """Writes a small MG DICOM (uint16 or uint8 from `pixels`' dtype)."""
  meta = FileMetaDataset()
  meta.MediaStorageSOPClassUID = '1.2.840.10008.5.1.4.1.1.1.2'
  meta.MediaStorageSOPInstanceUID = generate_uid()
  meta.TransferSyntaxUID = ExplicitVRLittleEndian
  ds = FileDataset(str(path), {}, file_meta=meta, preamble=b'\0' * 128)
  ds.SOPClassUID = meta.MediaStorageSOPClassUID
  ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
  if with_uids:
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
  ds.Modality = 'MG'
  ds.PatientID = patient_id
  if image_laterality:
    ds.ImageLaterality = image_laterality
  if laterality:
    ds.Laterality = laterality
  if view:
    ds.ViewPosition = view
  if pixels is not None:
    rows, columns = pixels.shape
  ds.Rows, ds.Columns = rows, columns
  ds.SamplesPerPixel = 1
  ds.PhotometricInterpretation = 'MONOCHROME2'
  ds.PixelRepresentation = 0
  bits = 8 if pixels is not None and pixels.dtype == np.uint8 else 16
  ds.BitsAllocated = bits
  ds.BitsStored = bits
  ds.HighBit = bits - 1
  if not header_only:
    if pixels is None:
      pixels = (np.arange(rows * columns, dtype=np.uint16) % 4096).reshape(
        rows, columns)
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
  path.parent.mkdir(parents=True, exist_ok=True)
  ds.save_as(path, enforce_file_format=True)
  return path


def binary_mask(rows: int = 32, columns: int = 24) -> np.ndarray:
  """A 0/255 uint8 mask with a small square ROI."""
  mask = np.zeros((rows, columns), np.uint8)
  mask[10:16, 8:14] = 255
  return mask


def uids(csv_path: str) -> tuple[str, str]:
  """(study UID, series UID) from a CBIS-DDSM CSV path."""
  parts = csv_path.strip().split('/')
  return parts[-3], parts[-2]


def tmpdir(test) -> pathlib.Path:
  """A fresh temporary folder removed after `test` (works under pytest)."""
  import shutil  # pylint: disable=g-import-not-at-top
  import tempfile  # pylint: disable=g-import-not-at-top

  path = pathlib.Path(tempfile.mkdtemp(prefix='mammojax_sources_'))
  test.addCleanup(shutil.rmtree, path, ignore_errors=True)
  return path

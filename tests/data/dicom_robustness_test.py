"""Real-file robustness of the DICOM layer.

Conformance of the synthetic files (dciodvfy), truncated encapsulated files,
every transfer syntax the installed codecs handle, non-MG SOP classes and
FOR PROCESSING images.
"""

import io
import pathlib
import shutil
import subprocess

from absl.testing import absltest
import ml_collections
import numpy as np
from PIL import Image
import pydicom
from pydicom import encaps
from pydicom import uid as pydicom_uid
from pydicom.data import get_testdata_file

from mammojax.data import dicom
from mammojax.data import pipeline
from mammojax.data import synthetic
from mammojax.data.builders import dicom_folder_images  # pylint: disable=unused-import
from tests.data.sources import fixtures

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


def _small_config(**kwargs) -> synthetic.SyntheticConfig:
  return synthetic.SyntheticConfig(
      breast_scale=0.4, pixel_spacings_mm=(0.3,), **kwargs)


def _image(index: int = 0, seed: int = 0,
           **kwargs) -> synthetic.SyntheticImage:
  return synthetic.generate_image(_small_config(**kwargs), seed, index)


def dciodvfy(path: pathlib.Path) -> tuple[list[str], str]:
  """(error lines, whole output) of David Clunie's validator on a file."""
  exe = shutil.which("dciodvfy")
  if exe is None:
    raise AssertionError(
        "dciodvfy not found: install Debian's dicom3tools "
        "(`apt-get install -y dicom3tools`; .ci/run does it)")
  out = subprocess.run([exe, str(path)], capture_output=True, text=True,
                       check=False, timeout=60)
  text = out.stdout + out.stderr
  return [l for l in text.splitlines() if l.startswith("Error")], text


def _write(ds, path: pathlib.Path) -> pathlib.Path:
  ds.save_as(path, enforce_file_format=True)
  return path


def _compressed(ds, syntax: str) -> pydicom.Dataset:
  """A copy of ``ds`` with its pixels encoded in ``syntax``."""
  ds = pydicom.dcmread(io.BytesIO(_bytes(ds)))
  if syntax == pydicom_uid.JPEG2000Lossless:
    # pydicom's JPEG 2000 encoder needs pylibjpeg; Pillow (a core
    # dependency) writes the code stream, encapsulated by hand.
    buf = io.BytesIO()
    Image.fromarray(ds.pixel_array.astype(np.uint16)).save(
        buf, format="JPEG2000", irreversible=False, no_jp2=True)
    ds.PixelData = encaps.encapsulate([buf.getvalue()])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = syntax
  elif syntax == pydicom_uid.JPEGBaseline8Bit:
    arr = (ds.pixel_array >> (int(ds.BitsStored) - 8)).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=95)
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelData = encaps.encapsulate([buf.getvalue()])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = syntax
    ds.LossyImageCompression = "01"
    for keyword in ("WindowCenter", "WindowWidth"):
      delattr(ds, keyword)
  else:
    ds.compress(syntax)
  return ds


def _bytes(ds) -> bytes:
  buf = io.BytesIO()
  ds.save_as(buf, enforce_file_format=True)
  return buf.getvalue()


class ConformanceTest(absltest.TestCase):

  def test_synthetic_files_pass_dciodvfy(self):
    tmp = fixtures.tmpdir(self)
    kinds = set()
    for mono1 in (0.0, 1.0):
      for sigmoid in (0.0, 1.0):
        for index in range(4):
          # Seed 1: patients 1 (L, CC + MLO) and 2 (R, CC + MLO).
          image = _image(index, seed=1, monochrome1_probability=mono1,
                         sigmoid_probability=sigmoid)
          ds = image.dataset
          kind = (ds.ViewPosition, ds.ImageLaterality,
                  ds.PhotometricInterpretation, ds.VOILUTFunction)
          kinds.add(kind)
          path = tmp / f"{len(kinds)}_{index}.dcm"
          synthetic.write_dicom(path, ds)
          errors, text = dciodvfy(path)
          self.assertEqual(errors, [], f"{kind}:\n{text}")
          self.assertIn("MammographyImageForPresentation", text)
    views = {k[0] for k in kinds}
    sides = {k[1] for k in kinds}
    looks = {k[2:] for k in kinds}
    self.assertEqual(views, {"CC", "MLO"})
    self.assertEqual(sides, {"L", "R"})
    self.assertEqual(looks, {(p, f) for p in ("MONOCHROME1", "MONOCHROME2")
                             for f in ("LINEAR", "SIGMOID")})

  def test_header_fields(self):
    ds = _image(0).dataset
    self.assertNotIn("Laterality", ds)  # Type 2C: absent with ImageLaterality
    self.assertEqual(
        [(c.CodeValue, c.CodingSchemeDesignator) for c in
         list(ds.ViewCodeSequence) + list(ds.AnatomicRegionSequence)],
        [({"CC": "399162004", "MLO": "399368009"}[ds.ViewPosition], "SCT"),
         ("76752008", "SCT")])
    self.assertEqual((ds.PositionerType, ds.OrganExposed,
                      ds.LossyImageCompression),
                     ("MAMMOGRAPHIC", "BREAST", "00"))
    # Readers still find laterality and view.
    meta = dicom.read_metadata(ds)
    self.assertEqual((meta.laterality_source, meta.view_source),
                     ("ImageLaterality", "ViewPosition"))

  def test_for_processing_files_pass_dciodvfy(self):
    tmp = fixtures.tmpdir(self)
    for relationship in ("LIN", "LOG"):
      ds = synthetic.for_processing(_image(1).dataset, relationship)
      path = tmp / f"{relationship}.dcm"
      synthetic.write_dicom(path, ds)
      errors, text = dciodvfy(path)
      self.assertEqual(errors, [], text)
      self.assertIn("MammographyImageForProcessing", text)


class TruncationTest(absltest.TestCase):

  def test_cut_encapsulated_files(self):
    tmp = fixtures.tmpdir(self)
    ds = _image(0).dataset
    syntaxes = (pydicom_uid.JPEG2000Lossless, pydicom_uid.RLELossless,
                pydicom_uid.JPEGLSLossless)
    for syntax in syntaxes:
      data = _bytes(_compressed(ds, syntax))
      whole = tmp / "whole.dcm"
      whole.write_bytes(data)
      np.testing.assert_array_equal(
          pydicom.dcmread(whole).pixel_array, ds.pixel_array)
      pixel_start = data.index(b"\xe0\x7f\x10\x00")
      for cut in (pixel_start + 20, pixel_start + 200,
                  (pixel_start + len(data)) // 2, len(data) - 9):
        path = tmp / f"cut_{cut}.dcm"
        path.write_bytes(data[:cut])
        for read in (dicom.read_metadata, dicom.load_dicom):
          with self.assertRaisesRegex(
              dicom.DicomError, rf"cut_{cut}\.dcm: file is truncated",
              msg=f"{syntax.name} cut at {cut} by {read.__name__}"):
            read(path)

  def test_fragment_longer_than_its_data(self):
    ds = _compressed(_image(0).dataset, pydicom_uid.RLELossless)
    data = bytearray(_bytes(ds))
    # Item 1 (the first fragment, after the empty offset table) declares 64
    # bytes more than it holds; the sequence delimiter is still there.
    first = data.index(b"\xfe\xff\x00\xe0", data.index(b"\xe0\x7f\x10\x00"))
    item = data.index(b"\xfe\xff\x00\xe0", first + 8)
    length = int.from_bytes(data[item + 4:item + 8], "little")
    data[item + 4:item + 8] = (length + 64).to_bytes(4, "little")
    path = fixtures.tmpdir(self) / "long_fragment.dcm"
    path.write_bytes(bytes(data))
    with self.assertRaisesRegex(
        dicom.DicomError,
        r"long_fragment\.dcm: file is truncated or corrupt|fragment 1 "
        r"declares"):
      dicom.load_dicom(path)

  def test_cut_native_file_on_both_paths(self):
    path = fixtures.tmpdir(self) / "native.dcm"
    data = _bytes(_image(0).dataset)
    path.write_bytes(data[:len(data) - 1000])
    for read in (dicom.read_metadata, dicom.load_dicom):
      with self.assertRaisesRegex(
          dicom.DicomError,
          r"native\.dcm: file is truncated: element \(7FE0,0010\) declares "
          r"\d+ bytes but only \d+ are present"):
        read(path)


class TransferSyntaxTest(absltest.TestCase):

  def test_each_writable_syntax_decodes(self):
    ds = _image(2).dataset
    ref = dicom.load_dicom(ds, crop=False).image
    for syntax, lossless in ((pydicom_uid.RLELossless, True),
                             (pydicom_uid.JPEGLSLossless, True),
                             (pydicom_uid.JPEG2000Lossless, True),
                             (pydicom_uid.JPEGBaseline8Bit, False)):
      compressed = _compressed(ds, syntax)
      got = dicom.load_dicom(compressed, crop=False)
      self.assertEqual(got.meta.transfer_syntax, syntax)
      if lossless:
        np.testing.assert_array_equal(got.image, ref, err_msg=syntax.name)
      else:  # 8-bit JPEG, min-max: the same picture, roughly.
        self.assertEqual(got.image.shape, ref.shape)
        r = np.corrcoef(got.image.ravel(), ref.ravel())[0, 1]
        self.assertGreater(r, 0.9, syntax.name)

  def test_pydicom_test_files(self):
    # JPEG-LS near-lossless 16-bit and JPEG 2000 lossless (pydicom ships
    # both) decode with the core dependencies (pyjpegls, Pillow).
    for name in ("JPEGLSNearLossless_16.dcm", "MR_small_jp2klossless.dcm"):
      path = get_testdata_file(name, download=False)
      image = dicom.load_dicom(path, allow_non_mg=True, orient=False,
                               crop=False).image
      self.assertEqual(image.shape, (int(pydicom.dcmread(path).Rows),
                                     int(pydicom.dcmread(path).Columns)))
      self.assertGreater(float(image.std()), 0.05)
    # 12-bit JPEG Extended: Pillow only decodes 8 bits; the error says what
    # would.
    path = get_testdata_file("JPGExtended.dcm", download=False)
    with self.assertRaisesRegex(
        dicom.DicomError,
        r"cannot decode JPEG Extended \(Process 2 and 4\) pixel data \(.*"
        r"12-bit.*JPEG Extended \(Process 2 and 4\) needs Pillow \(a core "
        r"dependency; 8-bit only\) or pylibjpeg \+ pylibjpeg-libjpeg "
        r"\(`pip install 'mammojax\[dicom\]'`; 12-bit too\)"):
      dicom.load_dicom(path, allow_non_mg=True)

  def test_codec_hints(self):
    self.assertEqual(
        dicom.codec_hint(pydicom_uid.JPEGLosslessSV1),
        "JPEG Lossless, Non-Hierarchical, First-Order Prediction (Process "
        "14 [Selection Value 1]) needs pylibjpeg + pylibjpeg-libjpeg (`pip "
        "install 'mammojax[dicom]'`) or gdcm>=3.0.10; Pillow does not "
        "decode lossless JPEG")
    self.assertIn("pyjpegls (installed with highdicom",
                  dicom.codec_hint(pydicom_uid.JPEGLSLossless))
    self.assertIn("Pillow built with OpenJPEG",
                  dicom.codec_hint(pydicom_uid.JPEG2000))
    self.assertIn("nothing beyond numpy",
                  dicom.codec_hint(pydicom_uid.RLELossless))

  def test_lossless_jpeg_without_decoder(self):
    ds = _image(0).dataset
    ds.file_meta.TransferSyntaxUID = pydicom_uid.JPEGLosslessSV1
    ds.PixelData = encaps.encapsulate([b"\xff\xd8\xff\xc3" + bytes(40)])
    ds["PixelData"].VR = "OB"
    from pydicom import pixels  # pylint: disable=g-import-not-at-top
    if pixels.get_decoder(pydicom_uid.JPEGLosslessSV1).is_available:
      # The `dicom` extra is installed: the data is garbage, not a codec gap.
      expected = r"cannot decode JPEG Lossless.*pixel data \("
    else:
      expected = (r"cannot decode JPEG Lossless, Non-Hierarchical, First-Order"
                  r" Prediction \(Process 14 \[Selection Value 1\]\) pixel "
                  r"data: no codec installed; .* needs pylibjpeg \+ "
                  r"pylibjpeg-libjpeg")
    with self.assertRaisesRegex(dicom.DicomError, expected):
      dicom.load_dicom(ds)


def _secondary_capture(ds, modality="OT", body_part="BREAST"):
  out = pydicom.dcmread(io.BytesIO(_bytes(ds)))
  out.SOPClassUID = out.file_meta.MediaStorageSOPClassUID = SECONDARY_CAPTURE
  out.Modality = modality
  if body_part is None:
    del out.BodyPartExamined
  else:
    out.BodyPartExamined = body_part
  return out


class NonMammographySopClassTest(absltest.TestCase):

  def test_accept_rules(self):
    ds = _secondary_capture(_image(0).dataset)
    with self.assertRaisesRegex(
        dicom.DicomError,
        r"Modality is 'OT', not 'MG' \(SOP class 'Secondary Capture Image "
        r"Storage', BodyPartExamined 'BREAST'\); to accept such files set "
        r"config\.dataset\.accept_non_mg, e\.g\. \('modality:OT',\)"):
      dicom.load_dicom(ds)
    ref = dicom.load_dicom(_image(0).dataset).image
    for rule in ("modality:OT", f"sop_class:{SECONDARY_CAPTURE}",
                 "body_part:BREAST"):
      got = dicom.load_dicom(ds, accept_non_mg=(rule,))
      self.assertEqual(got.accepted_by, rule)
      np.testing.assert_array_equal(got.image, ref)
    # A rule that does not match keeps the file out.
    with self.assertRaises(dicom.DicomError):
      dicom.load_dicom(_secondary_capture(ds, "RG", None),
                       accept_non_mg=("modality:OT", "body_part:BREAST"))
    self.assertEqual(dicom.load_dicom(_image(0).dataset).accepted_by, "MG")
    with self.assertRaisesRegex(
        ValueError, r"accept_non_mg: rule 'OT' is not 'modality:<code>'"):
      dicom.load_dicom(ds, accept_non_mg=("OT",))

  def test_folder_build_counts_accepted_files(self):
    root = fixtures.tmpdir(self)
    rows = ["file,patient_id,laterality,view,malignant"]
    for i, index in enumerate((0, 1, 2)):
      image = _image(index)
      ds = image.dataset if i == 0 else _secondary_capture(image.dataset)
      _write(ds, root / f"{i}.dcm")
      rows.append(f"{i}.dcm,P{i},{ds.ImageLaterality},{ds.ViewPosition},0")
    (root / "labels.csv").write_text("\r\n".join(rows) + "\r\n")

    def load(**options):
      cfg = ml_collections.ConfigDict(dict(
          name="dicom_folder_images", builder_config="tiny",
          data_dir=str(fixtures.tmpdir(self)), manual_dir=str(root),
          accept_non_mg=(), for_processing="display"))
      cfg.update(options)
      return pipeline.load_examples(cfg)

    examples, info = load()
    report = info["build_report"]
    self.assertLen(examples, 1)
    self.assertEqual(report["skip_counts"], {
        "unreadable DICOM (Modality is 'OT', not 'MG' (SOP class 'Secondary "
        "Capture Image Storage', BodyPartExamined 'BREAST'); to accept such "
        "files set config.dataset.accept_non_mg, e.g. ('modality:OT',) or "
        "('body_part:BREAST',) (load_dicom(..., accept_non_mg=...)))": 2})
    examples, info = load(accept_non_mg=("body_part:BREAST",))
    stats = info["build_report"]["stats"]
    self.assertLen(examples, 3)
    self.assertEqual(stats["ingestion: accepted non-MG (body_part:BREAST)"],
                     2)
    self.assertEqual(stats["ingestion: FOR PRESENTATION LOG -> window"], 3)
    with self.assertRaisesRegex(
        ValueError, r"config\.dataset\.accept_non_mg: rule 'yes'"):
      load(accept_non_mg=("yes",))
    cfg = ml_collections.ConfigDict(dict(
        name="synthetic_cmmd", builder_config="tiny",
        accept_non_mg=("modality:OT",)))
    with self.assertRaisesRegex(
        ValueError, r"config\.dataset\.accept_non_mg=\('modality:OT',\): "
        r"dataset 'synthetic_cmmd' does not read user DICOM"):
      pipeline.prepare_builder(cfg)


class ForProcessingTest(absltest.TestCase):

  def test_display_transform(self):
    for mono1 in (0.0, 1.0):
      image = _image(3, monochrome1_probability=mono1)
      ref = dicom.load_dicom(image.dataset, crop=False).image
      breast = ref > 0.05
      for relationship in ("LIN", "LOG"):
        ds = synthetic.for_processing(image.dataset, relationship)
        self.assertEqual(ds.SOPClassUID, synthetic.MG_FOR_PROCESSING)
        self.assertNotIn("WindowCenter", ds)
        meta = dicom.read_metadata(ds)
        self.assertEqual(
            (meta.presentation_intent, meta.pixel_intensity_relationship),
            ("FOR PROCESSING", relationship))
        shown = dicom.load_dicom(ds, crop=False)
        self.assertEqual(shown.voi, "processing")
        r = np.corrcoef(shown.image[breast], ref[breast])[0, 1]
        # LIN: 12-bit intensities quantise the densest tissue coarsely.
        self.assertGreater(r, 0.93 if relationship == "LIN" else 0.99,
                           (mono1, relationship))
        # The breast spans the grey range; the background is black.
        self.assertGreater(float(shown.image[breast].std()), 0.15)
        self.assertLess(float(np.median(shown.image[~breast])), 0.05)
        raw = dicom.load_dicom(ds, crop=False, for_processing="min_max")
        self.assertEqual(raw.voi, "none")
        if relationship == "LIN":
          # Min-max of raw intensities: a low-contrast negative.
          r = np.corrcoef(raw.image[breast], ref[breast])[0, 1]
          self.assertLess(r, -0.5)
          self.assertLess(float(raw.image[breast].std()), 0.1)
    with self.assertRaisesRegex(ValueError, "for_processing must be one of"):
      dicom.load_dicom(ds, for_processing="log")

  def test_folder_build_records_intent(self):
    root = fixtures.tmpdir(self)
    image = _image(4)
    _write(synthetic.for_processing(image.dataset, "LIN"), root / "raw.dcm")
    (root / "labels.csv").write_text(
        "file,patient_id,laterality,view,malignant\r\n"
        f"raw.dcm,P1,{image.dataset.ImageLaterality},CC,1\r\n")
    for mode, key in (("display", "FOR PROCESSING LIN -> processing"),
                      ("min_max", "FOR PROCESSING LIN -> none")):
      cfg = ml_collections.ConfigDict(dict(
          name="dicom_folder_images", builder_config="tiny",
          data_dir=str(fixtures.tmpdir(self)), manual_dir=str(root),
          accept_non_mg=(), for_processing=mode))
      examples, info = pipeline.load_examples(cfg)
      self.assertLen(examples, 1)
      self.assertEqual(info["build_report"]["stats"][f"ingestion: {key}"], 1)


if __name__ == "__main__":
  absltest.main()

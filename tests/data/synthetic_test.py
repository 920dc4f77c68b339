"""Tests of the synthetic mammogram generator (mammojax.data.synthetic)."""

import dataclasses
import functools
import io
import json
import math
import pathlib
import shutil
import tempfile
from unittest import mock

from absl.testing import absltest
import numpy as np
import pydicom
from pydicom.pixels import apply_voi_lut
from scipy import spatial

from mammojax.data import annotations
from mammojax.data import synthesize
from mammojax.data import synthetic
from mammojax.data.synthetic import calc_shapes
from mammojax.data.synthetic import planning

# Half-size field of view keeps an image at ~0.3 s.
SMALL = synthetic.SyntheticConfig(breast_scale=0.5)
DICOM_SEED = 1  # its first 8 images cover both photometrics and VOI functions


@functools.lru_cache(maxsize=None)
def _image(config: synthetic.SyntheticConfig, seed: int, index: int):
  return synthetic.generate_image(config, seed, index)


def _only(distribution: str) -> synthetic.SyntheticConfig:
  """SMALL with every cluster of one distribution (the independent draws)."""
  probs = tuple(float(d == distribution) for d in synthetic.DISTRIBUTIONS)
  return dataclasses.replace(SMALL, calc_statistics="independent",
                             distribution_probs=probs)


def _centres_mm(image: synthetic.SyntheticImage) -> np.ndarray:
  """Calcification centres of an image in mm, [n, 2]."""
  spacing = image.annotation["pixel_spacing_mm"][1]
  return np.asarray([c["center_xy"] for c in
                     image.annotation["calcifications"]]) * spacing


def _max_pairwise(points: np.ndarray) -> float:
  return float(spatial.distance.pdist(points).max())


class LayoutTest(absltest.TestCase):

  def test_paper_sized_plan(self):
    specs = synthetic.plan_dataset(synthetic.SyntheticConfig(), 390, 200, 0)
    self.assertLen(specs, 390)
    patients = {}
    for s in specs:
      patients.setdefault(s.patient_id, []).append(s)
    self.assertLen(patients, 200)
    sizes = [len(v) for v in patients.values()]
    self.assertEqual(sizes.count(2), 190)
    self.assertEqual(sizes.count(1), 10)
    for views in patients.values():
      self.assertLen({s.laterality for s in views}, 1)
      if len(views) == 2:
        self.assertEqual([s.view for s in views], ["CC", "MLO"])
    self.assertEqual([s.index for s in specs], list(range(390)))
    self.assertLen({s.image_id for s in specs}, 390)

  def test_stream_matches_plan(self):
    specs = synthetic.plan_dataset(SMALL, 20, seed=5)
    for i in (0, 7, 19):
      self.assertEqual(synthetic.image_spec(SMALL, 5, i), specs[i])

  def test_inconsistent_patient_count(self):
    with self.assertRaisesRegex(ValueError, "give 10 patients, not 12; set "
                                "images_per_patient=1.667"):
      synthetic.plan_dataset(synthetic.SyntheticConfig(), 20, 12, 0)
    with self.assertRaisesRegex(ValueError, "20 images from 5 patients: each "
                                "patient has 1 or 2 images"):
      synthetic.plan_dataset(synthetic.SyntheticConfig(), 20, 5, 0)


class DeterminismTest(absltest.TestCase):

  def test_same_seed_same_image(self):
    a = synthetic.generate_image(SMALL, 11, 1)  # out of order: index 1 first
    b = synthetic.generate_image(SMALL, 11, 0)
    planning._plan_breast.cache_clear()
    c = synthetic.generate_image(SMALL, 11, 1)
    spec = synthetic.plan_dataset(SMALL, 2, seed=11)[1]
    d = synthetic.generate_image(SMALL, spec)
    for other in (c, d):
      self.assertEqual(a.dataset.PixelData, other.dataset.PixelData)
      self.assertEqual(json.dumps(a.annotation), json.dumps(other.annotation))
      self.assertEqual(a.dataset.SOPInstanceUID, other.dataset.SOPInstanceUID)
    self.assertNotEqual(a.dataset.PixelData[:2000], b.dataset.PixelData[:2000])
    e = synthetic.generate_image(SMALL, 12, 1)
    self.assertNotEqual(a.dataset.SOPInstanceUID, e.dataset.SOPInstanceUID)

  def test_views_of_a_breast_share_labels(self):
    cc, mlo = _image(SMALL, DICOM_SEED, 0), _image(SMALL, DICOM_SEED, 1)
    self.assertEqual(cc.spec.patient_id, mlo.spec.patient_id)
    self.assertEqual((cc.spec.view, mlo.spec.view), ("CC", "MLO"))
    for key in ("clusters", "density", "labels"):
      self.assertEqual(cc.annotation[key], mlo.annotation[key])
    for a, b in zip(cc.annotation["calcifications"],
                    mlo.annotation["calcifications"]):
      self.assertEqual((a["id"], a["morphology"], a["diameter_mm"]),
                       (b["id"], b["morphology"], b["diameter_mm"]))
    self.assertEqual(cc.dataset.StudyInstanceUID, mlo.dataset.StudyInstanceUID)
    self.assertNotEqual(cc.dataset.SOPInstanceUID, mlo.dataset.SOPInstanceUID)


class TextureTest(absltest.TestCase):

  def test_measure_beta_of_power_law_texture(self):
    for beta in (2.4, 2.8, 3.2):
      errors = []
      for seed in range(3):
        rng = np.random.default_rng(seed)
        tex = synthetic.power_law_texture(rng, (512, 512), 0.1, beta)
        self.assertAlmostEqual(float(tex.std()), 1.0, places=4)
        errors.append(synthetic.measure_beta(tex, 0.1) - beta)
      self.assertLess(abs(np.mean(errors)), 0.15, msg=(beta, errors))
      self.assertLess(np.max(np.abs(errors)), 0.3, msg=(beta, errors))

  def test_measure_beta_of_generated_images(self):
    # Full-size breasts: the parenchyma square spans >= 30 mm.
    config = synthetic.SyntheticConfig()
    errors = []
    for index in range(4):
      image = _image(config, DICOM_SEED, index)
      spacing = image.annotation["pixel_spacing_mm"][0]
      r0, c0, size = image.beta_roi
      self.assertGreaterEqual(size * spacing, 30.0)
      self.assertTrue(image.breast_mask[r0:r0 + size, c0:c0 + size].all())
      roi = synthetic.beta_roi_image(image)
      self.assertEqual(roi.shape, (size, size))
      measured = synthetic.measure_beta(roi, spacing)
      self.assertBetween(image.beta, 2.83, 3.03)
      self.assertEqual(image.annotation["labels"]["background_beta"],
                       round(image.beta, 4))
      errors.append(measured - image.beta)
    self.assertLess(np.max(np.abs(errors)), 0.3, msg=errors)
    self.assertLess(abs(np.mean(errors)), 0.15, msg=errors)
    # Measured as on a real mammogram (ROIs in the breast, 0.1-1 cycles/mm):
    # real FFDM and film give 2.88-3.15; the generator is centred on ~3.0.
    breast = []
    for index in range(4):
      image = _image(config, DICOM_SEED, index)
      self.assertEqual(bool(image.pectoral_mask.any()),
                       image.spec.view == "MLO")
      self.assertFalse((image.pectoral_mask & ~image.breast_mask).any())
      beta, num_rois, side = synthetic.measure_image_beta(image)
      self.assertGreaterEqual(num_rois, 1)
      self.assertAlmostEqual(side, 25.6, delta=0.1)
      breast.append(beta)
    self.assertTrue(all(2.6 <= b <= 3.3 for b in breast), breast)
    self.assertLess(abs(np.mean(breast) - 3.0), 0.2, breast)

  def test_breast_roi_beta_of_power_law_texture(self):
    tex = synthetic.power_law_texture(np.random.default_rng(0), (1000, 1000),
                                      0.1, 3.0)
    mask = np.zeros((1000, 1000), bool)
    mask[20:980, 20:980] = True  # 4 x 4 ROIs of 256 px at 128 px steps.
    beta, num_rois, side = synthetic.breast_power_spectrum_beta(
        tex, mask, 0.1)
    self.assertAlmostEqual(beta, 3.0, delta=0.15)
    self.assertEqual((num_rois, side), (16, 25.6))
    with self.assertRaisesRegex(ValueError, "no 12.8 mm ROI fits"):
      synthetic.breast_power_spectrum_beta(tex, np.zeros_like(mask), 0.1)

  def test_measure_beta_needs_frequencies(self):
    with self.assertRaisesRegex(ValueError, "too few frequencies"):
      synthetic.measure_beta(np.zeros((4, 4)), 0.1)


class DicomTest(absltest.TestCase):

  def test_files_reread_and_match_display(self):
    tmp = pathlib.Path(tempfile.mkdtemp())
    self.addCleanup(shutil.rmtree, tmp, ignore_errors=True)
    seen = {"photometric": set(), "voi": set(), "bits": set(), "lat": set()}
    for index in range(8):
      image = _image(SMALL, DICOM_SEED, index)
      path = tmp / image.spec.file
      synthetic.write_dicom(path, image.dataset)
      ds = pydicom.dcmread(path)
      self.assertEqual(ds.file_meta.TransferSyntaxUID,
                       pydicom.uid.ExplicitVRLittleEndian)
      self.assertEqual(ds.SOPClassUID, "1.2.840.10008.5.1.4.1.1.1.2")
      self.assertEqual(ds.file_meta.MediaStorageSOPClassUID, ds.SOPClassUID)
      self.assertEqual(ds.Modality, "MG")
      self.assertEqual(ds.PresentationIntentType, "FOR PRESENTATION")
      self.assertEqual(ds.ImageLaterality, image.spec.laterality)
      self.assertEqual(ds.ViewPosition, image.spec.view)
      self.assertEqual(ds.PatientID, image.spec.patient_id)
      self.assertEqual((ds.BitsAllocated, ds.PixelRepresentation), (16, 0))
      self.assertIn(ds.BitsStored, (12, 14))
      self.assertEqual(ds.HighBit, ds.BitsStored - 1)
      spacing = float(ds.ImagerPixelSpacing[0])
      self.assertIn(spacing, (0.07, 0.085, 0.1))
      self.assertEqual(float(ds.PixelSpacing[1]), spacing)
      arr = ds.pixel_array
      self.assertEqual(arr.shape, (ds.Rows, ds.Columns))
      self.assertEqual(arr.shape, image.display.shape)
      self.assertLessEqual(int(arr.max()), 2**ds.BitsStored - 1)
      shown = apply_voi_lut(arr, ds) / (2**ds.BitsStored - 1)
      if ds.PhotometricInterpretation == "MONOCHROME1":
        shown = 1.0 - shown
        self.assertEqual(ds.PresentationLUTShape, "INVERSE")
      np.testing.assert_allclose(shown, image.display, atol=1e-6)
      self.assertBetween(float(image.display.min()), 0.0, 1.0)
      self.assertBetween(float(image.display.max()), 0.0, 1.0)
      # Bright = dense: breast brighter than air.
      self.assertGreater(image.display[image.breast_mask].mean(),
                         image.display[~image.breast_mask].mean() + 0.3)
      seen["photometric"].add(ds.PhotometricInterpretation)
      seen["voi"].add(ds.VOILUTFunction)
      seen["bits"].add(ds.BitsStored)
      seen["lat"].add(ds.ImageLaterality)
    self.assertEqual(seen["photometric"], {"MONOCHROME1", "MONOCHROME2"})
    self.assertEqual(seen["voi"], {"LINEAR", "SIGMOID"})
    self.assertEqual(seen["lat"], {"L", "R"})

  def test_windowing_matches_pydicom(self):
    ds = pydicom.Dataset()
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsStored, ds.PixelRepresentation = 12, 0
    ds.WindowCenter, ds.WindowWidth = 2050, 1000
    x = np.array([1550, 2300, 2600, 4095], np.uint16)
    for function in ("LINEAR", "SIGMOID"):
      ds.VOILUTFunction = function
      np.testing.assert_allclose(
          synthetic.apply_windowing(x, 2050, 1000, function, 12),
          apply_voi_lut(x, ds), rtol=1e-12)


class AnatomyTest(absltest.TestCase):

  def test_pectoral_muscle_only_on_mlo_and_laterality(self):
    for index in range(8):
      image = _image(SMALL, DICOM_SEED, index)
      d, mask = image.display, image.breast_mask
      h, w = d.shape
      left = image.spec.laterality == "L"
      chest = slice(0, w // 20) if left else slice(w - w // 20, w)
      far = slice(w - w // 20, w) if left else slice(0, w // 20)
      # Chest wall on the left for L, on the right for R; nipple opposite.
      self.assertGreater(mask[:, chest].mean(), 0.5)
      self.assertEqual(mask[:, far].sum(), 0)
      nipple_x = image.nipple_xy[0]
      self.assertEqual(nipple_x > w / 2, left)
      corner = d[: h // 40, chest]
      if image.spec.view == "MLO":
        self.assertTrue(mask[: h // 40, chest].all())
        # Muscle is denser than the breast tissue below it.
        self.assertGreater(corner.mean(), np.median(d[mask]) + 0.05)
      else:
        self.assertFalse(mask[: h // 40, chest].any())
        self.assertLess(corner.mean(), 0.1)


class CalcificationTest(absltest.TestCase):

  def test_annotations_are_valid_and_match_masks(self):
    image = _image(SMALL, DICOM_SEED, 2)
    data = annotations.validate_annotations(
        annotations.make_annotations([image.annotation]))
    calcs = data["images"][0]["calcifications"]
    self.assertNotEmpty(calcs)
    self.assertLessEqual(len(calcs), SMALL.max_calcifications)
    self.assertLen(data["images"][0]["clusters"], 1)
    for c in calcs:
      contour = np.asarray(c["contour_xy"], int)
      self.assertTrue(image.calcification_mask[contour[:, 1],
                                               contour[:, 0]].all())
      x0, y0 = contour.min(0)
      x1, y1 = contour.max(0)
      self.assertEqual(c["center_xy"], [(x0 + x1) / 2, (y0 + y1) / 2])
      self.assertEqual(c["cluster_id"], 0)
    self.assertEqual(image.calcification_mask.sum() > 0, True)
    self.assertFalse(image.calcification_mask[~image.breast_mask].any())

  def test_trace_contour(self):
    mask = np.zeros((6, 7), bool)
    mask[1:4, 2:5] = True
    contour = synthetic.trace_contour(mask)
    self.assertLen(contour, 8)  # the 8 border pixels of a 3 x 3 square
    self.assertEqual(tuple(contour[0]), (1, 2))
    self.assertEqual({tuple(p) for p in contour},
                     {(r, c) for r in range(1, 4) for c in range(2, 5)}
                     - {(2, 3)})
    steps = np.abs(np.diff(np.vstack([contour, contour[:1]]), axis=0))
    self.assertTrue((steps.max(1) == 1).all())  # 8-connected chain
    single = np.zeros((3, 3), bool)
    single[1, 1] = True
    np.testing.assert_array_equal(synthetic.trace_contour(single), [[1, 1]])

  def test_morphology_sizes(self):
    limits = {"punctate": (0.15, 0.5), "amorphous": (0.08, 0.33),
              "coarse_heterogeneous": (0.5, 1.0),
              "fine_pleomorphic": (0.1, 0.5),
              "fine_linear_branching": (0.6, 2.2)}
    for morphology, (lo, hi) in limits.items():
      diameters = []
      for k in range(25):
        rng = np.random.default_rng(k)
        shape = calc_shapes._calc_shape(morphology, rng, 0.3 * k, k / 25)
        *_, mask, diameter = calc_shapes._render_calc(shape, 20.3, 20.6,
                                                      0.07, 5)
        self.assertTrue(mask.any())
        diameters.append(diameter)
      self.assertBetween(min(diameters), lo, hi, msg=morphology)
      self.assertBetween(max(diameters), lo, hi, msg=morphology)

  def test_morphology_in_images(self):
    for morphology, (lo, hi) in (("punctate", (0.15, 0.5)),
                                 ("coarse_heterogeneous", (0.5, 1.0))):
      probs = tuple(float(m == morphology) for m in synthetic.MORPHOLOGIES)
      config = dataclasses.replace(SMALL, calc_statistics="independent",
                                   morphology_probs=probs,
                                   mixed_morphology_fraction=0.0)
      image = synthetic.generate_image(config, 3, 0)
      calcs = image.annotation["calcifications"]
      self.assertEqual({c["morphology"] for c in calcs}, {morphology})
      diameters = [c["diameter_mm"] for c in calcs]
      self.assertBetween(min(diameters), lo, hi)
      self.assertBetween(max(diameters), lo, hi)

  def test_mixed_morphologies(self):
    config = dataclasses.replace(_only("diffuse"),
                                 mixed_morphology_fraction=0.3)
    calcs = _image(config, 4, 0).annotation["calcifications"]
    names = [c["morphology"] for c in calcs]
    dominant = max(set(names), key=names.count)
    self.assertBetween(names.count(dominant) / len(names), 0.5, 0.9)


class DistributionTest(absltest.TestCase):

  def test_grouped(self):
    for index in range(2):
      image = _image(_only("grouped"), 0, index)
      self.assertEqual(image.annotation["clusters"][0]["distribution"],
                       "grouped")
      pts = _centres_mm(image)
      self.assertBetween(len(pts), 5, 30)
      self.assertLessEqual(_max_pairwise(pts), 10.0)
      self.assertLessEqual(spatial.ConvexHull(pts).volume, 200.0)  # mm^2

  def test_regional(self):
    for index in range(2):
      pts = _centres_mm(_image(_only("regional"), 0, index))
      self.assertGreaterEqual(len(pts), 5)
      self.assertGreater(_max_pairwise(pts), 20.0)

  def test_linear(self):
    for index in range(2):
      pts = _centres_mm(_image(_only("linear"), 0, index))
      self.assertBetween(len(pts), 5, 25)
      eig = np.linalg.eigvalsh(np.cov(pts.T))
      self.assertLess(math.sqrt(eig[0] / eig[1]), 0.2)
      self.assertGreater(_max_pairwise(pts), 8.0)

  def test_segmental(self):
    for index in range(2):
      image = _image(_only("segmental"), 0, index)
      spacing = image.annotation["pixel_spacing_mm"][0]
      pts = _centres_mm(image) / spacing
      tri = image.cluster_geometry[0]["triangle_xy"]
      self.assertGreaterEqual(len(pts), 5)
      # All calcifications inside the triangle.
      for p in pts:
        self.assertTrue(planning._in_triangle(p, tri), msg=p)
      # The apex is the vertex nearest the nipple and the most acute angle.
      nipple = np.asarray(image.nipple_xy)
      dist = np.linalg.norm(tri - nipple, axis=1)
      self.assertEqual(int(np.argmin(dist)), 0)
      angles = []
      for i in range(3):
        u, v = tri[(i + 1) % 3] - tri[i], tri[(i + 2) % 3] - tri[i]
        angles.append(math.degrees(math.acos(
            u @ v / np.linalg.norm(u) / np.linalg.norm(v))))
      self.assertEqual(int(np.argmin(angles)), 0)
      self.assertLess(angles[0], 60.0)
      # From the data alone: the spread across the axis grows away from the
      # nipple.
      axis = pts.mean(0) - nipple
      axis /= np.linalg.norm(axis)
      along = (pts - nipple) @ axis
      across = (pts - nipple) @ np.array([-axis[1], axis[0]])
      near = along <= np.median(along)
      self.assertGreater(np.ptp(across[~near]), np.ptp(across[near]))

  def test_diffuse(self):
    pts = _centres_mm(_image(_only("diffuse"), 0, 0))
    self.assertBetween(len(pts), 20, 80)
    self.assertGreater(_max_pairwise(pts), 25.0)

  def test_count_cap(self):
    config = dataclasses.replace(_only("diffuse"), max_calcifications=12)
    self.assertBetween(
        len(_image(config, 0, 0).annotation["calcifications"]), 5, 12)


class MassTest(absltest.TestCase):

  def test_mass_annotation(self):
    config = dataclasses.replace(SMALL, mass_probability=1.0)
    image = _image(config, 2, 0)
    masses = image.annotation["masses"]
    self.assertLen(masses, 1)
    m = masses[0]
    self.assertIn(m["shape"], synthetic.MASS_SHAPES)
    self.assertIn(m["margin"], synthetic.MASS_MARGINS)
    contour = np.asarray(m["contour_xy"])
    self.assertLen(contour, 72)
    self.assertLess(np.abs(contour.mean(0) - m["center_xy"]).max(), 40.0)
    labels = image.annotation["labels"]
    any_malignant = any(
        f["pathology"] == "malignant"
        for f in masses + image.annotation["clusters"])
    self.assertEqual(labels["pathology"] == "malignant", any_malignant)
    self.assertEqual("subtype" in labels, any_malignant)

  def test_pathology_depends_on_shape_and_margin(self):
    risk = lambda s, m: planning._sigmoid(
        planning._SHAPE_RISK[s] + planning._MARGIN_RISK[m])
    self.assertGreater(risk("irregular", "spiculated"), 0.95)
    self.assertLess(risk("round", "circumscribed"), 0.1)
    self.assertLess(risk("oval", "circumscribed"), 0.1)


class WriteDatasetTest(absltest.TestCase):

  def test_write_dataset(self):
    tmp = pathlib.Path(tempfile.mkdtemp())
    self.addCleanup(shutil.rmtree, tmp, ignore_errors=True)
    summary = synthetic.write_dataset(tmp, SMALL, 3, seed=DICOM_SEED,
                                      workers=1, progress=False)
    self.assertEqual(summary["images"], 3)
    self.assertEqual(summary["patients"], 2)
    self.assertEqual(sum(summary["labels"]["distribution"].values()), 3)
    data = annotations.load_annotations(tmp / "annotations.json")
    self.assertLen(data["images"], 3)
    for image in data["images"]:
      ds = pydicom.dcmread(annotations.resolve_file(
          tmp / "annotations.json", image))
      self.assertEqual((ds.Rows, ds.Columns),
                       (image["rows"], image["columns"]))
      self.assertEqual(image["file"],
                       f"{image['patient_id']}/{image['image_id']}.dcm")
    self.assertEqual(
        data["images"][0]["calcifications"],
        _image(SMALL, DICOM_SEED, 0).annotation["calcifications"])


  def test_cli(self):
    tmp = pathlib.Path(tempfile.mkdtemp())
    self.addCleanup(shutil.rmtree, tmp, ignore_errors=True)
    with mock.patch("sys.stdout", new_callable=io.StringIO) as out:
      status = synthesize.main([
          "--out", str(tmp), "--num-images", "2", "--num-patients", "1",
          "--seed", str(DICOM_SEED), "--workers", "1", "--breast-scale",
          "0.5", "--no-progress"])
    self.assertEqual(status, 0)
    summary = json.loads(out.getvalue())
    self.assertEqual((summary["images"], summary["patients"]), (2, 1))
    self.assertTrue((tmp / "P0001" / "P0001_L_MLO.dcm").exists())
    with mock.patch("sys.stderr", new_callable=io.StringIO) as err:
      status = synthesize.main(["--out", str(tmp), "--num-images", "5",
                                "--num-patients", "1", "--no-progress"])
    self.assertEqual(status, 2)
    self.assertIn("5 images from 1 patients", err.getvalue())


if __name__ == "__main__":
  absltest.main()

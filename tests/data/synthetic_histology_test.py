"""Tests of the synthetic IDC histopathology generator (Databiox layout)."""

import json

from absl.testing import absltest
import numpy as np
from scipy import ndimage

from mammojax.data import synthetic_histology as sh
from mammojax.data.sources import databiox
from tests.data.builders import trees
from tests.data.sources import fixtures


def haematoxylin(rgb):
  """Colour deconvolution (Ruifrok): the H concentration of each pixel."""
  od = -np.log(np.maximum(np.asarray(rgb, np.float64), 1.0) / 255.0)
  conc = od.reshape(-1, 3) @ np.linalg.pinv(sh.STAINS)
  return conc[:, 0].reshape(rgb.shape[:2])


def measure(rgb):
  """Nuclear density (H-positive pixel fraction), mean nuclear area (px),
  nuclei per tile and lumen (white) fraction, measured on the image."""
  mask = haematoxylin(rgb) > 0.5
  labels, n = ndimage.label(mask)
  areas = np.bincount(labels.ravel())[1:]
  areas = areas[areas >= 4]
  white = np.all(np.asarray(rgb) > 225, axis=-1)
  return {"density": float(mask.mean()),
          "area": float(np.median(areas)) if len(areas) else 0.0,
          "count": int(len(areas)),
          "lumen": float(white.mean())}


class SyntheticHistologyTest(absltest.TestCase):

  def test_deterministic_per_seed(self):
    patient = sh.make_patients(1, seed=3)[1]
    a, sa = sh.render_tile(patient, "40x", 1, size=(96, 128), seed=3)
    b, sb = sh.render_tile(patient, "40x", 1, size=(96, 128), seed=3)
    np.testing.assert_array_equal(a, b)
    self.assertEqual(sa, sb)
    c, _ = sh.render_tile(patient, "40x", 2, size=(96, 128), seed=3)
    self.assertGreater(np.mean(np.abs(a.astype(int) - c)), 5)
    self.assertNotEqual(
        [p.patient_id for p in sh.make_patients(2, seed=0)],
        [p.patient_id for p in sh.make_patients(2, seed=1)])
    self.assertEqual(a.dtype, np.uint8)
    self.assertEqual(a.shape, (96, 128, 3))

  def test_layout_read_back_by_databiox_parser(self):
    root = fixtures.tmpdir(self)
    manifest = sh.write_dataset(root, patients_per_grade=2,
                                tiles_per_patient=1, size=(48, 64), seed=0)
    records, report = databiox.parse_databiox(root)
    self.assertLen(records, 3 * 2 * 4)
    self.assertEqual(report.skipped, [])
    by_file = {t["file"].split("/")[-1]: t for t in manifest["tiles"]}
    for r in records:
      tile = by_file[r.image_path.name]
      self.assertEqual(r.labels["grade"], tile["grade"])
      self.assertEqual(r.labels["magnification"], tile["magnification"])
      self.assertEqual(r.patient_id, tile["patient_id"])
      self.assertEqual(r.image_path.parent.parent.name,
                       f"BC_IDC_Grade_{tile['grade']}")
    self.assertLen({r.patient_id for r in records}, 6)
    saved = json.loads((root / "synthetic_manifest.json").read_text())
    self.assertEqual(saved["tiles"], manifest["tiles"])

  def test_read_back_by_the_builder(self):
    examples, metadata = trees.build("synthetic_databiox", "tiny", "",
                                     fixtures.tmpdir(self))
    full = examples["full"]
    self.assertLen(full, 3 * 2 * 2 * 4)  # grades x patients x tiles x mags.
    self.assertEqual(full[0]["image"].shape, (64, 64, 3))
    counts = metadata["build_report"]["label_counts"]["full"]
    self.assertEqual(counts["grade"],
                     {"grade_1": 16, "grade_2": 16, "grade_3": 16})
    grades = {}
    for ex in full:
      grades.setdefault(ex["patient_id"], set()).add(ex["grade"])
    self.assertLen(grades, 6)
    self.assertTrue(all(len(g) == 1 for g in grades.values()))

  def test_grade_dependent_statistics(self):
    stats = {}
    for patient in sh.make_patients(3, seed=0):
      for tile in (1, 2):
        rgb, truth = sh.render_tile(patient, "40x", tile, seed=0)
        m = measure(rgb)
        stats.setdefault(patient.grade, []).append((m, truth))
    mean = {g: {k: np.mean([m[k] for m, _ in v]) for k in
                ("density", "area", "count", "lumen")}
            for g, v in stats.items()}
    truth = {g: {k: np.mean([t[k] for _, t in v]) for k in
                 ("num_tubules", "num_mitoses", "mean_nuclear_area")}
             for g, v in stats.items()}
    # Measured on the pixels: nuclei get bigger and denser, lumens rarer.
    self.assertLess(mean[1]["area"] * 1.3, mean[2]["area"])
    self.assertLess(mean[2]["area"] * 1.3, mean[3]["area"])
    self.assertLess(mean[1]["density"] * 1.5, mean[2]["density"])
    self.assertLess(mean[2]["density"] * 1.5, mean[3]["density"])
    self.assertGreater(mean[1]["lumen"], 1.5 * mean[2]["lumen"])
    self.assertGreater(mean[2]["lumen"], 2 * mean[3]["lumen"])
    # Ground truth of the generator: tubules down, mitoses up.
    self.assertGreater(truth[1]["num_tubules"], truth[2]["num_tubules"])
    self.assertGreater(truth[2]["num_tubules"], truth[3]["num_tubules"])
    self.assertLess(truth[1]["num_mitoses"], truth[3]["num_mitoses"])
    # H&E colours: nuclei blue-purple (B > G), stroma pink (R > G).
    rgb, _ = sh.render_tile(sh.make_patients(1, 0)[0], "40x", 1, seed=0)
    h = haematoxylin(rgb)
    nuclei = rgb[h > 0.8].mean(0)
    stroma = rgb[(h < 0.1) & (rgb.min(-1) < 225)].mean(0)
    self.assertGreater(nuclei[2], nuclei[1])
    self.assertGreater(stroma[0], stroma[1] + 30)
    self.assertLess(nuclei.mean(), stroma.mean())

  def test_bad_arguments(self):
    with self.assertRaisesRegex(ValueError, "patients_per_grade"):
      sh.write_dataset(fixtures.tmpdir(self), patients_per_grade=0)
    with self.assertRaisesRegex(ValueError, "magnifications"):
      sh.write_dataset(fixtures.tmpdir(self), magnifications=("100x",))


if __name__ == "__main__":
  absltest.main()

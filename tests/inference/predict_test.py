"""End-to-end tests of ``python -m mammojax.predict`` on synthetic DICOMs.

One checkpointed MT-GCN run (``predict_fixtures.checkpointed_run``) and one
set of synthetic mammograms with ground truth (``annotations.json``) per
module; the inputs include a MONOCHROME1 file, right breasts (flipped on
ingestion) and a mirrored copy of a left breast relabelled right.
"""

import contextlib
import csv
import io
import json
import os
import pathlib
import shutil
import subprocess
import tempfile
from unittest import mock

from absl.testing import absltest
import numpy as np
import pydicom

from mammojax import methods
from mammojax import predict
from mammojax.data import annotations as annotations_lib
from mammojax.inference import run as run_lib
from mammojax.reporting import structured_report
from tests.inference import predict_fixtures


def _run(argv):
  """``predict.main(argv)`` -> (exit status, stderr)."""
  err = io.StringIO()
  with contextlib.redirect_stderr(err), contextlib.redirect_stdout(
      io.StringIO()):
    status = predict.main(list(argv) + ["--no-progress"])
  return status, err.getvalue()


def _rows(out):
  with open(os.path.join(out, "predictions.csv")) as f:
    return {pathlib.Path(r["source"]).name: r for r in csv.DictReader(f)}


def _findings(row):
  with open(row["findings_json"]) as f:
    return json.load(f)


def _mirror(src, dst):
  """A left breast mirrored into a right one (pixels and laterality)."""
  ds = pydicom.dcmread(src)
  ds.PixelData = np.ascontiguousarray(ds.pixel_array[:, ::-1]).tobytes()
  ds.ImageLaterality = ds.Laterality = "R"
  ds.PatientOrientation = ["A", "R"]
  ds.SOPInstanceUID = pydicom.uid.generate_uid()
  ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
  ds.save_as(dst)
  return ds


class PredictTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    # One directory per process: pytest-xdist may run this class's tests in
    # two workers at once, each with its own setUpClass.
    cls.root = pathlib.Path(tempfile.mkdtemp(
        prefix="predict_", dir=absltest.get_default_test_tmpdir()))
    cls.data = cls.root / "data"
    # The generator before the CBIS-DDSM cluster statistics: one fully
    # conspicuous cluster per image, on which the detector's thresholds (and
    # the detection counts below) were measured.
    cls.annotations = predict_fixtures.make_dataset(
        str(cls.data), num_images=4, seed=1, calc_statistics="independent")
    cls.workdir = str(cls.root / "run")
    predict_fixtures.checkpointed_run(cls.workdir, cls.annotations)
    cls.truth = {
        pathlib.Path(e["file"]).name: e
        for e in annotations_lib.load_annotations(cls.annotations)["images"]
    }
    cls.vocabularies = json.load(
        open(os.path.join(cls.workdir, "results.json")))["vocabularies"]

  @classmethod
  def tearDownClass(cls):
    shutil.rmtree(cls.root, ignore_errors=True)
    super().tearDownClass()

  def test_fixture_covers_monochrome1_and_right_breasts(self):
    headers = [pydicom.dcmread(self.data / e["file"], stop_before_pixels=True)
               for e in self.truth.values()]
    self.assertIn("MONOCHROME1", {h.PhotometricInterpretation for h in headers})
    self.assertEqual({h.ImageLaterality for h in headers}, {"L", "R"})

  def test_annotated_calcifications_round_trip_and_sr(self):
    out = str(self.root / "annotated")
    status, err = _run([f"--workdir={self.workdir}", f"--out={out}",
                        f"--annotations={self.annotations}", str(self.data)])
    self.assertEqual(status, 0, err)
    rows = _rows(out)
    self.assertLen(rows, 4)
    for name, entry in self.truth.items():
      row = rows[name]
      self.assertEqual(row["status"], "ok", row["reason"])
      findings = _findings(row)
      ds = pydicom.dcmread(self.data / entry["file"], stop_before_pixels=True)
      self.assertEqual(findings["sop_instance_uid"], ds.SOPInstanceUID)
      self.assertEqual(findings["laterality"], entry["laterality"])
      self.assertEqual(findings["ingestion"]["flipped"],
                       entry["laterality"] == "R")
      # Centres back in the stored grid (rows, columns) within a pixel.
      truth_rc = np.asarray(
          [c["center_xy"][::-1] for c in entry["calcifications"]])
      got_rc = np.asarray([c["center_rc"] for c in findings["calcifications"]])
      np.testing.assert_allclose(got_rc, truth_rc, atol=1.0)
      spacing = np.asarray(findings["pixel_spacing_mm"])
      np.testing.assert_allclose(
          [c["center_mm"] for c in findings["calcifications"]],
          got_rc * spacing, rtol=1e-6)
      self.assertEqual(
          [c["calcification_ids"] for c in findings["clusters"]],
          [[entry["calcifications"].index(
              next(x for x in entry["calcifications"] if x["id"] == i))
            for i in cl["calcification_ids"]] for cl in entry["clusters"]])
      for calc in findings["calcifications"]:
        self.assertEqual(list(calc["morphology"]),
                         self.vocabularies["morphology"])
        self.assertAlmostEqual(sum(calc["morphology"].values()), 1.0, 5)
        self.assertEqual(calc["predicted_morphology"],
                         max(calc["morphology"], key=calc["morphology"].get))
      for cl in findings["clusters"]:
        self.assertAlmostEqual(sum(cl["distribution"].values()), 1.0, 5)
      self.assertEqual(findings["model"]["checkpoint_step"], 3)
      self.assertLen(findings["model"]["config_hash"], 16)
      with open(row["overlay_png"], "rb") as f:
        self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
      # The SR: the right image and patient, one group per cluster with
      # its calcifications' coordinates and probabilities.
      sr = structured_report.read_structured_report(row["structured_report"])
      self.assertEqual(sr["referenced_sop_instance_uids"], [ds.SOPInstanceUID])
      self.assertEqual(sr["study_instance_uid"], ds.StudyInstanceUID)
      self.assertEqual(sr["patient_id"], ds.PatientID)
      self.assertLen(sr["groups"], len(findings["clusters"]))
      for group, cl in zip(sr["groups"], findings["clusters"]):
        self.assertEqual(group["source_sop_instance_uid"], ds.SOPInstanceUID)
        self.assertEqual(group["finding_type"], "Calcification Cluster")
        centres = [findings["calcifications"][i]["center_xy"]
                   for i in cl["calcification_ids"]]
        np.testing.assert_allclose(group["points_xy"], centres, atol=1e-3)
        dist = structured_report.class_concept(
            "distribution", cl["predicted_distribution"]).meaning
        self.assertEqual(group["evaluations"]["Calcification Distribution"],
                         dist)
        probs = {m["name"]: m["value"] for m in group["measurements"]
                 if m["name"].startswith("Probability of distribution")}
        self.assertLen(probs, len(self.vocabularies["distribution"]))
        np.testing.assert_allclose(
            sorted(probs.values()), sorted(cl["distribution"].values()),
            atol=1e-6)
        per_calc = [m for m in group["measurements"]
                    if m["name"].startswith("Probability of morphology")]
        self.assertLen(per_calc, len(centres))
        self.assertEqual({m["graphic_type"] for m in per_calc}, {"POINT"})
        for m, i in zip(per_calc, cl["calcification_ids"]):
          calc = findings["calcifications"][i]
          np.testing.assert_allclose(m["points_xy"], [calc["center_xy"]],
                                     atol=1e-3)
          self.assertEqual(m["name"], "Probability of morphology " +
                           calc["predicted_morphology"].replace("_", " "))
          self.assertAlmostEqual(
              m["value"], calc["morphology"][calc["predicted_morphology"]],
              places=5)
    # dciodvfy (dicom3tools) finds no error in an SR.
    result = subprocess.run(
        ["dciodvfy", rows[sorted(rows)[0]]["structured_report"]],
        capture_output=True, text=True, check=False)
    report = result.stdout + result.stderr
    self.assertIn("ComprehensiveSR", report)
    self.assertNotIn("Error", report)

  def test_detections_map_back_through_the_flip(self):
    name = next(n for n, e in self.truth.items() if e["laterality"] == "L")
    folder = self.root / "mirror"
    folder.mkdir()
    shutil.copy(self.data / self.truth[name]["file"], folder / "left.dcm")
    mirrored = _mirror(folder / "left.dcm", folder / "right.dcm")
    out = str(self.root / "detected")
    status, err = _run([f"--workdir={self.workdir}", f"--out={out}",
                        str(folder)])
    self.assertEqual(status, 0, err)
    rows = _rows(out)
    left, right = _findings(rows["left.dcm"]), _findings(rows["right.dcm"])
    self.assertEqual(left["status"], "ok", left["reason"])
    self.assertEqual(left["calcification_source"], "detector")
    self.assertTrue(right["ingestion"]["flipped"])
    width = mirrored.Columns
    lxy = np.asarray([c["center_xy"] for c in left["calcifications"]])
    rxy = np.asarray([c["center_xy"] for c in right["calcifications"]])
    # The same detections, mirrored back into the right file's stored grid.
    np.testing.assert_allclose(rxy[:, 0], width - 1 - lxy[:, 0], atol=1e-6)
    np.testing.assert_allclose(rxy[:, 1], lxy[:, 1], atol=1e-6)
    # Detections land on annotated calcifications (within a pixel).
    truth = np.asarray(
        [c["center_xy"] for c in self.truth[name]["calcifications"]])
    dist = np.linalg.norm(lxy[:, None] - truth[None], axis=-1).min(axis=1)
    self.assertGreaterEqual(int(np.sum(dist <= 1.0)), 5)
    for a, b in zip(left["clusters"], right["clusters"]):
      np.testing.assert_allclose(
          list(a["distribution"].values()), list(b["distribution"].values()),
          atol=1e-5)

  def test_bad_inputs_get_statuses_and_only_all_failed_is_an_error(self):
    folder = self.root / "bad"
    folder.mkdir()
    good = self.data / next(iter(self.truth.values()))["file"]
    (folder / "notes.dcm").write_text("not a DICOM file")
    ds = pydicom.dcmread(good)
    ds.Modality = "CT"
    ds.save_as(folder / "ct.dcm")
    data = good.read_bytes()
    (folder / "truncated.dcm").write_bytes(data[: len(data) // 2])
    blank = pydicom.dcmread(good)
    blank.PixelData = np.zeros_like(blank.pixel_array).tobytes()
    blank.save_as(folder / "blank.dcm")
    smooth = pydicom.dcmread(good)
    arr = smooth.pixel_array
    yy, xx = np.mgrid[: arr.shape[0], : arr.shape[1]]
    breast = ((xx / arr.shape[1]) ** 2 + ((yy - arr.shape[0] / 2) /
                                          (arr.shape[0] / 2)) ** 2) < 0.8
    flat = np.where(breast, np.median(arr[arr > 0]), arr.min())
    smooth.PixelData = flat.astype(arr.dtype).tobytes()
    smooth.save_as(folder / "no_calcs.dcm")
    (folder / "readme.txt").write_text("ignored")
    out = str(self.root / "bad_out")
    status, err = _run([f"--workdir={self.workdir}", f"--out={out}",
                        str(folder), str(good)])
    self.assertEqual(status, 0, err)
    rows = _rows(out)
    self.assertEqual(
        {k: v["status"] for k, v in rows.items()},
        {"notes.dcm": "not_dicom", "ct.dcm": "not_mammography",
         "truncated.dcm": "truncated", "blank.dcm": "no_breast",
         "no_calcs.dcm": "no_calcification", good.name: "ok"})
    for key in ("notes.dcm", "ct.dcm", "truncated.dcm", "blank.dcm",
                "no_calcs.dcm"):
      self.assertTrue(rows[key]["reason"], key)
      self.assertEqual(_findings(rows[key])["status"], rows[key]["status"])
    self.assertIn("'MG'", rows["ct.dcm"]["reason"])
    log = pathlib.Path(out, "skipped.log").read_text().splitlines()
    self.assertLen(log, 5)  # 4 failed inputs + the ignored readme.
    self.assertTrue(any(line.startswith("ignored\t") and "readme.txt" in line
                        for line in log))
    summary = json.loads(pathlib.Path(out, "summary.json").read_text())
    self.assertEqual(summary["analysed"], 2)
    self.assertEqual(set(summary["stage_seconds"]),
                     {"ingestion", "detection", "graphs", "model"})
    # Every input failed: a non-zero exit status.
    status, err = _run([f"--workdir={self.workdir}",
                        f"--out={self.root / 'all_bad'}",
                        str(folder / "notes.dcm"), str(folder / "ct.dcm")])
    self.assertEqual(status, 1)
    self.assertIn("skipped.log", err)

  def test_unusable_workdirs_are_errors_naming_the_path(self):
    empty = self.root / "empty_run"
    empty.mkdir()
    status, err = _run([f"--workdir={empty}", f"--out={self.root / 'o1'}",
                        str(self.data)])
    self.assertEqual(status, 2)
    self.assertIn(str(empty / "results.json"), err)
    shutil.copy(os.path.join(self.workdir, "results.json"), empty)
    with self.assertRaisesRegex(run_lib.RunError,
                                str(empty / "checkpoints" / "best")):
      run_lib.load_run(str(empty))
    # Another model version: the config builds a different parameter tree.
    other = self.root / "other_version"
    shutil.copytree(self.workdir, other)
    results = json.loads((other / "results.json").read_text())
    results["config"]["model"]["hidden_size"] = 24
    (other / "results.json").write_text(json.dumps(results))
    status, err = _run([f"--workdir={other}", f"--out={self.root / 'o2'}",
                        f"--annotations={self.annotations}", str(self.data)])
    self.assertEqual(status, 2)
    self.assertIn(str(other / "checkpoints" / "best"), err)
    self.assertIn("parameter tree", err)
    # A method without the predict hook.
    toy = self.root / "toy_run"
    toy.mkdir()
    (toy / "results.json").write_text(json.dumps(
        {"config": {"method": "toy", "dataset": {"name": "x"}}}))
    with mock.patch.dict(methods.METHODS,
                         {"toy": "tests.training.toy_method"}):
      with self.assertRaisesRegex(run_lib.RunError,
                                  "method 'toy' has no predict_images hook"):
        run_lib.load_run(str(toy))


if __name__ == "__main__":
  absltest.main()

"""``python -m mammojax.predict`` with the image methods: luminal transfer
(image-level probabilities, Grad-CAM overlay in the stored grid) and the
image-level CNN baseline (distribution per cluster crop, Grad-CAM)."""

import contextlib
import csv
import io
import json
import pathlib
import shutil

from absl.testing import absltest
import numpy as np

from configs import cnn_baseline as cnn_configs
from configs import luminal as luminal_configs
from mammojax import predict
from mammojax.reporting import structured_report
from tests.inference import predict_fixtures


class PredictImageTest(absltest.TestCase):

  def test_luminal_probabilities_and_gradcam_overlay(self):
    root = pathlib.Path(absltest.get_default_test_tmpdir()) / "predict_image"
    shutil.rmtree(root, ignore_errors=True)
    data = root / "data"
    predict_fixtures.make_dataset(str(data), num_images=2, seed=1)
    config = luminal_configs.get_config("transfer")
    config.dataset.builder_config = "tiny"  # 64 x 40 views.
    config.dataset.image_size = ()
    config.model.stage_sizes = (1, 1, 1, 1)
    config.batch_size = 2
    config.num_devices = 1
    config.init_from = ""
    workdir = str(root / "run")
    predict_fixtures.checkpointed_image_run(
        workdir, config, {"luminal": ["non_luminal", "luminal"]})
    out = root / "out"
    (data / "notes.dcm").write_text("not a DICOM file")
    with contextlib.redirect_stdout(io.StringIO()):
      status = predict.main([f"--workdir={workdir}", f"--out={out}",
                             str(data), "--no-progress"])
    self.assertEqual(status, 0)
    with open(out / "predictions.csv") as f:
      rows = {pathlib.Path(r["source"]).name: r for r in csv.DictReader(f)}
    self.assertEqual(rows["notes.dcm"]["status"], "not_dicom")
    oks = [r for r in rows.values() if r["status"] == "ok"]
    self.assertLen(oks, 2)
    for row in oks:
      findings = json.loads(pathlib.Path(row["findings_json"]).read_text())
      self.assertEqual(findings["kind"], "image")
      probs = findings["image_probabilities"]["luminal"]
      self.assertEqual(list(probs), ["non_luminal", "luminal"])
      self.assertAlmostEqual(sum(probs.values()), 1.0, places=5)
      self.assertEqual(float(row["top_probability"]),
                       round(max(probs.values()), 4))
      # synthetic_cmmd renders its views directly (no block averaging).
      self.assertEqual(findings["ingestion"]["downsample"], 1)
      self.assertEqual(findings["ingestion"]["flipped"],
                       findings["laterality"] == "R")
      with open(row["overlay_png"], "rb") as f:
        self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
      self.assertEqual(row["structured_report"], "")

  def test_cnn_baseline_image_level_distributions_and_gradcam(self):
    root = pathlib.Path(absltest.get_default_test_tmpdir()) / "predict_cnn"
    shutil.rmtree(root, ignore_errors=True)
    data = root / "data"
    annotations = predict_fixtures.make_dataset(str(data), num_images=2,
                                                seed=1)
    config = cnn_configs.get_config("test")
    config.dataset.name = "dicom_folder_calcifications"
    config.batch_size = 2
    config.num_devices = 1
    vocabularies = json.loads(pathlib.Path(annotations).read_text())[
        "vocabularies"]
    workdir = str(root / "run")
    size = int(config.baseline.image_size)
    predict_fixtures.checkpointed_image_run(
        workdir, config, vocabularies, image_shape=(size, size))
    out = root / "out"
    with contextlib.redirect_stdout(io.StringIO()):
      status = predict.main([f"--workdir={workdir}", f"--out={out}",
                             f"--annotations={annotations}", str(data),
                             "--no-progress"])
    self.assertEqual(status, 0)
    with open(out / "predictions.csv") as f:
      rows = list(csv.DictReader(f))
    self.assertLen(rows, 2)
    for row in rows:
      self.assertEqual(row["status"], "ok", row["reason"])
      findings = json.loads(pathlib.Path(row["findings_json"]).read_text())
      for cl in findings["clusters"]:
        self.assertEqual(list(cl["distribution"]),
                         vocabularies["distribution"])
        self.assertAlmostEqual(sum(cl["distribution"].values()), 1.0, 5)
      self.assertIsNone(findings["calcifications"][0]["morphology"])
      sr = structured_report.read_structured_report(row["structured_report"])
      self.assertLen(sr["groups"], len(findings["clusters"]))
      with open(row["overlay_png"], "rb") as f:
        self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")

  def test_heatmap_maps_back_through_crop_flip_and_resize(self):
    from mammojax.data import dicom  # pylint: disable=g-import-not-at-top
    from mammojax.inference import ingest  # pylint: disable=g-import-not-at-top
    import pydicom  # pylint: disable=g-import-not-at-top
    ds = pydicom.Dataset()
    ds.Modality, ds.ImageLaterality = "MG", "R"
    ds.Rows, ds.Columns = 60, 40
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelRepresentation, ds.SamplesPerPixel = 0, 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    pixels = np.zeros((60, 40), np.uint16)
    pixels[10:50, 15:40] = 3000  # A right breast: chest wall on the right.
    ds.PixelData = pixels.tobytes()
    view = dicom.load_dicom(ds, orient=True, crop=True, resize=(32, 32))
    self.assertTrue(view.flipped)
    # A map that is 1 on the view's breast goes back onto the stored breast.
    back = ingest.view_map_to_stored(view.image > 0.5, view)
    self.assertEqual(back.shape, (60, 40))
    self.assertGreater(back[12:48, 17:38].mean(), 0.95)
    self.assertLess(back[:, :12].max(), 0.05)


if __name__ == "__main__":
  absltest.main()

"""Tests of the annotations.json format (mammojax.data.annotations)."""

import copy
import json
import pathlib
import shutil
import tempfile

from absl.testing import absltest

from mammojax.data import annotations


def _example() -> dict:
  """A small valid annotation file as a dict."""
  return {
      "format": "mammojax-annotations",
      "format_version": 1,
      "dataset": "synthetic",
      "images": [{
          "image_id": "P0001_L_CC",
          "file": "P0001/P0001_L_CC.dcm",
          "patient_id": "P0001",
          "laterality": "L",
          "view": "CC",
          "rows": 100,
          "columns": 80,
          "pixel_spacing_mm": [0.085, 0.085],
          "density": "b",
          "calcifications": [
              {"id": 0, "center_xy": [10.5, 20.0],
               "contour_xy": [[10, 20], [11, 20]], "diameter_mm": 0.3,
               "morphology": "punctate", "cluster_id": 0},
              {"id": 3, "center_xy": [12, 22], "morphology": None,
               "cluster_id": 0},
          ],
          "clusters": [{"cluster_id": 0, "distribution": "grouped"}],
          "masses": [{"id": 0, "center_xy": [40, 50], "shape": "oval",
                      "margin": "spiculated", "pathology": "malignant"}],
          "labels": {"pathology": "malignant"},
      }],
  }


class AnnotationsTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.dir = pathlib.Path(tempfile.mkdtemp())
    self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)
    self.path = self.dir / "annotations.json"

  def _write(self, data) -> pathlib.Path:
    self.path.write_text(json.dumps(data))
    return self.path

  def _error(self, data) -> str:
    with self.assertRaises(ValueError) as cm:
      annotations.load_annotations(self._write(data))
    return str(cm.exception)

  def test_round_trip_and_defaults(self):
    annotations.save_annotations(self.path, _example())
    data = annotations.load_annotations(self.path)
    image = data["images"][0]
    self.assertEqual(data["vocabularies"]["morphology"][0], "punctate")
    self.assertLen(data["vocabularies"], 7)  # dataset defaults
    self.assertEqual(image["calcifications"][1]["contour_xy"], None)
    self.assertEqual(image["calcifications"][1]["diameter_mm"], None)
    self.assertEqual(image["clusters"][0]["calcification_ids"], [0, 3])
    self.assertIsNone(image["clusters"][0]["pathology"])
    self.assertIsNone(image["masses"][0]["contour_xy"])
    self.assertEqual(image["calcifications"][0]["center_xy"], [10.5, 20.0])
    # Saving the normalised copy again is a fixed point.
    annotations.save_annotations(self.path, data)
    self.assertEqual(annotations.load_annotations(self.path), data)
    self.assertEqual(
        annotations.resolve_file(self.path, image),
        self.dir / "P0001" / "P0001_L_CC.dcm")

  def test_minimal_image_defaults(self):
    data = _example()
    data["images"] = [{"image_id": "x", "file": "x.dcm", "laterality": "R",
                       "view": "MLO"}]
    image = annotations.load_annotations(self._write(data))["images"][0]
    self.assertEqual(image["patient_id"], "x")
    self.assertEqual(image["calcifications"], [])
    self.assertEqual(image["clusters"], [])
    self.assertEqual(image["masses"], [])
    self.assertEqual(image["labels"], {})
    self.assertIsNone(image["rows"])
    self.assertIsNone(image["density"])

  def test_unknown_morphology_message(self):
    data = _example()
    data["images"][0]["calcifications"][1]["morphology"] = "foo"
    self.assertEqual(
        self._error(data),
        f"{self.path}: image 'P0001_L_CC': calcification 3: morphology 'foo' "
        "not in vocabulary morphology=['punctate', 'amorphous', "
        "'coarse_heterogeneous', 'fine_pleomorphic', "
        "'fine_linear_branching']")

  def test_unknown_distribution_and_mass_labels(self):
    data = _example()
    data["images"][0]["clusters"][0]["distribution"] = "clustered"
    self.assertIn("image 'P0001_L_CC': cluster 0: distribution 'clustered' "
                  "not in vocabulary distribution=", self._error(data))
    data = _example()
    data["images"][0]["masses"][0]["margin"] = "fuzzy"
    self.assertIn("image 'P0001_L_CC': mass 0: margin 'fuzzy' not in "
                  "vocabulary margin=['circumscribed'", self._error(data))

  def test_missing_required_fields(self):
    data = _example()
    del data["images"][0]["view"]
    self.assertEqual(self._error(data),
                     f"{self.path}: image 'P0001_L_CC': missing required "
                     "field 'view'")
    data = _example()
    del data["images"][0]["calcifications"][0]["center_xy"]
    self.assertEqual(self._error(data),
                     f"{self.path}: image 'P0001_L_CC': calcifications[0]: "
                     "missing required field 'center_xy'")
    data = _example()
    del data["images"][0]["image_id"]
    self.assertEqual(self._error(data), f"{self.path}: images[0]: missing "
                     "required field 'image_id'")
    data = _example()
    del data["format_version"]
    self.assertEqual(self._error(data), f"{self.path}: missing required "
                     "field 'format_version'")

  def test_bad_values(self):
    cases = [
        (("laterality",), "B",
         "laterality must be one of ['L', 'R'], got 'B'"),
        (("calcifications", 0, "center_xy"), [1.0],
         "calcification 0: center_xy must be [x, y] finite numbers, got "
         "[1.0]"),
        (("calcifications", 0, "center_xy"), [500.0, 2.0],
         "calcification 0: center_xy [500.0, 2.0] outside the image (80 x "
         "100 columns x rows)"),
        (("calcifications", 0, "diameter_mm"), -1,
         "calcification 0: diameter_mm must be a positive number, got -1"),
        (("calcifications", 0, "cluster_id"), 7,
         "calcification 0: cluster_id 7 not among clusters [0]"),
        (("density",), "e",
         "density 'e' not in vocabulary density=['a', 'b', 'c', 'd']"),
        (("calcifications", 1, "id"), 0, "duplicate calcification id(s) [0]"),
        (("labels",), {"x": [1]}, "labels['x'] must be a JSON scalar"),
        (("rows",), 0, "rows must be an integer >= 1, got 0"),
        (("calcifications", 0, "colour"), "red", "unknown field(s) "
         "['colour']"),
    ]
    for keys, value, message in cases:
      data = copy.deepcopy(_example())
      target = data["images"][0]
      for k in keys[:-1]:
        target = target[k]
      target[keys[-1]] = value
      error = self._error(data)
      self.assertIn(message, error)
      self.assertTrue(error.startswith(f"{self.path}: image 'P0001_L_CC'"),
                      msg=error)

  def test_file_level_errors(self):
    self.path.write_text("{not json")
    with self.assertRaisesRegex(ValueError, "invalid JSON"):
      annotations.load_annotations(self.path)
    with self.assertRaisesRegex(ValueError, "cannot read annotation file"):
      annotations.load_annotations(self.dir / "missing.json")
    data = _example()
    data["format"] = "coco"
    self.assertIn("format must be 'mammojax-annotations', got 'coco'",
                  self._error(data))
    data = _example()
    data["images"].append(copy.deepcopy(data["images"][0]))
    self.assertEqual(self._error(data),
                     f"{self.path}: duplicate image_id 'P0001_L_CC'")
    data = _example()
    data["dataset"] = "mine"
    self.assertIn("missing required field 'vocabularies'", self._error(data))

  def test_custom_vocabularies(self):
    data = _example()
    data["dataset"] = "mine"
    data["vocabularies"] = {"morphology": ["punctate", "other"],
                            "distribution": ["grouped"],
                            "mass_shape": ["oval"],
                            "mass_margin": ["spiculated"],
                            "pathology": ["benign", "malignant"]}
    out = annotations.load_annotations(self._write(data))
    self.assertEqual(out["vocabularies"]["morphology"], ["punctate", "other"])
    data["vocabularies"]["morphology"] = ["x", "x"]
    self.assertIn("vocabularies['morphology'] has duplicate names",
                  self._error(data))

  def test_save_validates(self):
    data = _example()
    data["images"][0]["view"] = ""
    with self.assertRaisesRegex(ValueError, "view must be a non-empty string"):
      annotations.save_annotations(self.path, data)
    self.assertFalse(self.path.exists())


if __name__ == "__main__":
  absltest.main()

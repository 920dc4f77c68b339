"""Tests of mammojax.data.vocab."""

from absl.testing import absltest

from mammojax.data import vocab


class VocabTest(absltest.TestCase):

  def test_synthetic_classes(self):
    self.assertEqual(
        vocab.get_vocabulary("synthetic", "morphology"),
        ("punctate", "amorphous", "coarse_heterogeneous", "fine_pleomorphic",
         "fine_linear_branching"))
    self.assertEqual(
        vocab.get_vocabulary("synthetic", "distribution"),
        ("diffuse", "regional", "grouped", "linear", "segmental"))
    self.assertLen(vocab.get_vocabulary("synthetic", "mass_margin"), 5)
    self.assertEqual(vocab.get_vocabulary("synthetic", "density"),
                     ("a", "b", "c", "d"))

  def test_cbis_and_inhouse(self):
    self.assertEqual(
        vocab.get_vocabulary("cbis_ddsm", "distribution"),
        ("clustered", "segmental", "linear", "regional",
         "diffusely_scattered"))
    self.assertIn("round_and_regular",
                  vocab.get_vocabulary("cbis_ddsm", "morphology"))
    self.assertIn("architectural_distortion",
                  vocab.get_vocabulary("cbis_ddsm", "mass_shape"))
    self.assertEqual(
        vocab.get_vocabulary("inhouse", "morphology"),
        ("not_suspicious", "amorphous", "heterogeneous", "pleomorphic",
         "linear"))

  def test_unique_names(self):
    for dataset, fields in vocab.VOCABULARIES.items():
      for field, names in fields.items():
        self.assertLen(set(names), len(names), msg=f"{dataset}.{field}")

  def test_unknown_dataset_and_field(self):
    with self.assertRaisesRegex(
        ValueError,
        r"unknown dataset 'foo'; known datasets: \['cbis_ddsm', 'inhouse', "
        r"'synthetic'\]"):
      vocab.get_vocabulary("foo", "morphology")
    with self.assertRaisesRegex(
        ValueError, r"dataset 'inhouse' has no vocabulary 'mass_shape'"):
      vocab.get_vocabulary("inhouse", "mass_shape")

  def test_encode_decode(self):
    names = vocab.get_vocabulary("synthetic", "morphology")
    self.assertEqual(vocab.encode("amorphous", names, field="morphology"), 1)
    self.assertEqual(vocab.encode(None, names, field="morphology"),
                     vocab.UNKNOWN)
    self.assertEqual(vocab.decode(4, names), "fine_linear_branching")
    self.assertIsNone(vocab.decode(-1, names))
    with self.assertRaisesRegex(ValueError, "out of range"):
      vocab.decode(5, names)

  def test_encode_error_message(self):
    names = ("a", "b")
    with self.assertRaises(ValueError) as cm:
      vocab.encode("c", names, field="density", where="f.json: image 'x'")
    self.assertEqual(
        str(cm.exception),
        "f.json: image 'x': density 'c' not in vocabulary density=['a', 'b']")


if __name__ == "__main__":
  absltest.main()

"""Tests of the GloVe-format word-vector loader (attribute-node inputs)."""

from absl.testing import absltest
import numpy as np

from mammojax.data import word_vectors

GLOVE = """the 0.1 0.2 0.3
round 1.0 0.0 -1.0
Oval 0.5 0.5 0.5
ill 2.0 4.0 6.0
defined 0.0 2.0 0.0
ill-defined 9.0 9.0 9.0
new york -1.0 -2.0 -3.0
spiculated 1e-1 2e-1 3e-1
"""


class WordVectorsTest(absltest.TestCase):

  def _file(self, text=GLOVE):
    return self.create_tempfile("glove.txt", content=text).full_path

  def test_lookup_whole_term_mean_of_words_and_spaces(self):
    path = self._file()
    vectors = word_vectors.load_word_vectors(
        path, ["round", "oval", "ill_defined", "spiculated", "new_york"]
    )
    self.assertEqual(vectors.shape, (5, 3))
    self.assertEqual(vectors.dtype, np.float32)
    np.testing.assert_allclose(vectors[0], [1, 0, -1])
    np.testing.assert_allclose(vectors[1], [0.5, 0.5, 0.5])  # case-folded
    # The whole term ("ill-defined") wins over the mean of its words.
    np.testing.assert_allclose(vectors[2], [9, 9, 9])
    np.testing.assert_allclose(vectors[3], [0.1, 0.2, 0.3], rtol=1e-6)
    # A GloVe-840B-style word with a space.
    np.testing.assert_allclose(vectors[4], [-1, -2, -3])
    no_whole = self._file(GLOVE.replace("ill-defined 9.0 9.0 9.0\n", ""))
    vectors = word_vectors.load_word_vectors(no_whole, ["ill_defined"], dim=3)
    np.testing.assert_allclose(vectors[0], [1, 3, 3])  # mean of ill, defined

  def test_missing_words_are_named(self):
    with self.assertRaisesRegex(
        word_vectors.WordVectorError,
        r"no vector for 2 attribute value\(s\): 'lobulated' \(missing: "
        r"lobulated\); 'lymph_node' \(missing: lymph, node\)",
    ):
      word_vectors.load_word_vectors(
          self._file(), ["round", "lobulated", "lymph_node"]
      )

  def test_wrong_width(self):
    with self.assertRaisesRegex(
        word_vectors.WordVectorError,
        r"attribute_embeddings=.*vectors have 3 numbers, expected 300 "
        r"\(config\.model\.attribute_embedding_dim\)",
    ):
      word_vectors.load_word_vectors(self._file(), ["round"], dim=300)
    ragged = self._file(GLOVE + "oops 1.0 2.0\n")
    with self.assertRaisesRegex(
        word_vectors.WordVectorError, r"line 9: 2 numbers, expected 3 like "
        r"line 1",
    ):
      word_vectors.load_word_vectors(ragged, ["round"])
    bad = self._file("round 1.0 x 2.0\n")
    with self.assertRaisesRegex(word_vectors.WordVectorError,
                                r"line 1: not a number in the vector"):
      word_vectors.load_word_vectors(bad, ["round"])

  def test_missing_or_empty_file(self):
    with self.assertRaisesRegex(word_vectors.WordVectorError,
                                r"no such file"):
      word_vectors.load_word_vectors("/nonexistent/glove.txt", ["round"])
    with self.assertRaisesRegex(word_vectors.WordVectorError, r"empty"):
      word_vectors.load_word_vectors(self._file("\n\n"), ["round"])


if __name__ == "__main__":
  absltest.main()

"""Tests of DAE-GCN's attribute graph on real CBIS-DDSM mass rows.

The rows are lines 2-25 and 58 of ``mass_case_description_train_set.csv``
(``tests/testdata/cbis_ddsm/``, the TCIA file kept whole, see its
SOURCES.md), parsed by ``mammojax.data.sources.cbis_ddsm`` with the default
``LabelPolicy`` (most suspicious atom; N/A kept as missing). By hand
(shape / margin, rows):

* irregular / spiculated: 2, 3, 9 (``ILL_DEFINED-SPICULATED`` -> spiculated),
  16, 17, 22-25 -> 9 (rows 2, 3 are ``IRREGULAR-ARCHITECTURAL_DISTORTION``:
  both rank 4, the first listed wins);
* architectural_distortion / ill_defined: 4, 5 -> 2;
  architectural_distortion / N/A: 58 -> 1;
* oval / circumscribed: 6, 10-15, 21 -> 8; oval / ill_defined: 7, 8, 20 ->
  3; oval / obscured: 18, 19 -> 2.

So N: irregular 9, architectural_distortion 3, oval 13, spiculated 9,
ill_defined 5, circumscribed 8, obscured 2 (the other 6 values 0), and
P = M / N: P(spic|irr) = 1, P(irr|spic) = 1, P(ill|AD) = 2/3,
P(AD|ill) = 2/5, P(circ|oval) = 8/13, P(oval|circ) = 1, P(ill|oval) = 3/13,
P(oval|ill) = 3/5, P(obsc|oval) = 2/13, P(oval|obsc) = 1. With tau = 0.4
every pair but ill|oval and obsc|oval is an edge (AD|ill = 0.4 exactly:
``>=``), and column sums are 1 except oval's (3: from circ, ill, obsc).
"""

import pathlib

from absl.testing import absltest
import jax.numpy as jnp
import numpy as np

from mammojax.data import vocab
from mammojax.data.sources import cbis_ddsm
from mammojax.objectives import attribute_graph as ag

CSV = (pathlib.Path(__file__).resolve().parent.parent / "testdata"
       / "cbis_ddsm" / "mass_case_description_train_set.csv")
LINES = tuple(range(2, 26)) + (58,)
GROUPS = ("mass_shape", "mass_margin")


def _real_rows():
  """Nodes and ``[25, 2]`` labels of the fixture rows."""
  rows, _ = cbis_ddsm.parse_case_descriptions(
      {("mass", "train"): CSV}, abnormality_types=("mass",)
  )
  rows = [r for r in rows if r.csv_row in LINES]
  vocabularies = {g: vocab.get_vocabulary("cbis_ddsm", g) for g in GROUPS}
  nodes = ag.attribute_nodes(vocabularies, GROUPS)
  labels = np.asarray([
      [-1 if r.labels[g] is None else list(vocabularies[g]).index(
          r.labels[g]) for g in GROUPS]
      for r in rows
  ])
  return nodes, labels, rows


class CorrelationMatrixTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.nodes, cls.labels, cls.rows = _real_rows()
    cls.idx = {n.split("=")[1]: i for i, n in enumerate(cls.nodes.names)}

  def test_rows_and_nodes(self):
    self.assertLen(self.rows, 25)
    self.assertEqual(self.nodes.group_sizes, (8, 5))
    self.assertEqual(self.nodes.names[0], "mass_shape=round")
    self.assertEqual(self.nodes.names[8], "mass_margin=circumscribed")
    # Row 58: margin N/A -> missing.
    self.assertEqual(self.labels[-1].tolist(),
                     [self.idx["architectural_distortion"], -1])

  def test_hand_computed_counts(self):
    m, n = ag.cooccurrence(self.nodes, self.labels)
    i = self.idx
    expected_n = np.zeros(13, np.int64)
    for name, count in (("irregular", 9), ("architectural_distortion", 3),
                        ("oval", 13), ("spiculated", 9), ("ill_defined", 5),
                        ("circumscribed", 8), ("obscured", 2)):
      expected_n[i[name]] = count
    np.testing.assert_array_equal(n, expected_n)
    expected_m = np.zeros((13, 13), np.int64)
    for a, b, count in (("irregular", "spiculated", 9),
                        ("architectural_distortion", "ill_defined", 2),
                        ("oval", "circumscribed", 8),
                        ("oval", "ill_defined", 3),
                        ("oval", "obscured", 2)):
      expected_m[i[a], i[b]] = expected_m[i[b], i[a]] = count
    np.testing.assert_array_equal(m, expected_m)
    self.assertEqual(
        ag.unseen_attributes(self.nodes, n),
        ["mass_shape=round", "mass_shape=lobulated", "mass_shape=lymph_node",
         "mass_shape=asymmetric_breast_tissue",
         "mass_shape=focal_asymmetric_density",
         "mass_margin=microlobulated"],
    )

  def _hand_matrix(self, diagonal):
    i = self.idx
    a = np.zeros((13, 13))
    q = 0.25 / (1 + 1e-6)
    q3 = 0.25 / (3 + 1e-6)
    for src, dst, w in (("irregular", "spiculated", q),
                        ("spiculated", "irregular", q),
                        ("architectural_distortion", "ill_defined", q),
                        ("ill_defined", "architectural_distortion", q),
                        ("oval", "circumscribed", q),
                        ("circumscribed", "oval", q3),
                        ("ill_defined", "oval", q3),
                        ("obscured", "oval", q3)):
      a[i[src], i[dst]] = w
    np.fill_diagonal(a, diagonal)
    return a

  def test_hand_computed_matrix_both_diagonals(self):
    m, n = ag.cooccurrence(self.nodes, self.labels)
    for diagonal, value in (("one_minus_p", 0.75), ("one", 1.0)):
      a = ag.correlation_matrix(
          m, n, tau=0.4, p=0.25, diagonal=diagonal, names=self.nodes.names,
          unseen="isolate",
      )
      np.testing.assert_allclose(a, self._hand_matrix(value), atol=1e-7)
    # tau above 2/5 drops the AD|ill edge (0.4) but keeps ill|AD (2/3).
    a = ag.correlation_matrix(m, n, tau=0.41, p=0.25, unseen="isolate")
    i = self.idx
    self.assertEqual(a[i["ill_defined"], i["architectural_distortion"]], 0)
    self.assertGreater(a[i["architectural_distortion"], i["ill_defined"]], 0)

  def test_unseen_values_are_an_error_naming_them(self):
    m, n = ag.cooccurrence(self.nodes, self.labels)
    with self.assertRaisesRegex(
        ValueError, r"never occur.*'mass_shape=round'.*config\.graph\.unseen"
    ):
      ag.correlation_matrix(m, n, tau=0.4, p=0.25, names=self.nodes.names)

  def test_normalisation_by_hand(self):
    a = self._hand_matrix(0.75)
    adj = ag.normalize_adjacency(a)
    i = self.idx
    d = a.sum(1)
    # Row sums: circ and obsc 0.75 + 1/12, ill 0.75 + 0.25 + 1/12.
    self.assertAlmostEqual(d[i["circumscribed"]], 0.75 + 0.25 / 3, places=5)
    self.assertAlmostEqual(d[i["ill_defined"]], 1.0 + 0.25 / 3, places=5)
    # The transpose: adj[oval, circ] carries A'[circ, oval] = 1/12.
    self.assertAlmostEqual(
        adj[i["oval"], i["circumscribed"]],
        (0.25 / 3) / np.sqrt(1.0 * (0.75 + 0.25 / 3)), places=5,
    )
    self.assertAlmostEqual(
        adj[i["circumscribed"], i["oval"]],
        0.25 / np.sqrt(1.0 * (0.75 + 0.25 / 3)), places=5,
    )
    self.assertAlmostEqual(adj[i["round"], i["round"]], 1.0, places=5)
    np.testing.assert_allclose(
        adj, np.diag(d ** -0.5) @ a.T @ np.diag(d ** -0.5), rtol=1e-6
    )

  def test_bad_arguments_name_the_config_key(self):
    m, n = ag.cooccurrence(self.nodes, self.labels)
    for kwargs, key in ((dict(tau=0.0, p=0.25), "tau"),
                        (dict(tau=0.4, p=1.0), "p"),
                        (dict(tau=0.4, p=0.25, diagonal="two"), "diagonal")):
      with self.assertRaisesRegex(ValueError, rf"config\.graph\.{key}="):
        ag.correlation_matrix(m, n, unseen="isolate", **kwargs)


class NodesAndLossTest(absltest.TestCase):

  def test_group_with_one_value_or_unknown_vocabulary(self):
    with self.assertRaisesRegex(ValueError, r"'mass_shape' has 1 value"):
      ag.attribute_nodes({"mass_shape": ["oval"], "mass_margin": ["a", "b"]},
                         GROUPS)
    with self.assertRaisesRegex(ValueError, r"'mass_margin' is not a vocab"):
      ag.attribute_nodes({"mass_shape": ["a", "b"]}, GROUPS)
    nodes = ag.attribute_nodes({"mass_shape": ["a", "b"],
                                "mass_margin": ["c", "d", "e"]}, GROUPS)
    with self.assertRaisesRegex(ValueError, r"'mass_margin': value index 3"):
      ag.node_labels(nodes, np.asarray([[0, 3]]))

  def test_group_cross_entropy_masks_missing_values(self):
    scores = jnp.asarray([[1.0, 0.0, 2.0, 0.0, 0.0],
                          [0.0, 3.0, 0.0, 1.0, 0.0],
                          [5.0, 5.0, 5.0, 5.0, 5.0]])
    labels = jnp.asarray([[0, 2], [-1, 1], [1, 0]])
    mask = jnp.asarray([True, True, False])  # item 2 is padding
    sums, counts = ag.group_cross_entropy_terms(scores, labels, mask, (2, 3))
    ce_shape = -np.log(np.exp(1) / (np.exp(1) + 1))
    ce_margin = (-np.log(1 / (np.exp(2) + 2))
                 - np.log(np.exp(1) / (2 + np.exp(1))))
    np.testing.assert_allclose(sums, [ce_shape, ce_margin], rtol=1e-6)
    np.testing.assert_array_equal(counts, [1, 2])
    probs = ag.group_probabilities(scores, (2, 3))
    np.testing.assert_allclose(probs[:, :2].sum(1), 1, rtol=1e-6)
    np.testing.assert_allclose(probs[:, 2:].sum(1), 1, rtol=1e-6)


if __name__ == "__main__":
  absltest.main()

"""Signed graph (eq. 3) and J_g (eq. 4) against hand-computed examples."""

from absl.testing import absltest
import jax
import jax.numpy as jnp
import numpy as np

from mammojax.objectives import signed_graph as sg


def _unit(degrees):
  t = np.deg2rad(np.asarray(degrees, np.float64))
  return np.stack([np.cos(t), np.sin(t)], axis=1).astype(np.float32)


# Items: class 0 original (0 deg), class 0 original (30), class 0 positive
# neighbour (90), class 1 original (180), class 0 negative neighbour (-45).
ANGLES = [0.0, 30.0, 90.0, 180.0, -45.0]
GROUP = jnp.asarray([0, 0, 0, 1, 0])
KIND = jnp.asarray([sg.ORIGINAL, sg.ORIGINAL, sg.POSITIVE, sg.ORIGINAL,
                    sg.NEGATIVE])
VALID = jnp.ones(5, bool)


class SignedGraphTest(absltest.TestCase):

  def test_angular_distance(self):
    d = np.asarray(sg.angular_distance_matrix(_unit(ANGLES), _unit(ANGLES)))
    # |angle difference| / 180.
    self.assertAlmostEqual(d[0, 1], 30 / 180, places=5)
    self.assertAlmostEqual(d[1, 4], 75 / 180, places=5)
    self.assertAlmostEqual(d[0, 3], 1.0, places=3)
    np.testing.assert_allclose(
        d, sg.angular_distance_matrix_np(_unit(ANGLES), _unit(ANGLES)),
        atol=1e-5,
    )
    # Scale invariance.
    np.testing.assert_allclose(
        sg.angular_distance_matrix(3.0 * _unit(ANGLES), _unit(ANGLES)), d,
        atol=1e-5,
    )

  def test_graph_n1_n1_by_hand(self):
    x = _unit(ANGLES)
    phi = sg.signed_graph(
        sg.angular_distance_matrix(x, x), GROUP, KIND, VALID, n_pos=1,
        n_neg=1,
    )
    expected = np.array([
        [0, 1, 0, 0, -1],   # nearest class-0 on-manifold: 1; negative: 4.
        [1, 0, 0, 0, -1],   # 0 (30 deg) before 2 (60 deg); 4 (75) before 3.
        [0, 1, 0, -1, 0],   # 1 (60) before 0 (90); 3 (90) before 4 (135).
        [0, 0, -1, 0, 0],   # class 1 has no other on-manifold item.
        [0, 0, 0, 0, 0],    # a negative neighbour is never an anchor.
    ], np.float32)
    np.testing.assert_array_equal(phi, expected)
    # J_g with h = x, m = 1: rows 1/6 + 3/4, 1/6 + 7/12, 1/3 + 1/2, 1/2.
    jg = sg.regulariser(jnp.asarray(x), phi, margin=1.0)
    self.assertAlmostEqual(float(jg), 3.0, places=4)
    self.assertEqual(
        float(sg.anchor_count(GROUP, KIND, VALID, n_pos=1, n_neg=1)), 4.0
    )
    # J_g's normaliser: the 7 nonzero phi_ij (rows 2 + 2 + 2 + 1).
    self.assertEqual(
        float(sg.edge_count(GROUP, KIND, VALID, n_pos=1, n_neg=1)), 7.0
    )

  def test_graph_n2_n2_and_zero_neighbours(self):
    x = _unit(ANGLES)
    d = sg.angular_distance_matrix(x, x)
    phi = np.asarray(sg.signed_graph(d, GROUP, KIND, VALID, n_pos=2,
                                     n_neg=2))
    expected = np.array([
        [0, 1, 1, -1, -1],
        [1, 0, 1, -1, -1],
        [1, 1, 0, -1, -1],
        [0, -1, -1, 0, -1],  # 2 (90 deg) and 4 (135) before 1 (150), 0.
        [0, 0, 0, 0, 0],
    ], np.float32)
    expected[3] = [0, 0, -1, 0, -1]
    np.testing.assert_array_equal(phi, expected)
    # Class 1 has no +1 candidate: its row holds 2 edges, the others 4.
    self.assertEqual(
        float(sg.edge_count(GROUP, KIND, VALID, n_pos=2, n_neg=2)),
        float(np.abs(expected).sum()),
    )
    self.assertEqual(float(np.abs(expected).sum()), 14.0)
    # n+ = n- = 0: no edges, J_g = 0, no anchors counted.
    none = sg.signed_graph(d, GROUP, KIND, VALID, n_pos=0, n_neg=0)
    self.assertEqual(float(jnp.abs(none).sum()), 0.0)
    self.assertEqual(
        float(sg.anchor_count(GROUP, KIND, VALID, n_pos=0, n_neg=0)), 0.0
    )
    self.assertEqual(
        float(sg.edge_count(GROUP, KIND, VALID, n_pos=0, n_neg=0)), 0.0
    )

  def test_graph_from_another_space(self):
    # The same items ranked in an embedding space where the positive
    # neighbour (item 2) sits at 10 deg: anchor 0's +1 edge moves to it.
    x = _unit(ANGLES)
    h = _unit([0.0, 30.0, 10.0, 180.0, -45.0])
    phi_x = sg.signed_graph(sg.angular_distance_matrix(x, x), GROUP, KIND,
                            VALID, n_pos=1, n_neg=1)
    phi_h = sg.signed_graph(sg.angular_distance_matrix(h, h), GROUP, KIND,
                            VALID, n_pos=1, n_neg=1)
    self.assertEqual(float(phi_x[0, 1]), 1.0)
    self.assertEqual(float(phi_h[0, 2]), 1.0)
    self.assertEqual(float(phi_h[0, 1]), 0.0)
    # J_g of h on the graph of x: rows d_h(0,1) + relu(1 - d_h(0,4)), ...
    dh = np.asarray(sg.angular_distance_matrix_np(h, h))
    by_hand = (dh[0, 1] + (1 - dh[0, 4]) + dh[1, 0] + (1 - dh[1, 4])
               + dh[2, 1] + (1 - dh[2, 3]) + (1 - dh[3, 2]))
    self.assertAlmostEqual(
        float(sg.regulariser(jnp.asarray(h), phi_x)), by_hand, places=4
    )

  def test_padding_excluded_and_gradients_finite(self):
    x = _unit(ANGLES)
    valid = jnp.asarray([True, True, True, True, False])
    d = sg.angular_distance_matrix(x, x)
    phi = sg.signed_graph(d, GROUP, KIND, valid, n_pos=1, n_neg=1)
    self.assertEqual(float(jnp.abs(phi[:, 4]).sum()), 0.0)
    # Anchor 0's -1 edge moves to item 3 (the only other negative).
    self.assertEqual(float(phi[0, 3]), -1.0)
    grad = jax.grad(lambda h: sg.regulariser(h, phi))(
        jnp.concatenate([jnp.asarray(x[:4]), jnp.zeros((1, 2))])
    )
    self.assertTrue(bool(jnp.all(jnp.isfinite(grad))))
    self.assertEqual(float(jnp.abs(grad[4]).sum()), 0.0)


if __name__ == "__main__":
  absltest.main()

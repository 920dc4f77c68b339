"""Tests for mammojax.data.calcifications."""

import numpy as np
from absl.testing import absltest
from absl.testing import parameterized

from mammojax.data import calcifications as calcs


class ComponentsTest(absltest.TestCase):

  def test_components_from_hand_made_mask(self):
    mask = np.zeros((12, 16), np.uint8)
    mask[2:5, 5:8] = 1  # 3x3 square.
    mask[8, 1:3] = 1  # 1x2 bar: half-pixel centre.
    mask[9, 3] = 1  # Touches the bar diagonally: same component (8-conn).
    # Ring with a pixel inside its hole: one external contour.
    mask[6:11, 10:15] = 1
    mask[7:10, 11:14] = 0
    mask[8, 12] = 1
    got = calcs.components_from_mask(mask)
    self.assertLen(got, 3)
    order = np.argsort(got.centers_xy[:, 1])
    np.testing.assert_array_equal(
        got.centers_xy[order], [[6.0, 3.0], [12.0, 8.0], [2.0, 8.5]]
    )
    np.testing.assert_array_equal(
        got.bboxes[order], [[5, 2, 7, 4], [10, 6, 14, 10], [1, 8, 3, 9]]
    )
    np.testing.assert_array_equal(got.areas[order], [9, 25, 3])
    self.assertEqual(got.label_image.shape, mask.shape)
    self.assertEqual(got.label_image.max(), 3)

  def test_empty_mask(self):
    got = calcs.components_from_mask(np.zeros((5, 5), bool))
    self.assertLen(got, 0)
    self.assertEqual(got.centers_xy.shape, (0, 2))

  def test_from_points(self):
    got = calcs.from_points(
        [np.array([[10.0, 20.0]]), np.array([[0, 0], [4, 0], [4, 2], [0, 2]])],
        radius_px=2.0,
    )
    np.testing.assert_allclose(got.centers_xy, [[10, 20], [2, 1]])
    np.testing.assert_allclose(got.bboxes, [[8, 18, 12, 22], [0, 0, 4, 2]])
    np.testing.assert_allclose(got.areas, [np.pi * 4, 8.0])
    self.assertIsNone(got.label_image)


class PatchesTest(parameterized.TestCase):

  def test_patch_zero_padded_at_border_exact(self):
    image = np.arange(1, 37, dtype=np.float32).reshape(6, 6) / 36
    patches = calcs.extract_patches(
        image, np.array([[0.0, 0.0], [2.6, 3.4], [5.0, 5.0]]), size=4
    )
    self.assertEqual(patches.shape, (3, 4, 4))
    self.assertEqual(patches.dtype, np.float32)
    want0 = np.zeros((4, 4), np.float32)
    want0[2:, 2:] = image[:2, :2]
    np.testing.assert_array_equal(patches[0], want0)
    # round(2.6, 3.4) = (3, 3): rows/cols 1..4.
    np.testing.assert_array_equal(patches[1], image[1:5, 1:5])
    want2 = np.zeros((4, 4), np.float32)
    want2[:3, :3] = image[3:, 3:]
    np.testing.assert_array_equal(patches[2], want2)

  def test_round_half_up_and_odd_size(self):
    image = np.arange(49, dtype=np.float32).reshape(7, 7)
    patch = calcs.extract_patches(image, np.array([[2.5, 3.5]]), size=3)[0]
    np.testing.assert_array_equal(patch, image[3:6, 2:5])

  def test_matches_authors_slicing_for_14(self):
    # Authors: cx = x + w // 2; img[cy - 7:cy + 7, cx - 7:cx + 7].
    rng = np.random.default_rng(0)
    image = rng.random((60, 50)).astype(np.float32)
    mask = np.zeros_like(image, bool)
    mask[20:24, 30:33] = True  # w=3, h=4.
    comp = calcs.components_from_mask(mask)
    patch = calcs.extract_patches(image, comp.centers_xy, size=14)[0]
    cx, cy = 30 + 3 // 2, 20 + 4 // 2
    np.testing.assert_array_equal(
        patch, image[cy - 7 : cy + 7, cx - 7 : cx + 7]
    )

  def test_far_outside_and_empty(self):
    image = np.ones((5, 5), np.float32)
    out = calcs.extract_patches(image, np.array([[-100.0, 300.0]]), size=4)
    np.testing.assert_array_equal(out, np.zeros((1, 4, 4)))
    self.assertEqual(
        calcs.extract_patches(image, np.zeros((0, 2)), size=14).shape,
        (0, 14, 14),
    )

  def test_normalise_coords(self):
    out = calcs.normalise_coords(np.array([[50.0, 10.0]]), (20, 100))
    np.testing.assert_allclose(out, [[0.5, 0.5]])
    self.assertEqual(out.dtype, np.float32)


class LabelsAndMatchingTest(absltest.TestCase):

  def test_node_labels_from_masks(self):
    mask_a = np.zeros((40, 40), bool)
    mask_a[0:10, 0:10] = True
    mask_b = np.zeros((40, 40), bool)
    mask_b[8:30, 8:30] = True
    centers = np.array([[3.0, 3.0], [20.0, 20.0], [38.0, 2.0], [9.0, 9.0]])
    got = calcs.node_labels_from_masks(
        centers, [mask_a, mask_b], [2, 4], size=4
    )
    # Node 3's 4x4 window (7..10) overlaps b on 9 pixels, a on 9: tie -> a.
    np.testing.assert_array_equal(got, [2, 4, -1, 2])
    self.assertEqual(got.dtype, np.int32)
    np.testing.assert_array_equal(
        calcs.node_labels_from_masks(centers, [], []), [-1, -1, -1, -1]
    )

  def test_match_to_annotations(self):
    det = np.array([[0.0, 0.0], [10.0, 0.0], [10.5, 0.0], [50.0, 50.0]])
    ref = np.array([[0.4, 0.0], [10.2, 0.0], [90.0, 0.0]])
    m = calcs.match_to_annotations(det, ref, tol_px=1.0)
    self.assertEqual(
        (m.true_positives, m.false_positives, m.false_negatives), (2, 2, 1)
    )
    self.assertEqual(sorted(map(tuple, m.pairs.tolist())), [(0, 0), (1, 1)])
    self.assertAlmostEqual(m.precision, 0.5)
    self.assertAlmostEqual(m.recall, 2 / 3)
    empty = calcs.match_to_annotations(np.zeros((0, 2)), ref, 1.0)
    self.assertEqual(empty.recall, 0.0)


if __name__ == "__main__":
  absltest.main()

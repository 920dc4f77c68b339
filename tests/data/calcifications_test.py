"""Tests for mammojax.data.calcifications."""

import importlib.util

import numpy as np
from absl.testing import absltest
from absl.testing import parameterized
from scipy import ndimage

from mammojax.data import calcifications as calcs

_HAS_SYNTHETIC = (
    importlib.util.find_spec("mammojax.data.synthetic") is not None
)


def render_blobs(seed, shape=(256, 256), spacing_mm=0.07, n=15):
  """Small textured image with n bright disks; returns image, centres, mm."""
  rng = np.random.default_rng(seed)
  height, width = shape
  image = np.full(shape, 0.45)
  # Power falling with frequency, as in breast tissue: weak at calc scale.
  for sigma, amp in ((3, 0.004), (8, 0.015), (20, 0.04)):
    tex = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    image += amp * tex / tex.std()
  yy, xx = np.mgrid[0:height, 0:width]
  centers, diameters = [], []
  while len(centers) < n:
    c = rng.uniform(12, [width - 12, height - 12])
    if centers and np.hypot(*(np.array(centers) - c).T).min() < 1 / spacing_mm:
      continue
    d_mm = rng.uniform(0.2, 0.8)
    r = d_mm / spacing_mm / 2
    profile = np.clip(1 - ((xx - c[0]) ** 2 + (yy - c[1]) ** 2) / r**2, 0, None)
    image += rng.uniform(0.06, 0.2) * np.sqrt(profile)
    centers.append(c)
    diameters.append(d_mm)
  image += 0.01 * rng.standard_normal(shape)
  return np.clip(image, 0, 1).astype(np.float32), np.array(centers)


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


class DetectorTest(absltest.TestCase):

  def test_flat_image_has_no_detections(self):
    got = calcs.detect_calcifications(
        np.full((64, 64), 0.3, np.float32), pixel_spacing_mm=0.07
    )
    self.assertLen(got, 0)

  def test_roi_mask_and_authors_method(self):
    image = np.full((64, 64), 0.3, np.float32)
    image[10:13, 10:13] = 0.8
    image[40:43, 50:53] = 0.8
    roi = np.zeros_like(image, bool)
    roi[:, :32] = True
    for method, threshold in (
        ("mad", 8.0), ("authors", 40.0), ("multiscale", None)
    ):
      got = calcs.detect_calcifications(
          image, pixel_spacing_mm=0.07, method=method, threshold=threshold
      )
      np.testing.assert_allclose(
          got.centers_xy, [[11.0, 11.0], [51.0, 41.0]], err_msg=method
      )
      got = calcs.detect_calcifications(
          image, pixel_spacing_mm=0.07, roi_mask=roi, method=method,
          threshold=threshold,
      )
      np.testing.assert_allclose(got.centers_xy, [[11.0, 11.0]])

  def test_unknown_method(self):
    with self.assertRaisesRegex(ValueError, "multiscale"):
      calcs.detect_calcifications(
          np.zeros((8, 8)), pixel_spacing_mm=0.1, method="nope"
      )

  def test_multiscale_finds_thin_line_and_splits_neighbours(self):
    # A thin faint line (0.1 mm wide, 1.4 mm long) and two touching-range
    # dots 0.8 mm apart in white noise: one detection each.
    rng = np.random.default_rng(0)
    spacing = 0.07
    image = 0.4 + 0.01 * rng.standard_normal((160, 160))
    yy, xx = np.mgrid[0:160, 0:160]
    t = np.clip(((xx - 40) * 0.8 + (yy - 40) * 0.6), 0, 20)
    dist = np.hypot(xx - 40 - 0.8 * t, yy - 40 - 0.6 * t)
    image += 0.03 * np.exp(-0.5 * (dist / 0.7) ** 2)
    dots = [(110.0, 100.0), (110.0 + 0.8 / spacing, 100.0)]
    for x, y in dots:
      image += 0.08 * np.exp(-0.5 * ((xx - x) ** 2 + (yy - y) ** 2) / 1.5**2)
    got = calcs.detect_calcifications(image, pixel_spacing_mm=spacing)
    line_centre = (40 + 0.8 * 10, 40 + 0.6 * 10)
    m = calcs.match_to_annotations(
        got.centers_xy, [line_centre] + dots, 0.5 / spacing
    )
    self.assertEqual((m.true_positives, m.false_positives), (3, 0))

  def test_precision_recall_on_rendered_blobs(self):
    # Measured (scripts/measure_detector.py --source=blobs, 10 images):
    # default (multiscale) P 0.99, R 1.00 ("mad" P 0.98); the thresholds
    # leave margin.
    tp = fp = fn = 0
    for seed in range(3):
      image, centers = render_blobs(seed)
      det = calcs.detect_calcifications(image, pixel_spacing_mm=0.07)
      m = calcs.match_to_annotations(det.centers_xy, centers, 0.5 / 0.07)
      tp, fp, fn = (
          tp + m.true_positives,
          fp + m.false_positives,
          fn + m.false_negatives,
      )
    self.assertGreaterEqual(tp / (tp + fp), 0.9)
    self.assertGreaterEqual(tp / (tp + fn), 0.9)

  @absltest.skipUnless(_HAS_SYNTHETIC, "mammojax.data.synthetic missing")
  def test_precision_recall_on_held_out_synthetic_mammograms(self):
    # pylint: disable-next=g-import-not-at-top
    from mammojax.data import synthetic

    # The detector was tuned on seeds 0-1; these images are from the
    # held-out seeds 2-4 (one per seed, fixed in advance). Held-out
    # measurement (scripts/measure_detector.py --seeds=2,3,4
    # --num_images=8, half-size breasts, 24 images): multiscale P 0.96,
    # R 0.66 (fine linear branching 0.89, punctate 0.91, coarse 0.88,
    # amorphous 0.26, fine pleomorphic 0.24: most of the misses have a
    # matched-filter SNR near or below the noise-peak level); "mad"
    # P 0.90, R 0.34. These three images: multiscale P 0.95, R 0.73,
    # "mad" R 0.27. The thresholds are the held-out numbers minus a margin.
    config = synthetic.SyntheticConfig(breast_scale=0.5)
    counts = {"multiscale": [0, 0, 0], "mad": [0, 0, 0]}
    lines_found = lines_total = 0
    for seed, index in ((2, 0), (3, 0), (4, 4)):
      image = synthetic.generate_image(config, seed, index)
      spacing = float(np.mean(image.annotation["pixel_spacing_mm"]))
      roi = ndimage.binary_erosion(
          image.breast_mask, iterations=int(round(1.0 / spacing))
      )
      annotated = image.annotation["calcifications"]
      true_xy = [c["center_xy"] for c in annotated]
      for method, count in counts.items():
        det = calcs.detect_calcifications(
            image.display, pixel_spacing_mm=spacing, roi_mask=roi,
            method=method,
        )
        m = calcs.match_to_annotations(det.centers_xy, true_xy, 0.5 / spacing)
        count[0] += m.true_positives
        count[1] += m.false_positives
        count[2] += m.false_negatives
        if method == "multiscale":
          hit = set(m.pairs[:, 1].tolist())
          for j, c in enumerate(annotated):
            if c["morphology"] == "fine_linear_branching":
              lines_total += 1
              lines_found += j in hit
    tp, fp, fn = counts["multiscale"]
    self.assertGreaterEqual(tp / (tp + fp), 0.9)
    self.assertGreaterEqual(tp / (tp + fn), 0.6)
    self.assertGreaterEqual(lines_found / lines_total, 0.75)
    # The default earns its place: clearly above the top-hat detector.
    mad_tp = counts["mad"][0]
    self.assertGreaterEqual(tp, 1.5 * mad_tp)


if __name__ == "__main__":
  absltest.main()

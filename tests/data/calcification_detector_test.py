"""Tests for mammojax.data.calcification_detector."""

import importlib.util

import numpy as np
from absl.testing import absltest
from scipy import ndimage

from mammojax.data import calcification_detector as detector
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


class DetectorTest(absltest.TestCase):

  def test_flat_image_has_no_detections(self):
    got = detector.detect_calcifications(
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
      got = detector.detect_calcifications(
          image, pixel_spacing_mm=0.07, method=method, threshold=threshold
      )
      np.testing.assert_allclose(
          got.centers_xy, [[11.0, 11.0], [51.0, 41.0]], err_msg=method
      )
      got = detector.detect_calcifications(
          image, pixel_spacing_mm=0.07, roi_mask=roi, method=method,
          threshold=threshold,
      )
      np.testing.assert_allclose(got.centers_xy, [[11.0, 11.0]])

  def test_unknown_method(self):
    with self.assertRaisesRegex(ValueError, "multiscale"):
      detector.detect_calcifications(
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
    got = detector.detect_calcifications(image, pixel_spacing_mm=spacing)
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
      det = detector.detect_calcifications(image, pixel_spacing_mm=0.07)
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
    # Measured on the generator before issue 15 (every calcification at
    # full conspicuity, balanced morphologies), hence "independent"; the
    # default's per-subtlety recall is in docs/results.md.
    config = synthetic.SyntheticConfig(breast_scale=0.5,
                                       calc_statistics="independent")
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
        det = detector.detect_calcifications(
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

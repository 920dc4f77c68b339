"""DiagNet's adversarial augmentation: SVM, perturbation, neighbours."""

from absl.testing import absltest
import numpy as np

from mammojax.objectives import adversarial_augmentation as aa
from mammojax.objectives import signed_graph


def _blobs(n, size, seed):
  """Two classes of bright discs: small round (0) vs large elongated (1)."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[:size, :size] / size - 0.5
  images, labels = [], []
  for i in range(n):
    c = i % 2
    cy, cx = rng.uniform(-0.1, 0.1, 2)
    ry, rx = (0.15, 0.15) if c == 0 else (0.3, 0.15)
    r = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2
    img = 0.3 + 0.5 * (r < 1) + rng.normal(0, 0.05, (size, size))
    images.append(np.clip(img, 0, 1))
    labels.append(c)
  return np.asarray(images, np.float32), np.asarray(labels)


class AdversarialAugmentationTest(absltest.TestCase):

  def test_linear_svm_matches_sklearn_decisions(self):
    from sklearn import svm  # pylint: disable=g-import-not-at-top
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 5))
    y = np.where(x[:, 0] + 0.5 * x[:, 1] + 0.3 * rng.normal(size=60) > 0,
                 1.0, -1.0)
    w = aa.fit_linear_svm(x, y, c=1.0)
    ref = svm.LinearSVC(C=1.0, dual=False, tol=1e-10, intercept_scaling=1e3,
                        max_iter=10000).fit(x, y)
    np.testing.assert_allclose(w[:-1], ref.coef_[0], atol=2e-3)
    np.testing.assert_allclose(w[-1], ref.intercept_[0], atol=2e-3)

  def test_perturbation_zero_is_identity_and_stays_in_range(self):
    cfg = aa.AugmentConfig()
    render = aa.Perturbation(16, cfg)
    seed = np.random.default_rng(0).uniform(0, 1, (16, 16))
    out = render(seed, np.zeros((1, cfg.dimension)))
    np.testing.assert_allclose(out[0], seed, atol=1e-6)
    out = render(seed, np.random.default_rng(1).uniform(-1, 1, (3,
                                                               cfg.dimension)))
    self.assertEqual(out.shape, (3, 16, 16))
    self.assertTrue(np.all((out >= 0) & (out <= 1)))
    self.assertGreater(np.abs(out - seed).mean(), 1e-3)

  def test_positives_pass_the_discriminator_more_often_than_negatives(self):
    images, labels = _blobs(16, 16, seed=0)
    cfg = aa.AugmentConfig(num_candidates=60, refit_every=10,
                           positive_fraction=0.5, negative_fraction=0.5,
                           seed=3)
    aug = aa.augment(images, labels, cfg, progress=False)
    # 50 % of 8 images per class, positives and negatives.
    self.assertLen(aug.images, 16)
    self.assertEqual(aug.images.shape[1:], (16, 16))
    for c in (0, 1):
      for kind in (signed_graph.POSITIVE, signed_graph.NEGATIVE):
        self.assertEqual(
            int(np.sum((aug.labels == c) & (aug.kinds == kind))), 4
        )
      # Seeds come from the class itself.
      self.assertTrue(np.all(labels[aug.seeds[aug.labels == c]] == c))
      self.assertGreater(aug.rho[c], 0.0)
    agreement = aa.discriminator_agreement(aug)
    for c in (0, 1):
      self.assertGreater(agreement[c]["positive"], agreement[c]["negative"])
    pos = aug.scores[aug.kinds == signed_graph.POSITIVE]
    neg = aug.scores[aug.kinds == signed_graph.NEGATIVE]
    self.assertGreater(pos.mean(), neg.mean())
    # Negatives stay close to their class (the r3 hinge): nearer their
    # seed's class than a random image of the other class is.
    feats = aa.Features(16, cfg.feature_size)
    d = signed_graph.angular_distance_matrix_np(
        feats(aug.images), feats(images)
    )
    for k in range(len(aug.images)):
      own = d[k, labels == aug.labels[k]].min()
      self.assertLess(own, 0.5)
    # Deterministic in the seed.
    again = aa.augment(images, labels, cfg, progress=False)
    np.testing.assert_array_equal(again.images, aug.images)

  def test_bad_input(self):
    images, labels = _blobs(6, 8, seed=0)
    cfg = aa.AugmentConfig(num_candidates=20, refit_every=10)
    with self.assertRaisesRegex(ValueError, "one class"):
      aa.augment(images, np.zeros(6, int), cfg, progress=False)
    with self.assertRaisesRegex(ValueError, "class 1 has 1 training"):
      aa.augment(images[:3], labels[:3], cfg, progress=False)
    with self.assertRaisesRegex(ValueError, "feature_size=8 is larger"):
      aa.augment(images[:, :4, :4], labels, cfg, progress=False)


if __name__ == "__main__":
  absltest.main()

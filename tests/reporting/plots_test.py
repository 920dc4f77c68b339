"""Tests for mammojax.reporting.plots (files written, valid PNG sizes)."""

import pathlib
import tempfile
from unittest import mock

from absl.testing import absltest
from matplotlib import image as mimage
import numpy as np

from mammojax.reporting import plots
from mammojax.training import metrics


class PlotsTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.dir = pathlib.Path(tempfile.mkdtemp())
    rng = np.random.default_rng(0)
    self.names = ["punctate", "amorphous", "pleomorphic"]
    self.y = rng.integers(0, 3, 60)
    logits = rng.normal(size=(60, 3)) + np.eye(3)[self.y]
    self.probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)

  def _check_png(self, path, height, width):
    path = pathlib.Path(path)
    self.assertTrue(path.is_file())
    self.assertEqual(path.read_bytes()[:8], b"\x89PNG\r\n\x1a\n")
    img = mimage.imread(path)
    self.assertEqual(img.shape[:2], (height, width))
    self.assertGreater(float(img.std()), 0.0)  # not blank

  def _capture_figure(self):
    """Patches ``plots._save`` to keep the figure it writes."""
    figures = []

    def save(fig, path, dpi):
      figures.append(fig)
      return original(fig, path, dpi)

    original = plots._save  # pylint: disable=protected-access
    self.enter_context(mock.patch.object(plots, "_save", save))
    return figures

  def test_roc_curve_area_is_midrank_auc(self):
    rng = np.random.default_rng(1)
    pos = rng.integers(0, 2, 50).astype(bool)
    s = np.round(rng.normal(size=50), 1)
    fpr, tpr = plots.roc_curve(pos, s)
    area = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    self.assertAlmostEqual(area, metrics.binary_auc(pos, s), places=12)

  def test_roc_curves(self):
    figures = self._capture_figure()
    y = np.where(self.y == 2, 0, self.y)  # class 2 absent -> "n/a"
    path = plots.plot_roc_curves(
        y, self.probs, self.names, self.dir / "sub" / "roc.png", "ROC",
        figsize=(4, 3), dpi=50,
    )
    self.assertEqual(path, self.dir / "sub" / "roc.png")
    self._check_png(path, 150, 200)
    [ax] = figures[0].axes
    aucs = [metrics.binary_auc(y == c, self.probs[:, c]) for c in (0, 1)]
    self.assertEqual(
        [t.get_text() for t in ax.get_legend().get_texts()],
        [f"punctate: {aucs[0]:.3f}", f"amorphous: {aucs[1]:.3f}",
         "pleomorphic: n/a"],
    )
    # Chance diagonal + one curve per present class, each from (0, 0) to
    # (1, 1); the absent class is a legend entry without points.
    lines = ax.get_lines()
    self.assertLen(lines, 4)
    for line in lines[1:3]:
      xy = line.get_xydata()
      np.testing.assert_allclose(xy[[0, -1]], [[0, 0], [1, 1]])
    self.assertEqual(lines[3].get_xydata().size, 0)

  def test_confusion_matrix(self):
    cm = metrics.confusion_matrix(self.y, self.probs.argmax(1), num_classes=3)
    for normalize in ("true", "pred", "all", None):
      path = plots.plot_confusion_matrix(
          cm, self.names, self.dir / f"cm_{normalize}.png", normalize,
          figsize=(5, 4), dpi=60,
      )
      self._check_png(path, 240, 300)
    with self.assertRaisesRegex(ValueError, "normalize"):
      plots.plot_confusion_matrix(cm, self.names, self.dir / "x.png", "rows")

  def test_task_weights(self):
    steps = np.arange(0, 100, 10)
    w = np.stack([np.linspace(1, 1.9, 10), np.linspace(1, 0.1, 10)], 1)
    path = plots.plot_task_weights(
        steps, w, ["morphology", "distribution"], self.dir / "w.png"
    )
    self._check_png(path, 400, 700)
    with self.assertRaisesRegex(ValueError, "weights"):
      plots.plot_task_weights(steps, w[:, :1], ["a", "b"], self.dir / "y.png")

  def test_graph_on_image(self):
    rng = np.random.default_rng(2)
    image = rng.uniform(size=(120, 80)).astype(np.float32)
    coords = rng.uniform([0, 0], [80, 120], size=(7, 2))
    senders = np.array([0, 1, 2, 3, 4, 5])
    receivers = np.array([1, 2, 3, 4, 5, 6])
    true = np.array([0, 1, 2, -1, 0, 1, 2])
    pred = np.array([0, 1, 1, 2, -1, 1, 0])
    figures = self._capture_figure()
    path = plots.draw_graph_on_image(
        image, coords, senders, receivers, true, pred, self.names,
        self.dir / "graph.png", "cluster 0", width_inches=4.0, dpi=50,
    )
    self._check_png(path, 300, 200)  # 4 x 6 inches: the image's aspect.
    [ax] = figures[0].axes
    [edges] = [c for c in ax.collections
               if type(c).__name__ == "LineCollection"]
    np.testing.assert_allclose(
        np.stack(edges.get_segments()),
        np.stack([coords[senders], coords[receivers]], axis=1),
    )
    rings, dots = [c for c in ax.collections
                   if type(c).__name__ == "PathCollection"]
    np.testing.assert_allclose(rings.get_offsets(), coords[true >= 0])
    np.testing.assert_allclose(dots.get_offsets(), coords)
    colors = plots._class_colors(3)  # pylint: disable=protected-access
    fill = dots.get_facecolors()
    np.testing.assert_allclose(fill[[0, 1, 2, 3, 5, 6]],
                               colors[[0, 1, 1, 2, 1, 0]])
    np.testing.assert_allclose(fill[4], (0.6, 0.6, 0.6, 1.0))  # no pred
    np.testing.assert_allclose(rings.get_edgecolors(),
                               colors[true[true >= 0]])
    self.assertEqual([t.get_text() for t in ax.texts], ["cluster 0"])


if __name__ == "__main__":
  absltest.main()

"""Tests of the image classifiers' loss definition."""

from absl.testing import absltest
import jax
import jax.numpy as jnp
import numpy as np

from mammojax.models.cnn import classifier
from mammojax.objectives import classification


def _model(outputs):
  return classifier.ImageClassifier(
      backbone="resnet18", num_outputs=outputs, dropout=0.0,
      backbone_kwargs=(("stage_sizes", (1, 1, 1, 1)),),
  )


def _batch(rng, labels):
  n = len(labels)
  return {
      "image": rng.integers(0, 256, (n, 32, 32), dtype=np.uint8),
      "label": np.asarray(labels, np.int32),
      "mask": np.asarray([True] * (n - 1) + [False]),
      "index": np.arange(n, dtype=np.int32),
  }


class ImageClassificationTaskTest(absltest.TestCase):

  def test_softmax_head_matches_weighted_cross_entropy(self):
    rng = np.random.default_rng(0)
    model = _model(3)
    weights = np.asarray([1.0, 2.0, 0.5], np.float32)
    task = classification.ImageClassificationTask(
        model, tasks=("graph",), label_keys={"graph": "label"},
        class_weights=weights,
    )
    batch = _batch(rng, [0, 2, -1, 1, 2])
    variables = model.init(jax.random.key(0), batch, train=False)
    state = {"batch_stats": variables["batch_stats"]}
    sums, (_, logits) = task.loss_sums(
        variables["params"], state, batch, None, train=False
    )
    norms = task.normalisers(batch)
    logits = np.asarray(logits, np.float64)
    keep = batch["mask"] & (batch["label"] >= 0)
    y = batch["label"][keep]
    logp = logits[keep] - np.log(np.exp(logits[keep]).sum(-1, keepdims=True))
    w = weights[y]
    np.testing.assert_allclose(norms, [w.sum()], rtol=1e-6)
    np.testing.assert_allclose(
        sums[0] / norms[0], -(w * logp[np.arange(len(y)), y]).sum() / w.sum(),
        rtol=1e-5,
    )
    out = task.eval_outputs(jnp.asarray(logits), batch)
    np.testing.assert_allclose(np.asarray(out["graph_probs"]).sum(-1), 1.0,
                               rtol=1e-6)
    np.testing.assert_array_equal(out["graph_labels"], batch["label"])
    np.testing.assert_array_equal(out["index"], batch["index"])

  def test_augment_only_when_training_and_per_key(self):
    model = _model(2)
    calls = []

    def augment(images, key):
      calls.append(key)
      return images[:, ::-1] + jax.random.uniform(key, ())

    task = classification.ImageClassificationTask(
        model, tasks=("t",), label_keys={"t": "label"}, augment=augment
    )
    batch = {"image": np.full((2, 4, 4), 255, np.uint8)}
    plain = task.images(batch, None, train=False)
    np.testing.assert_allclose(plain, 1.0)
    self.assertEmpty(calls)
    a = task.images(batch, jax.random.key(1), train=True)
    b = task.images(batch, jax.random.key(2), train=True)
    self.assertFalse(np.allclose(a, b))

  def test_softmax_needs_one_task(self):
    with self.assertRaisesRegex(ValueError, r"config\.tasks=\('a', 'b'\)"):
      classification.ImageClassificationTask(_model(2), tasks=("a", "b"))


if __name__ == "__main__":
  absltest.main()

"""Tests of the DAE-GCN network: GCN layers, the split of h, the ablations."""

from absl.testing import absltest
import jax
import jax.numpy as jnp
import numpy as np

from mammojax.models import daegcn

TINY = dict(
    backbone="resnet34", backbone_kwargs=(("stage_sizes", (1, 1, 1, 1)),),
    dim_ma=4, dim_mi=3, dim_i=5, group_sizes=(2, 3), gcn_hidden=(6,),
    image_size=32, decoder_features=(8, 8, 8, 8, 8), embedding_dim=7,
)


_OPTIMIZATIONS = []


def setUpModule():
  # Tiny networks: XLA's optimisation passes cost more than they save.
  _OPTIMIZATIONS.append(jax.config.read("jax_disable_most_optimizations"))
  jax.config.update("jax_disable_most_optimizations", True)


def tearDownModule():
  jax.config.update("jax_disable_most_optimizations", _OPTIMIZATIONS.pop())


def _adjacency(c=5):
  rng = np.random.default_rng(0)
  return tuple(tuple(float(v) for v in row) for row in rng.random((c, c)))


class GCNTest(absltest.TestCase):

  def test_ml_gcn_layers(self):
    rng = np.random.default_rng(1)
    nodes = rng.normal(size=(5, 3)).astype(np.float32)
    adj = rng.random((5, 5)).astype(np.float32)
    gcn = daegcn.AttributeGCN(hidden=(6,), features=4)
    params = gcn.init(jax.random.key(0), nodes, adj)["params"]
    w1 = np.asarray(params["gc1"]["kernel"])
    w2 = np.asarray(params["gc2"]["kernel"])
    self.assertEqual(w1.shape, (3, 6))
    # ML-GCN's init: U(-1/sqrt(out), 1/sqrt(out)).
    self.assertLessEqual(np.abs(w2).max(), 1 / np.sqrt(4))
    hidden = adj @ (nodes @ w1)
    hidden = np.where(hidden > 0, hidden, 0.2 * hidden)
    np.testing.assert_allclose(
        gcn.apply({"params": params}, nodes, adj), adj @ (hidden @ w2),
        rtol=1e-5, atol=1e-6,
    )


class DAEGCNTest(absltest.TestCase):

  def test_outputs_split_and_partial_reconstructions(self):
    model = daegcn.DAEGCN(adjacency=_adjacency(), **TINY)
    x = jnp.asarray(np.random.default_rng(2).random((3, 32, 32)), jnp.float32)
    variables = jax.jit(lambda r: model.init(r, x, train=False))(
        jax.random.key(0))
    params = variables["params"]
    self.assertEqual(params["classifier"]["kernel"].shape, (7, 1))
    self.assertEqual(params["encoder"]["fc"]["kernel"].shape, (512, 12))
    self.assertEqual(params["node_embeddings"].shape, (5, 7))  # learned
    out = jax.jit(lambda v: model.apply(v, x, train=False))(variables)
    self.assertEqual(out["h"].shape, (3, 12))
    self.assertEqual(out["logit"].shape, (3,))
    self.assertEqual(out["attribute_scores"].shape, (3, 5))
    self.assertEqual(out["reconstruction"].shape, (3, 32, 32))
    self.assertTrue(np.all((out["reconstruction"] >= 0)
                           & (out["reconstruction"] <= 1)))
    # Scores are <H_L[i], h_ma>.
    h_l = model.apply(variables, method=daegcn.DAEGCN.node_vectors)
    self.assertEqual(h_l.shape, (5, 4))
    np.testing.assert_allclose(out["attribute_scores"],
                               out["h"][:, :4] @ h_l.T, rtol=1e-5, atol=1e-5)
    # The classifier reads [h_ma, h_mi] only.
    np.testing.assert_allclose(
        out["logit"],
        out["h"][:, :7] @ params["classifier"]["kernel"][:, 0]
        + params["classifier"]["bias"][0], rtol=1e-5, atol=1e-5,
    )
    # Partial reconstruction = the decoder on h with the rest zeroed.
    h = out["h"]
    decode = jax.jit(
        lambda v, h, keep: model.apply(
            v, h, keep, method=daegcn.DAEGCN.reconstruct_from),
        static_argnums=2,
    )
    part = decode(variables, h, ("i",))
    np.testing.assert_allclose(
        part, decode(variables, h.at[:, :7].set(0.0), daegcn.FACTORS),
        rtol=1e-6,
    )
    np.testing.assert_allclose(
        decode(variables, h, daegcn.FACTORS), out["reconstruction"],
        rtol=1e-5, atol=1e-6,
    )

  def test_standardize_normalises_each_crop(self):
    model = daegcn.DAEGCN(**{**TINY, "attribute_head": "none",
                             "standardize": True})
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.random((2, 32, 32)), jnp.float32)
    variables = jax.jit(lambda r: model.init(r, x, train=False))(
        jax.random.key(0))
    encode = jax.jit(lambda v, x: model.apply(
        v, x, train=False, method=daegcn.DAEGCN.encode))
    # Brightness and contrast changes of a crop leave its code unchanged.
    np.testing.assert_allclose(encode(variables, 0.1 + 0.5 * x),
                               encode(variables, x), rtol=2e-2, atol=2e-2)

  def test_ablations_drop_their_parts(self):
    x = jnp.zeros((2, 32, 32), jnp.float32)

    def init(model):  # Shapes only: no compilation.
      return jax.eval_shape(
          lambda: model.init(jax.random.key(0), x, train=False))

    vanilla = daegcn.DAEGCN(
        **{**TINY, "disentangle": False, "attribute_head": "none",
           "reconstruct": False}
    )
    variables = init(vanilla)
    self.assertEqual(sorted(variables["params"]), ["classifier", "encoder"])
    self.assertEqual(variables["params"]["classifier"]["kernel"].shape,
                     (12, 1))  # all of h
    out = jax.eval_shape(lambda v: vanilla.apply(v, x, train=False),
                         variables)
    self.assertEqual(sorted(out), ["h", "logit"])
    chen = daegcn.DAEGCN(
        **{**TINY, "disentangle": False, "reconstruct": False},
        adjacency=_adjacency(), node_features=tuple(
            tuple(float(v) for v in row) for row in np.eye(5)),
    )
    variables = init(chen)
    self.assertNotIn("node_embeddings", variables["params"])  # one-hot
    self.assertEqual(variables["params"]["gcn"]["gc2"]["kernel"].shape,
                     (6, 12))  # H_L as wide as all of h
    multitask = daegcn.DAEGCN(**{**TINY, "attribute_head": "multitask"})
    variables = init(multitask)
    self.assertEqual(variables["params"]["attribute_dense"]["kernel"].shape,
                     (4, 5))  # from h_ma
    # A narrower ResNet: stage i has width * 2**i channels.
    narrow = daegcn.DAEGCN(**{**TINY, "attribute_head": "none",
                              "backbone_kwargs": TINY["backbone_kwargs"]
                              + (("width", 8),)})
    encoder = init(narrow)["params"]["encoder"]
    self.assertEqual(encoder["conv1"]["kernel"].shape, (7, 7, 1, 8))
    self.assertEqual(encoder["fc"]["kernel"].shape, (64, 12))
    with self.assertRaisesRegex(ValueError, r"attribute_head='mlp'"):
      init(daegcn.DAEGCN(**{**TINY, "attribute_head": "mlp"}))
    with self.assertRaisesRegex(ValueError, r"image_size=40"):
      jax.eval_shape(lambda: daegcn.DAEGCN(
          **{**TINY, "image_size": 40, "attribute_head": "none"}).init(
              jax.random.key(0), jnp.zeros((1, 40, 40)), train=False))


if __name__ == "__main__":
  absltest.main()

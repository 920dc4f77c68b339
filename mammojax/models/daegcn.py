"""DAE-GCN: disentangled auto-encoder with an attribute GCN (Zhang et al.).

"DAE-GCN: Identifying Disease-Related Features for Disease Prediction"
(MICCAI 2021), §2: a mass patch ``x`` is encoded into ``h``, split into
``h_ma`` (macroscopic attributes), ``h_mi`` (microscopic, disease-related)
and ``h_i`` (disease-irrelevant). Three heads constrain the split:

* **decoder**: all of ``h`` reconstructs ``x`` (``L_rec``, L1);
* **attribute GCN**: an ML-GCN-style graph convolution over the attribute
  values (nodes; edges from ``objectives.attribute_graph``) gives one vector
  ``H_L[i]`` per value, of width ``dim(h_ma)``; the value's score is
  ``<H_L[i], h_ma>``, soft-maxed within each attribute (shape, margin);
* **classifier**: ``[h_ma, h_mi]`` -> benign / malignant (one logit, BCE).

Readings where the paper is silent (its supplementary is not public):

* Encoder: a ``models.cnn`` ResNet (ResNet-34 by default; torchvision
  weights import with ``convert.load_pretrained``) whose ``fc`` layer is the
  linear map from the 512-d pooled feature to ``h`` (``dim_ma + dim_mi +
  dim_i`` wide, no activation). Grey inputs in [0, 1] are normalised with one
  mean / std like ``cnn.classifier.ImageClassifier``, or (``standardize``)
  each crop by its own mean / std.
* Decoder: ``h`` -> ``Dense`` to a ``S/32 x S/32`` map (the encoder's
  stride), then 2x transposed convolutions (4 x 4, ReLU) with
  ``decoder_features`` channels and a 3 x 3 convolution to one channel with
  a sigmoid, so ``x_hat`` is in [0, 1] like ``x``. ``S`` must be a multiple
  of ``2 ** len(decoder_features)``.
* GCN: ML-GCN's two ``GraphConvolution`` layers (``adj @ (H @ W)``, no bias,
  ``W ~ U(-1/sqrt(out), 1/sqrt(out))``) with a LeakyReLU(0.2) between them,
  ``gcn_hidden`` wide. Node inputs: one-hot (default), learned (a trained
  ``[C, d]`` table) or fixed word vectors (``data.word_vectors``).
* Classifier: one ``Dense`` logit on ``[h_ma, h_mi]``.
* Partial reconstructions (Fig. 3): the decoder applied to ``h`` with the
  other factors set to zero (``reconstruct(h, keep=...)``).

Ablations (Table 2) switch the parts off: ``disentangle=False`` reads all of
``h`` in every head (no split); ``attribute_head`` ``'none'`` /
``'multitask'`` (a plain ``Dense`` per attribute value on the attribute
input, soft-maxed per attribute) / ``'gcn'``; ``reconstruct=False`` drops
the decoder; ``dim_i=0`` drops ``h_i``. Vanilla (ResNet-34 classifier) is
``disentangle=False, attribute_head='none', reconstruct=False``; Chen et
al. (attribute GCN without disentangling) is ``disentangle=False,
attribute_head='gcn', reconstruct=False``.
"""

import math
from typing import Any, Mapping, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from mammojax.models import cnn
from mammojax.models.cnn import layers as cnn_layers

Array = Any

ATTRIBUTE_HEADS = ("none", "multitask", "gcn")
FACTORS = ("ma", "mi", "i")


def _uniform(scale: float):
  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -scale, scale)
  return init


class GraphConvolution(nn.Module):
  """ML-GCN's ``GraphConvolution``: ``adj @ (x @ W)`` (no bias)."""

  features: int

  @nn.compact
  def __call__(self, x: Array, adj: Array) -> Array:
    w = self.param(
        "kernel", _uniform(1.0 / math.sqrt(self.features)),
        (x.shape[-1], self.features),
    )
    return adj @ (x @ w)


class AttributeGCN(nn.Module):
  """Node inputs ``[C, d0]`` -> ``H_L [C, features]`` over a fixed graph.

  Attributes:
    hidden: widths of the hidden layers (ML-GCN: one of 1024).
    features: the output width (``dim(h_ma)``).
  """

  hidden: Sequence[int]
  features: int

  @nn.compact
  def __call__(self, nodes: Array, adj: Array) -> Array:
    x = nodes
    for i, width in enumerate(self.hidden):
      x = GraphConvolution(width, name=f"gc{i + 1}")(x, adj)
      x = nn.leaky_relu(x, 0.2)
    return GraphConvolution(self.features, name=f"gc{len(self.hidden) + 1}")(
        x, adj
    )


class Decoder(nn.Module):
  """``h [B, D]`` -> ``x_hat [B, S, S]`` in [0, 1]."""

  image_size: int
  features: Sequence[int] = (256, 128, 64, 32, 16)

  @nn.compact
  def __call__(self, h: Array) -> Array:
    scale = 2 ** len(self.features)
    if self.image_size % scale:
      raise ValueError(
          f"config.model.image_size={self.image_size}: the decoder needs a "
          f"multiple of {scale} (2 ** len(config.model.decoder_features))"
      )
    start = self.image_size // scale
    x = nn.Dense(start * start * self.features[0], name="project")(h)
    x = nn.relu(x).reshape((h.shape[0], start, start, self.features[0]))
    for i, width in enumerate(self.features):
      x = nn.ConvTranspose(
          width, (4, 4), strides=(2, 2), padding="SAME", name=f"up{i}"
      )(x)
      x = nn.relu(x)
    x = nn.Conv(1, (3, 3), padding="SAME", name="out")(x)
    return jax.nn.sigmoid(x[..., 0])


class DAEGCN(nn.Module):
  """The DAE-GCN network (and its ablations).

  Attributes:
    backbone: key of ``cnn.MODELS`` (``resnet34``).
    backbone_kwargs: ``(name, value)`` pairs for the backbone (e.g.
      ``stage_sizes`` of a tiny test ResNet).
    dim_ma: width of ``h_ma``.
    dim_mi: width of ``h_mi``.
    dim_i: width of ``h_i`` (0: no disease-irrelevant part).
    disentangle: split ``h``; else every head reads all of ``h``.
    attribute_head: ``'none'``, ``'multitask'`` or ``'gcn'``.
    reconstruct: with the decoder.
    group_sizes: values per attribute (nodes are grouped contiguously).
    adjacency: the normalised ``[C, C]`` adjacency (rows of floats).
    node_features: fixed ``[C, d0]`` node inputs (rows of floats), or
      ``None`` for a learned ``[C, embedding_dim]`` table.
    embedding_dim: width of learned node inputs.
    gcn_hidden: the GCN's hidden widths.
    image_size: the input (and reconstruction) side ``S``.
    decoder_features: the decoder's channels per 2x up-sampling.
    pixel_mean: encoder input normalisation.
    pixel_std: see ``pixel_mean``.
    standardize: normalise each crop by its own mean and std instead
      (the crops' brightness and contrast vary widely); the decoder still
      reconstructs the [0, 1] crop.
  """

  backbone: str = "resnet34"
  backbone_kwargs: tuple[tuple[str, Any], ...] = ()
  dim_ma: int = 64
  dim_mi: int = 64
  dim_i: int = 128
  disentangle: bool = True
  attribute_head: str = "gcn"
  reconstruct: bool = True
  group_sizes: tuple[int, ...] = ()
  adjacency: Optional[tuple[tuple[float, ...], ...]] = None
  node_features: Optional[tuple[tuple[float, ...], ...]] = None
  embedding_dim: int = 64
  gcn_hidden: tuple[int, ...] = (256,)
  image_size: int = 64
  decoder_features: tuple[int, ...] = (256, 128, 64, 32, 16)
  pixel_mean: float = 0.449
  pixel_std: float = 0.226
  standardize: bool = False

  def setup(self):
    if self.attribute_head not in ATTRIBUTE_HEADS:
      raise ValueError(
          f"config.model.attribute_head={self.attribute_head!r}: expected "
          f"one of {ATTRIBUTE_HEADS}"
      )
    self.encoder = cnn.create_model(
        self.backbone, num_classes=self.dim_h, dropout=0.0,
        **dict(self.backbone_kwargs),
    )
    self.classifier = nn.Dense(1)
    num_nodes = int(sum(self.group_sizes))
    if self.attribute_head == "gcn":
      if self.adjacency is None:
        raise ValueError("attribute_head='gcn' needs the adjacency matrix")
      self.gcn = AttributeGCN(tuple(self.gcn_hidden), self.attribute_width)
      if self.node_features is None:
        self.node_embeddings = self.param(
            "node_embeddings", nn.initializers.normal(1.0),
            (num_nodes, self.embedding_dim),
        )
    elif self.attribute_head == "multitask":
      self.attribute_dense = nn.Dense(num_nodes)
    if self.reconstruct:
      self.decoder = Decoder(self.image_size, tuple(self.decoder_features))

  @property
  def dim_h(self) -> int:
    return int(self.dim_ma + self.dim_mi + self.dim_i)

  @property
  def attribute_width(self) -> int:
    """The width of the attribute head's input (``h_ma`` or all of ``h``)."""
    return int(self.dim_ma) if self.disentangle else self.dim_h

  def inputs(self, batch: Any) -> Array:
    """Float ``[B, S, S]`` in [0, 1] from a batch dict or images."""
    images = batch["image"] if isinstance(batch, Mapping) else batch
    x = jnp.asarray(images)
    if x.dtype == jnp.uint8:
      x = x.astype(jnp.float32) / 255.0
    return x.astype(jnp.float32)

  def encode(self, batch: Any, *, train: bool = False) -> Array:
    """``h [B, dim_h]`` = ``[h_ma, h_mi, h_i]``."""
    x = self.inputs(batch)[..., None]
    if self.standardize:
      x = cnn_layers.standardize_per_image(x)
    else:
      x = (x - self.pixel_mean) / self.pixel_std
    return self.encoder(x, train=train)

  def split(self, h: Array) -> dict[str, Array]:
    """``{'ma', 'mi', 'i'}`` parts of ``h``."""
    a, b = int(self.dim_ma), int(self.dim_ma + self.dim_mi)
    return {"ma": h[:, :a], "mi": h[:, a:b], "i": h[:, b:]}

  def node_vectors(self) -> Array:
    """``H_L [C, attribute_width]`` (the GCN head only)."""
    if self.node_features is None:
      nodes = self.node_embeddings
    else:
      nodes = jnp.asarray(self.node_features, jnp.float32)
    adj = jnp.asarray(self.adjacency, jnp.float32)
    return self.gcn(nodes, adj)

  def reconstruct_from(
      self, h: Array, keep: Sequence[str] = FACTORS
  ) -> Array:
    """The decoder on ``h`` with the factors not in ``keep`` set to 0."""
    parts = self.split(h)
    kept = [
        parts[k] if k in keep else jnp.zeros_like(parts[k]) for k in FACTORS
    ]
    return self.decoder(jnp.concatenate(kept, axis=-1))

  def __call__(self, batch: Any, *, train: bool) -> dict[str, Array]:
    """``logit [B]``, ``attribute_scores [B, C]``, ``reconstruction``, ``h``.

    ``attribute_scores`` is absent without an attribute head,
    ``reconstruction`` without the decoder.
    """
    h = self.encode(batch, train=train)
    if self.disentangle:
      parts = self.split(h)
      disease = jnp.concatenate([parts["ma"], parts["mi"]], axis=-1)
      attribute_input = parts["ma"]
    else:
      disease = attribute_input = h
    out = {"h": h, "logit": self.classifier(disease)[:, 0]}
    if self.attribute_head == "gcn":
      out["attribute_scores"] = attribute_input @ self.node_vectors().T
    elif self.attribute_head == "multitask":
      out["attribute_scores"] = self.attribute_dense(attribute_input)
    if self.reconstruct:
      out["reconstruction"] = self.decoder(h)
    return out

"""DiagNet's adversarial augmentation (paper section 3.1, eq. 1-2; 4.2).

For every class ``c`` with images ``X_c`` (the training ROIs after flips),
positive neighbours ``X_c+`` (on the class manifold: not separable from
``X_c`` by a discriminator) and negative neighbours ``X_c-`` (close to
``X_c`` but separable) are generated one at a time:

1. *Seed*: a random image of ``X_c`` corrupted by Gaussian pixel noise
   (``noise_std``), the "noise-corrupted seed point".
2. *Candidates*: SRACOS (``objectives.racos.minimize_batched``, budget
   ``T = num_candidates``) searches a low-dimensional perturbation of the
   seed (below) and every point it evaluates is a candidate ``x_t``. The
   discriminator is an SVM trained on ``X_c`` (label 1) against the
   generated set (``X_c+`` for a positive neighbour, ``X_c-`` for a negative
   one) united with the candidates so far, ``{x_t}``; it is retrained after
   every ``refit_every`` candidates (one batched RACOS call), so the
   objective RACOS sees follows the discriminator as in the paper ("in each
   iteration t, the discriminator is learned and the weights are updated").
   Before the first candidate the generated side holds the seed itself.
3. *Selection*: after the ``T`` candidates the discriminator is retrained on
   ``{X_c, X_c+/- u {x_t}}`` and the neighbour is the candidate maximising
   eq. 1, ``P(x) - gamma max(0, r1 - min_{X_c+} d(x, .))`` (positive), or
   minimising eq. 2, ``P(x) + gamma max(0, r2 - min_{X_c-} d(x, .)) + gamma
   max(0, min_{X_c} d(x, .) - r3)`` (negative); it joins ``X_c+`` / ``X_c-``.
   While ``X_c+`` / ``X_c-`` is empty its hinge is 0.

``P(x) = sigmoid(f(x))`` with ``f`` the linear SVM's decision function
(``fit_linear_svm``: the squared-hinge L2-SVM of scikit-learn's
``LinearSVC``, class-balanced, solved by finite Newton; ``f`` is the signed
distance in margin units, +-1 on the margins), the "logistic sigmoid of the output signed distance". ``d`` is the
angular cosine distance (``signed_graph.angular_distance_matrix_np``);
``rho`` = the smallest distance between two distinct images of ``X_c``,
``r1 = r2 = rho``, ``r3 = 3 rho`` (``r3_factor``), ``gamma = 1e-2``,
``T = 200``.

Search space (the paper does not give one; its Fig. 2 shows mammogram
crops): ``theta`` in ``[-1, 1]^D`` with ``D = g_i^2 + 2 g_d^2``: a ``g_i x
g_i`` grid of additive intensity offsets (times ``intensity_amplitude``)
and a ``g_d x g_d`` grid of displacements per axis (times
``displacement_amplitude`` x the image side), both upsampled bilinearly to
the image; the candidate is the seed warped by the displacement field
(bilinear, edge-clamped) plus the intensity field, clipped to [0, 1]. So
every generated sample is an ROI-sized image: locally brighter / darker,
with the mass outline and margin deformed.

Feature space of the SVMs and distances: the image area-averaged to
``feature_size x feature_size`` (8 x 8), centred to zero mean; the
cosine of two features is then the correlation of the two coarse images.

All of it is numpy on the host, deterministic in ``seed``;
``augment`` shows a tqdm bar.
"""

import dataclasses
import time
from typing import Optional

import numpy as np
import threadpoolctl
import tqdm

from mammojax.objectives import racos
from mammojax.objectives import signed_graph


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
  """Settings of the adversarial augmentation (``config.diagnet.augment``).

  Attributes:
    positive_fraction: positive neighbours per class, as a fraction of the
      class's (flipped) training images (paper: 0.2).
    negative_fraction: the same for negative neighbours (0.2).
    num_candidates: T, RACOS evaluations per generated neighbour (200).
    gamma: weight of the distance hinges (1e-2).
    r3_factor: r3 = r3_factor * rho (3).
    refit_every: candidates per RACOS call between two SVM refits.
    noise_std: std of the Gaussian noise on the seed (pixels in [0, 1]).
    intensity_grid: g_i, side of the intensity-offset grid.
    intensity_amplitude: largest intensity offset.
    displacement_grid: g_d, side of the displacement grid.
    displacement_amplitude: largest displacement, as a fraction of the side.
    feature_size: side of the coarse image the SVMs and distances use.
    svm_c: the SVMs' C.
    seed: seed of the generator (seeds, RACOS, SVMs).
  """

  positive_fraction: float = 0.2
  negative_fraction: float = 0.2
  num_candidates: int = 200
  gamma: float = 1e-2
  r3_factor: float = 3.0
  refit_every: int = 10
  noise_std: float = 0.02
  intensity_grid: int = 4
  intensity_amplitude: float = 0.15
  displacement_grid: int = 3
  displacement_amplitude: float = 0.06
  feature_size: int = 8
  svm_c: float = 1.0
  seed: int = 0

  @property
  def dimension(self) -> int:
    return self.intensity_grid ** 2 + 2 * self.displacement_grid ** 2


@dataclasses.dataclass
class Augmentation:
  """The generated neighbours.

  Attributes:
    images: float32 ``[K, S, S]`` generated images.
    labels: int ``[K]`` class ``c`` of each.
    kinds: int ``[K]`` ``signed_graph.POSITIVE`` or ``NEGATIVE``.
    seeds: int ``[K]`` index (into the input images) of each one's seed.
    scores: ``[K]`` the discriminator probability ``P`` at selection.
    thetas: ``[K, D]`` the perturbation parameters.
    rho: class -> rho of that class.
    seconds: wall time of the augmentation.
  """

  images: np.ndarray
  labels: np.ndarray
  kinds: np.ndarray
  seeds: np.ndarray
  scores: np.ndarray
  thetas: np.ndarray
  rho: dict[int, float]
  seconds: float


def _interp_matrix(out_size: int, in_size: int) -> np.ndarray:
  """``[out, in]`` linear interpolation weights (corner-aligned)."""
  if in_size == 1:
    return np.ones((out_size, 1))
  pos = np.linspace(0.0, in_size - 1.0, out_size)
  lo = np.clip(np.floor(pos).astype(int), 0, in_size - 2)
  frac = pos - lo
  m = np.zeros((out_size, in_size))
  m[np.arange(out_size), lo] = 1.0 - frac
  m[np.arange(out_size), lo + 1] += frac
  return m


def _area_matrix(out_size: int, in_size: int) -> np.ndarray:
  """``[out, in]`` area-averaging weights (exact for any ratio)."""
  edges = np.linspace(0.0, in_size, out_size + 1)
  m = np.zeros((out_size, in_size))
  for i in range(out_size):
    a, b = edges[i], edges[i + 1]
    for j in range(int(np.floor(a)), int(np.ceil(b))):
      m[i, j] = max(0.0, min(b, j + 1) - max(a, j))
    m[i] /= m[i].sum()
  return m


class Features:
  """The coarse, centred image features the SVMs and distances use."""

  def __init__(self, image_size: int, feature_size: int):
    if feature_size > image_size:
      raise ValueError(
          f"config.diagnet.augment.feature_size={feature_size} is larger "
          f"than the image side {image_size}"
      )
    self.area = _area_matrix(feature_size, image_size)

  def __call__(self, images: np.ndarray) -> np.ndarray:
    """``[N, S, S]`` -> ``[N, F * F]``."""
    coarse = self.area @ np.asarray(images, np.float64) @ self.area.T
    flat = coarse.reshape(len(images), -1)
    return flat - flat.mean(axis=1, keepdims=True)


class Perturbation:
  """Renders ``theta`` in ``[-1, 1]^D`` around a seed image (docstring)."""

  def __init__(self, image_size: int, cfg: AugmentConfig):
    self.size = int(image_size)
    self.cfg = cfg
    self.up_i = _interp_matrix(self.size, cfg.intensity_grid)
    self.up_d = _interp_matrix(self.size, cfg.displacement_grid)
    grid = np.arange(self.size, dtype=np.float64)
    self.yy, self.xx = np.meshgrid(grid, grid, indexing="ij")

  def __call__(self, seed: np.ndarray, thetas: np.ndarray) -> np.ndarray:
    """``seed [S, S]``, ``thetas [B, D]`` -> images ``[B, S, S]``."""
    cfg, s = self.cfg, self.size
    gi, gd = cfg.intensity_grid, cfg.displacement_grid
    thetas = np.atleast_2d(thetas)
    b = thetas.shape[0]
    t_i = thetas[:, : gi * gi].reshape(b, gi, gi)
    t_d = thetas[:, gi * gi:].reshape(b, 2, gd, gd)
    intensity = cfg.intensity_amplitude * (self.up_i @ t_i @ self.up_i.T)
    disp = cfg.displacement_amplitude * s * (self.up_d @ t_d @ self.up_d.T)
    y = np.clip(self.yy[None] + disp[:, 0], 0.0, s - 1.0)
    x = np.clip(self.xx[None] + disp[:, 1], 0.0, s - 1.0)
    y0 = np.minimum(np.floor(y).astype(np.int64), s - 2) if s > 1 else (
        np.zeros_like(y, np.int64))
    x0 = np.minimum(np.floor(x).astype(np.int64), s - 2) if s > 1 else (
        np.zeros_like(x, np.int64))
    fy, fx = y - y0, x - x0
    y1, x1 = np.minimum(y0 + 1, s - 1), np.minimum(x0 + 1, s - 1)
    warped = (
        seed[y0, x0] * (1 - fy) * (1 - fx) + seed[y0, x1] * (1 - fy) * fx
        + seed[y1, x0] * fy * (1 - fx) + seed[y1, x1] * fy * fx
    )
    return np.clip(warped + intensity, 0.0, 1.0).astype(np.float32)


def fit_linear_svm(
    x: np.ndarray,
    y: np.ndarray,
    *,
    c: float,
    sample_weight: Optional[np.ndarray] = None,
    w0: Optional[np.ndarray] = None,
    max_iter: int = 50,
    tol: float = 1e-8,
) -> np.ndarray:
  """A linear L2-SVM (squared hinge), ``[d + 1]`` weights with the bias last.

  Minimises ``0.5 |w|^2 + c sum_i s_i max(0, 1 - y_i (w . x_i + b))^2``
  (``y`` in {-1, +1}; the loss of scikit-learn's ``LinearSVC`` default, with
  an unregularised bias) by the finite Newton method of Keerthi & DeCoste
  (JMLR 2005) with a backtracking line search; ``w0`` warm-starts it. Exact
  up to ``tol`` and a few milliseconds for the augmentation's sizes, which
  matters as the discriminator is refitted after every few candidates.
  """
  x = np.asarray(x, np.float64)
  y = np.asarray(y, np.float64)
  n, d = x.shape
  s = np.ones(n) if sample_weight is None else np.asarray(sample_weight)
  xb = np.concatenate([x, np.ones((n, 1))], axis=1)
  reg = np.ones(d + 1)
  reg[d] = 1e-10
  w = np.zeros(d + 1) if w0 is None else np.asarray(w0, np.float64).copy()

  def objective(v):
    slack = np.maximum(0.0, 1.0 - y * (xb @ v))
    return 0.5 * np.sum(reg * v * v) + c * np.sum(s * slack * slack)

  value = objective(w)
  for _ in range(max_iter):
    margin = y * (xb @ w)
    act = margin < 1.0
    xa = xb[act]
    coef = 2.0 * c * s[act]
    grad = reg * w - xa.T @ (coef * y[act] * (1.0 - margin[act]))
    hess = np.diag(reg) + (xa * coef[:, None]).T @ xa
    step = np.linalg.solve(hess, grad)
    t = 1.0
    while True:
      cand = w - t * step
      new = objective(cand)
      if new <= value - 1e-4 * t * float(grad @ step) or t < 1e-6:
        break
      t *= 0.5
    done = value - new <= tol * max(1.0, abs(value))
    w, value = cand, new
    if done:
      break
  return w


class Discriminator:
  """A linear SVM: real ``X_c`` (+1) vs a generated set (-1); P = sigmoid.

  Both sides are weighted to the same total (scikit-learn's
  ``class_weight='balanced'``), so a growing generated set does not swamp
  the real class.
  """

  def __init__(self, real: np.ndarray, c: float):
    self.real = np.asarray(real, np.float64)
    self.c = float(c)
    self.w = None

  def fit(self, generated: np.ndarray) -> "Discriminator":
    generated = np.asarray(generated, np.float64)
    n_r, n_g = len(self.real), len(generated)
    x = np.concatenate([self.real, generated])
    y = np.concatenate([np.ones(n_r), -np.ones(n_g)])
    total = n_r + n_g
    weight = np.concatenate([np.full(n_r, total / (2.0 * n_r)),
                             np.full(n_g, total / (2.0 * n_g))])
    self.w = fit_linear_svm(x, y, c=self.c, sample_weight=weight, w0=self.w)
    return self

  def decision(self, features: np.ndarray) -> np.ndarray:
    """The signed distance in margin units (+-1 on the margins)."""
    return np.asarray(features, np.float64) @ self.w[:-1] + self.w[-1]

  def probability(self, features: np.ndarray) -> np.ndarray:
    """``P(x; X_c, generated)``, the probability of the real class."""
    return 1.0 / (1.0 + np.exp(-self.decision(features)))


def smallest_distance(features: np.ndarray) -> float:
  """rho: the smallest angular distance between two distinct items."""
  d = signed_graph.angular_distance_matrix_np(features, features)
  d = d[~np.eye(len(d), dtype=bool)]
  positive = d[d > 1e-9]
  return float(positive.min()) if positive.size else 0.0


def _min_distance(a: np.ndarray, b: Optional[np.ndarray]) -> np.ndarray:
  if b is None or not len(b):
    return np.full(len(a), np.inf)
  return signed_graph.angular_distance_matrix_np(a, b).min(axis=1)


def _objective_terms(kind, prob, feats, own, real, radii, gamma):
  """Eq. 1 (to maximise, returned negated) or eq. 2 (to minimise)."""
  r1, r3 = radii
  if kind == signed_graph.POSITIVE:
    hinge = np.maximum(0.0, r1 - _min_distance(feats, own))
    hinge = np.where(np.isfinite(hinge), hinge, 0.0)
    return -(prob - gamma * hinge)
  near_own = np.maximum(0.0, r1 - _min_distance(feats, own))
  near_own = np.where(np.isfinite(near_own), near_own, 0.0)
  far_real = np.maximum(0.0, _min_distance(feats, real) - r3)
  return prob + gamma * near_own + gamma * far_real


def generate_neighbour(
    rng: np.random.Generator,
    kind: int,
    seed_image: np.ndarray,
    real_features: np.ndarray,
    own_features: np.ndarray,
    render: Perturbation,
    featurize: Features,
    cfg: AugmentConfig,
    rho: float,
) -> tuple[np.ndarray, np.ndarray, float]:
  """One neighbour of ``kind`` from one seed: ``(image, theta, P)``."""
  seed = np.clip(
      seed_image + rng.normal(0.0, cfg.noise_std, seed_image.shape), 0, 1
  )
  disc = Discriminator(real_features, cfg.svm_c)
  cand_feats = [featurize(seed[None])]
  cand_thetas, cand_images = [], []
  disc.fit(np.concatenate([own_features] + cand_feats))
  radii = (rho, cfg.r3_factor * rho)

  def objective(thetas):
    images = render(seed, thetas)
    feats = featurize(images)
    values = _objective_terms(
        kind, disc.probability(feats), feats, own_features, real_features,
        radii, cfg.gamma,
    )
    cand_feats.append(feats)
    cand_thetas.append(np.asarray(thetas))
    cand_images.append(images)
    disc.fit(np.concatenate([own_features] + cand_feats))
    return values

  dim = cfg.dimension
  # Every point RACOS evaluates is a candidate x_t; the first is the seed.
  racos.minimize_batched(
      objective, -np.ones(dim), np.ones(dim), budget=cfg.num_candidates,
      seed=int(rng.integers(2**31)), batch_size=cfg.refit_every,
      init_points=np.zeros((1, dim)),
  )
  # The discriminator now holds X_c vs X_c+/- u {x_t}: eq. 1 / eq. 2.
  feats = np.concatenate(cand_feats[1:])
  prob = disc.probability(feats)
  values = _objective_terms(kind, prob, feats, own_features, real_features,
                            radii, cfg.gamma)
  best = int(np.argmin(values))
  return (np.concatenate(cand_images)[best],
          np.concatenate(cand_thetas)[best], float(prob[best]))


def augment(
    images: np.ndarray,
    labels: np.ndarray,
    cfg: AugmentConfig,
    *,
    progress: bool = True,
) -> Augmentation:
  """Generates the positive and negative neighbours of every class.

  Args:
    images: float ``[N, S, S]`` training images in [0, 1] (after flips).
    labels: int ``[N]`` class of each (all >= 0).
    cfg: the settings.
    progress: show a tqdm bar.

  Returns:
    the ``Augmentation`` (classes in increasing order; per class the
    positives, then the negatives).

  Raises:
    ValueError: fewer than two classes, a class with fewer than two images,
      or images that are not ``[N, S, S]``.
  """
  with threadpoolctl.threadpool_limits(1):
    # Thousands of tiny BLAS calls: threads only contend.
    return _augment(images, labels, cfg, progress=progress)


def _augment(images, labels, cfg, *, progress):
  start = time.time()
  images = np.asarray(images, np.float64)
  labels = np.asarray(labels, np.int64)
  if images.ndim != 3 or images.shape[1] != images.shape[2]:
    raise ValueError(
        f"adversarial augmentation: images have shape {images.shape}; "
        "expected square [N, S, S]"
    )
  classes = np.unique(labels)
  if len(classes) < 2:
    raise ValueError(
        f"adversarial augmentation: the training images hold one class "
        f"({classes.tolist()}); DiagNet needs two (benign and malignant)"
    )
  size = images.shape[1]
  render = Perturbation(size, cfg)
  featurize = Features(size, cfg.feature_size)
  rng = np.random.default_rng(cfg.seed)
  plan = []
  for c in classes:
    n = int(np.sum(labels == c))
    if n < 2:
      raise ValueError(
          f"adversarial augmentation: class {int(c)} has {n} training "
          "image(s); at least 2 are needed (rho, the SVMs)"
      )
    plan.append((int(c), int(round(cfg.positive_fraction * n)),
                 int(round(cfg.negative_fraction * n))))
  total = sum(p + q for _, p, q in plan)
  out = {k: [] for k in ("images", "labels", "kinds", "seeds", "scores",
                         "thetas")}
  rho_of = {}
  bar = tqdm.tqdm(total=total, desc="adversarial augmentation",
                  disable=not progress, leave=False)
  for c, num_pos, num_neg in plan:
    idx = np.flatnonzero(labels == c)
    real = featurize(images[idx])
    rho = smallest_distance(real)
    rho_of[c] = rho
    for kind, count in ((signed_graph.POSITIVE, num_pos),
                        (signed_graph.NEGATIVE, num_neg)):
      own = np.zeros((0, real.shape[1]))
      for _ in range(count):
        s = int(idx[rng.integers(len(idx))])
        image, theta, prob = generate_neighbour(
            rng, kind, images[s], real, own, render, featurize, cfg, rho
        )
        own = np.concatenate([own, featurize(image[None])])
        for key, value in (("images", image), ("labels", c), ("kinds", kind),
                           ("seeds", s), ("scores", prob),
                           ("thetas", theta)):
          out[key].append(value)
        bar.update(1)
  bar.close()
  dim, k = cfg.dimension, len(out["images"])
  return Augmentation(
      images=(np.stack(out["images"]).astype(np.float32) if k
              else np.zeros((0, size, size), np.float32)),
      labels=np.asarray(out["labels"], np.int64),
      kinds=np.asarray(out["kinds"], np.int64),
      seeds=np.asarray(out["seeds"], np.int64),
      scores=np.asarray(out["scores"], np.float64),
      thetas=(np.stack(out["thetas"]) if k else np.zeros((0, dim))),
      rho=rho_of,
      seconds=time.time() - start,
  )


def discriminator_agreement(aug: Augmentation) -> dict[int, dict[str, float]]:
  """How often the selecting discriminator calls a generated sample class c.

  Per class c: ``positive``, the fraction of ``X_c+`` that the positive
  discriminator (``{X_c, X_c+ u {x_t}}``, at the sample's selection) scores
  as class c (``P > 1/2``), and ``negative``, the same fraction of ``X_c-``
  under the negative discriminator. Positives are meant to pass (on the
  manifold), negatives to be caught.
  """
  out = {}
  for c in np.unique(aug.labels):
    row = {}
    for name, kind in (("positive", signed_graph.POSITIVE),
                       ("negative", signed_graph.NEGATIVE)):
      scores = aug.scores[(aug.labels == c) & (aug.kinds == kind)]
      row[name] = float(np.mean(scores > 0.5)) if len(scores) else float(
          "nan")
    out[int(c)] = row
  return out

"""Standard derivative-free benchmark functions (shifted), for RACOS checks.

Each maps a float vector ``x`` in ``[-1, 1]^D`` to a float with the optimum
0 at ``x = 0.2`` (shifted away from the box centre, so an optimiser biased
towards the centre gains nothing):

* ``sphere``: ``sum (x - 0.2)^2`` (separable, the zoopt documentation's
  example);
* ``rotated_ellipsoid``: ``sum_i 10^(2 i / (D - 1)) z_i^2`` with
  ``z = Q (x - 0.2)`` and a fixed random rotation ``Q`` (seed 123):
  ill-conditioned (condition number 100) and non-separable;
* ``ackley``: Ackley's function of ``x - 0.2`` (multimodal, non-separable
  through its two means).
"""

import functools

import numpy as np


@functools.lru_cache(maxsize=None)
def rotation(dim: int, seed: int = 123) -> np.ndarray:
  """A fixed random orthogonal ``[dim, dim]`` matrix (QR of a Gaussian)."""
  q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(dim, dim)))
  return q


def sphere(x: np.ndarray) -> float:
  x = np.asarray(x, np.float64)
  return float(np.sum((x - 0.2) ** 2))


def rotated_ellipsoid(x: np.ndarray) -> float:
  x = np.asarray(x, np.float64)
  dim = x.shape[0]
  z = rotation(dim) @ (x - 0.2)
  scales = 10.0 ** (2.0 * np.arange(dim) / max(dim - 1, 1))
  return float(np.sum(scales * z ** 2))


def ackley(x: np.ndarray) -> float:
  z = np.asarray(x, np.float64) - 0.2
  return float(
      -20.0 * np.exp(-0.2 * np.sqrt(np.mean(z ** 2)))
      - np.exp(np.mean(np.cos(2.0 * np.pi * z))) + 20.0 + np.e
  )


FUNCTIONS = {
    "sphere": sphere,
    "rotated_ellipsoid": rotated_ellipsoid,
    "ackley": ackley,
}

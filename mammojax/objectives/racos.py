"""SRACOS: sequential classification-based derivative-free minimisation.

RACOS (Yu, Qian and Hu, AAAI 2016) and its sequential form SRACOS (Hu, Qian
and Yu, AAAI 2017) are what DiagNet (paper section 4.2) uses to solve its
adversarial-augmentation objectives (eq. 1-2). This module implements the
continuous SRACOS of the ``zoopt`` package (0.4.2; semantics read from its
``sracos.py`` / ``racos_classification.py``, no code taken) as pure numpy
functions over a box ``[lower, upper]``:

1. ``train_size`` points are drawn uniformly in the box and evaluated; the
   ``positive_size`` best are the *positive* set, the rest the *negative*
   set.
2. Each of the remaining ``budget - train_size`` iterations, with
   probability ``1 - exploration_rate``, *learns a box*: a random positive
   ``x+`` is picked; while some negative is still inside the box, a random
   coordinate ``k`` and a random remaining negative ``x-`` are picked, a cut
   ``r ~ U(x+_k, x-_k)`` shrinks the box's side ``k`` towards ``x+`` (when it
   narrows it) and the negatives on the far side of the cut are excluded.
   The new point is ``x+`` with ``uncertain_bits`` random coordinates
   resampled uniformly inside the learned box. Otherwise (exploration) the
   point is uniform in the whole box.
3. Replacement 'WR' (worst replace): the evaluated point is inserted into
   the sorted positive set, the worst positive drops out and replaces the
   worst negative when it is better than it.

The defaults follow zoopt's automatic settings: ``train_size`` /
``positive_size`` = 4/1 (budget <= 50), 6/1 (<= 100), 12/2 (<= 1000), else
22/2; ``uncertain_bits`` = 1 (dimension <= 100), 2 (<= 1000), else 3;
``exploration_rate`` = 0.01. Deviations from zoopt, both immaterial for
continuous boxes: points are not rounded to a float precision and not
checked to be distinct from the evaluated ones (ties have probability 0).

``minimize_batched`` is the same search where each of its rounds learns
``batch_size`` boxes from the same positive / negative sets and evaluates the
``batch_size`` candidates in one call of a vectorised objective
(``fn([B, D]) -> [B]``); ``batch_size=1`` is exactly ``minimize``. The
augmentation uses it to score many candidate images per SVM call.

Results are deterministic functions of ``seed`` (a ``numpy`` PCG64
generator). A box with ``lower >= upper`` on some coordinate and a
non-finite objective value raise a ``ValueError`` naming the coordinate or
the point.
"""

import dataclasses
from typing import Callable, Optional

import numpy as np

Objective = Callable[[np.ndarray], float]
BatchedObjective = Callable[[np.ndarray], np.ndarray]


@dataclasses.dataclass(frozen=True)
class Result:
  """The outcome of a minimisation.

  Attributes:
    x: the best point found ``[D]``.
    value: its objective value.
    num_evaluations: objective evaluations spent (= the budget).
    history: the objective value of every evaluation, in order.
  """

  x: np.ndarray
  value: float
  num_evaluations: int
  history: np.ndarray


def default_sizes(budget: int) -> tuple[int, int]:
  """``(train_size, positive_size)`` zoopt picks for ``budget``."""
  if budget <= 50:
    return 4, 1
  if budget <= 100:
    return 6, 1
  if budget <= 1000:
    return 12, 2
  return 22, 2


def default_uncertain_bits(dim: int) -> int:
  """Coordinates zoopt resamples per new point for a continuous ``dim``."""
  if dim <= 100:
    return 1
  if dim <= 1000:
    return 2
  return 3


def check_box(lower, upper) -> tuple[np.ndarray, np.ndarray]:
  """``lower`` and ``upper`` as float64 ``[D]`` vectors, validated.

  Raises:
    ValueError: shapes differ, a bound is not finite, or ``lower >= upper``
      on some coordinate (named).
  """
  lower = np.asarray(lower, np.float64).reshape(-1)
  upper = np.asarray(upper, np.float64).reshape(-1)
  if lower.shape != upper.shape or not lower.size:
    raise ValueError(
        f"RACOS box: lower has shape {lower.shape} and upper {upper.shape}; "
        "expected two non-empty vectors of the same length"
    )
  if not (np.all(np.isfinite(lower)) and np.all(np.isfinite(upper))):
    raise ValueError("RACOS box: lower and upper must be finite")
  bad = np.flatnonzero(lower >= upper)
  if bad.size:
    k = int(bad[0])
    raise ValueError(
        f"RACOS box: lower[{k}]={lower[k]} >= upper[{k}]={upper[k]} "
        f"({bad.size} coordinate(s)); expected lower < upper everywhere"
    )
  return lower, upper


def _check_values(values: np.ndarray, points: np.ndarray) -> np.ndarray:
  values = np.asarray(values, np.float64).reshape(-1)
  if values.shape[0] != points.shape[0]:
    raise ValueError(
        f"RACOS objective returned {values.shape[0]} values for "
        f"{points.shape[0]} points"
    )
  bad = np.flatnonzero(~np.isfinite(values))
  if bad.size:
    i = int(bad[0])
    raise ValueError(
        f"RACOS objective value {values[i]} is not finite at x="
        f"{np.array2string(points[i], precision=4, threshold=8)}; the "
        "objective must return a finite float"
    )
  return values


def learn_box(
    rng: np.random.Generator,
    x_pos: np.ndarray,
    negatives: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
  """RACOS's classifier: a box around ``x_pos`` that holds no negative.

  Args:
    rng: the generator.
    x_pos: the positive point ``[D]``.
    negatives: ``[M, D]`` negative points (none equal to ``x_pos``).
    lower: the search box's lower corner ``[D]``.
    upper: its upper corner ``[D]``.

  Returns:
    ``(lo, hi)``: the learned box, inside the search box, containing
    ``x_pos`` and excluding every negative.
  """
  lo, hi = lower.copy(), upper.copy()
  dim = x_pos.shape[0]
  remaining = np.ones(negatives.shape[0], bool)
  alive = np.arange(negatives.shape[0])
  while alive.size:
    k = int(rng.integers(dim))
    j = alive[int(rng.integers(alive.size))]
    xp, xn = x_pos[k], negatives[j, k]
    if xp < xn:
      r = rng.uniform(xp, xn)
      if r < hi[k]:
        hi[k] = r
        remaining[alive[negatives[alive, k] >= r]] = False
    else:
      r = rng.uniform(xn, xp)
      if r > lo[k]:
        lo[k] = r
        remaining[alive[negatives[alive, k] <= r]] = False
    alive = alive[remaining[alive]]
  return lo, hi


def _sample(rng, positives, negatives, lower, upper, probability, bits):
  """One new point: from a learned box, or uniform (exploration)."""
  if rng.random() < probability:
    x = positives[int(rng.integers(positives.shape[0]))].copy()
    lo, hi = learn_box(rng, x, negatives, lower, upper)
    if bits == 1:
      coords = int(rng.integers(x.shape[0]))
    else:
      coords = rng.permutation(x.shape[0])[:bits]
    x[coords] = rng.uniform(lo[coords], hi[coords])
    return x
  return rng.uniform(lower, upper)


def _settings(budget, dim, train_size, positive_size, uncertain_bits,
              exploration_rate):
  budget = int(budget)
  auto_train, auto_pos = default_sizes(budget)
  train_size = auto_train if train_size is None else int(train_size)
  positive_size = auto_pos if positive_size is None else int(positive_size)
  if not 1 <= positive_size < train_size:
    raise ValueError(
        f"RACOS: positive_size={positive_size} must be in [1, train_size="
        f"{train_size})"
    )
  if budget < train_size:
    raise ValueError(
        f"RACOS: budget={budget} is below train_size={train_size}"
    )
  bits = (
      default_uncertain_bits(dim) if uncertain_bits is None
      else int(uncertain_bits)
  )
  if not 1 <= bits <= dim:
    raise ValueError(
        f"RACOS: uncertain_bits={bits} must be in [1, dimension={dim}]"
    )
  if not 0.0 <= exploration_rate <= 1.0:
    raise ValueError(
        f"RACOS: exploration_rate={exploration_rate} must be in [0, 1]"
    )
  return budget, train_size, positive_size, bits


def minimize_batched(
    fn: BatchedObjective,
    lower,
    upper,
    *,
    budget: int,
    seed: int,
    batch_size: int = 1,
    exploration_rate: float = 0.01,
    train_size: Optional[int] = None,
    positive_size: Optional[int] = None,
    uncertain_bits: Optional[int] = None,
    init_points: Optional[np.ndarray] = None,
) -> Result:
  """SRACOS with ``batch_size`` candidates evaluated per objective call.

  Args:
    fn: vectorised objective, float ``[B, D]`` -> ``[B]`` values to minimise.
    lower: the box's lower corner ``[D]``.
    upper: its upper corner ``[D]``.
    budget: total objective evaluations.
    seed: the generator's seed (results are a function of it).
    batch_size: candidates per call (each from its own learned box, all from
      the same positive / negative sets); 1 is sequential SRACOS.
    exploration_rate: probability of a uniform sample instead of a learned
      box.
    train_size: initial samples (default: zoopt's, see ``default_sizes``).
    positive_size: size of the positive set (default: zoopt's).
    uncertain_bits: coordinates resampled per new point (default: zoopt's).
    init_points: optional ``[K, D]`` points in the box that replace the first
      ``K`` random initial samples (zoopt's ``init_samples``).

  Returns:
    the ``Result`` (best point, its value, the evaluation history).

  Raises:
    ValueError: a bad box or setting, or a non-finite objective value.
  """
  lower, upper = check_box(lower, upper)
  dim = lower.shape[0]
  budget, train_size, positive_size, bits = _settings(
      budget, dim, train_size, positive_size, uncertain_bits,
      exploration_rate,
  )
  batch_size = int(batch_size)
  if batch_size < 1:
    raise ValueError(f"RACOS: batch_size={batch_size} must be >= 1")
  rng = np.random.default_rng(seed)
  init = rng.uniform(lower, upper, size=(train_size, dim))
  if init_points is not None:
    given = np.asarray(init_points, np.float64).reshape(-1, dim)[:train_size]
    if np.any(given < lower) or np.any(given > upper):
      raise ValueError("RACOS: init_points must lie inside [lower, upper]")
    init[: len(given)] = given
  history = []
  values = np.empty(0)
  for start in range(0, train_size, batch_size):
    chunk = init[start:start + batch_size]
    values = np.concatenate([values, _check_values(fn(chunk), chunk)])
  history.extend(values.tolist())
  order = np.argsort(values, kind="stable")
  pos_x, pos_f = init[order[:positive_size]], values[order[:positive_size]]
  neg_x, neg_f = init[order[positive_size:]], values[order[positive_size:]]
  probability = 1.0 - float(exploration_rate)
  remaining = budget - train_size
  while remaining > 0:
    n = min(batch_size, remaining)
    cands = np.stack([
        _sample(rng, pos_x, neg_x, lower, upper, probability, bits)
        for _ in range(n)
    ])
    cand_f = _check_values(fn(cands), cands)
    history.extend(cand_f.tolist())
    for x, f in zip(cands, cand_f.tolist()):
      # Insert into the sorted positives; the worst positive drops out.
      at = int(np.searchsorted(pos_f, f, side="left"))
      if at < positive_size:
        bad_x, bad_f = pos_x[-1].copy(), float(pos_f[-1])
        pos_x[at + 1:] = pos_x[at:-1].copy()
        pos_f[at + 1:] = pos_f[at:-1].copy()
        pos_x[at], pos_f[at] = x, f
      else:
        bad_x, bad_f = x, f
      worst = int(np.argmax(neg_f))
      if neg_f[worst] > bad_f:
        neg_x[worst], neg_f[worst] = bad_x, bad_f
    remaining -= n
  return Result(
      x=pos_x[0].copy(), value=float(pos_f[0]), num_evaluations=budget,
      history=np.asarray(history),
  )


def minimize(
    fn: Objective,
    lower,
    upper,
    *,
    budget: int,
    seed: int,
    exploration_rate: float = 0.01,
    train_size: Optional[int] = None,
    positive_size: Optional[int] = None,
    uncertain_bits: Optional[int] = None,
) -> tuple[np.ndarray, float]:
  """Minimises ``fn`` over the box with sequential RACOS (SRACOS).

  Args:
    fn: the objective, float ``[D]`` vector -> float.
    lower: the box's lower corner ``[D]``.
    upper: its upper corner ``[D]``.
    budget: objective evaluations.
    seed: the generator's seed.
    exploration_rate: probability of a uniform sample (zoopt: 0.01).
    train_size: initial samples (default: zoopt's automatic setting).
    positive_size: size of the positive set (default: zoopt's).
    uncertain_bits: coordinates resampled per new point (default: zoopt's).

  Returns:
    ``(x_best [D], f_best)``.

  Raises:
    ValueError: ``lower >= upper`` on some coordinate, a bad setting, or a
      non-finite objective value (the point is named).
  """
  result = minimize_batched(
      lambda xs: np.asarray([float(fn(x)) for x in xs]),
      lower, upper, budget=budget, seed=seed, batch_size=1,
      exploration_rate=exploration_rate, train_size=train_size,
      positive_size=positive_size, uncertain_bits=uncertain_bits,
  )
  return result.x, result.value

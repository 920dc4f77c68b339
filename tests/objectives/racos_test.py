"""RACOS / SRACOS: semantics, determinism, bad input, and zoopt parity."""

from absl.testing import absltest
import numpy as np
from zoopt import Dimension2, Objective, Opt, Parameter, ValueType

from mammojax.objectives import benchmark_functions
from mammojax.objectives import racos


def _zoopt_best(fn, dim, budget, seed):
  space = Dimension2([(ValueType.CONTINUOUS, [-1.0, 1.0], 1e-6)] * dim)
  objective = Objective(lambda sol: fn(np.asarray(sol.get_x())), space)
  return Opt.min(objective, Parameter(budget=budget, seed=seed)).get_value()


class RacosTest(absltest.TestCase):

  def test_within_2x_of_zoopt_on_three_functions(self):
    # The check: 10-D, box [-1, 1], budget 2000, median of 5 seeds.
    lower, upper = -np.ones(10), np.ones(10)
    for name, fn in benchmark_functions.FUNCTIONS.items():
      ours = [racos.minimize(fn, lower, upper, budget=2000, seed=s)[1]
              for s in range(5)]
      theirs = [_zoopt_best(fn, 10, 2000, s) for s in range(5)]
      with self.subTest(name):
        self.assertLessEqual(np.median(ours), 2.0 * np.median(theirs))
        # Far better than uniform random search (sphere: ~0.67).
        if name == "sphere":
          self.assertLess(np.median(ours), 5e-3)

  def test_learned_box_holds_positive_excludes_negatives(self):
    rng = np.random.default_rng(0)
    lower, upper = -np.ones(4), np.ones(4)
    pos = np.array([0.1, -0.2, 0.3, 0.0])
    neg = rng.uniform(-1, 1, (20, 4))
    lo, hi = racos.learn_box(rng, pos, neg, lower, upper)
    self.assertTrue(np.all(lo <= pos) and np.all(pos <= hi))
    self.assertTrue(np.all(lower <= lo) and np.all(hi <= upper))
    inside = np.all((neg > lo) & (neg < hi), axis=1)
    self.assertFalse(np.any(inside))

  def test_deterministic_budget_and_batched_equivalence(self):
    fn = benchmark_functions.sphere
    lower, upper = -np.ones(3), np.ones(3)
    a = racos.minimize_batched(
        lambda xs: np.asarray([fn(x) for x in xs]), lower, upper,
        budget=120, seed=7,
    )
    x, value = racos.minimize(fn, lower, upper, budget=120, seed=7)
    np.testing.assert_array_equal(a.x, x)
    self.assertEqual(a.value, value)
    self.assertEqual(a.num_evaluations, 120)
    self.assertLen(a.history, 120)
    self.assertEqual(value, np.min(a.history))
    self.assertAlmostEqual(fn(x), value)
    b = racos.minimize_batched(
        lambda xs: np.asarray([fn(x) for x in xs]), lower, upper,
        budget=120, seed=8,
    )
    self.assertFalse(np.array_equal(a.history, b.history))
    # Batched: many candidates per call, same budget, points inside the box.
    calls = []

    def vectorised(xs):
      calls.append(len(xs))
      self.assertTrue(np.all(xs >= lower) and np.all(xs <= upper))
      return np.sum((xs - 0.2) ** 2, axis=1)

    c = racos.minimize_batched(vectorised, lower, upper, budget=300,
                               seed=0, batch_size=16)
    self.assertEqual(sum(calls), 300)
    self.assertLess(len(calls), 30)
    self.assertLess(c.value, 0.05)

  def test_bad_input(self):
    fn = benchmark_functions.sphere
    with self.assertRaisesRegex(ValueError, r"lower\[1\]=1\.0 >= upper\[1\]"):
      racos.minimize(fn, [0.0, 1.0], [1.0, 1.0], budget=50, seed=0)
    with self.assertRaisesRegex(ValueError, "same length"):
      racos.minimize(fn, [0.0], [1.0, 1.0], budget=50, seed=0)
    with self.assertRaisesRegex(ValueError, "not finite at x="):
      racos.minimize(lambda x: np.nan, [0.0], [1.0], budget=50, seed=0)
    with self.assertRaisesRegex(ValueError, "budget=3"):
      racos.minimize(fn, [0.0], [1.0], budget=3, seed=0)


if __name__ == "__main__":
  absltest.main()

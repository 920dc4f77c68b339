"""Times building both graphs of one cluster and padding a batch; prints JSON.

Run from the repository root:  python scripts/measure_graphs.py --nodes=200
"""

import json
import time

from absl import app
from absl import flags
import numpy as np

from mammojax.data import batching
from mammojax.data import graphs

_NODES = flags.DEFINE_integer("nodes", 200, "Calcifications in the cluster.")
_REPEATS = flags.DEFINE_integer("repeats", 50, "Timed repetitions.")
_RADIUS = flags.DEFINE_float("radius", 0.05, "Radius (normalised units).")
_BATCH = flags.DEFINE_integer("batch_size", 8, "Samples per padded batch.")


def _median_ms(fn, repeats):
  fn()  # Warm-up.
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return 1e3 * float(np.median(times))


def main(argv):
  del argv
  rng = np.random.default_rng(0)
  n = _NODES.value
  # A cluster occupying ~10% of the image width, like a segmental group.
  coords = (0.5 + 0.1 * rng.standard_normal((n, 2))).astype(np.float32)
  sample = {
      "id": "bench",
      "nodes": {
          "patches": rng.random((n, 14, 14), dtype=np.float32),
          "coords": coords,
          "label": np.zeros(n, np.int32),
      },
      "label": 0,
  }
  build = lambda: graphs.build_sample_graphs(sample, radius=_RADIUS.value)
  sample_graphs = build()
  samples = [sample_graphs] * _BATCH.value
  budget = batching.estimate_budget(samples, _BATCH.value)
  result = {
      "nodes": n,
      "edges": {t: int(g.n_edge[0]) for t, g in sample_graphs.items()},
      "build_both_graphs_ms": _median_ms(build, _REPEATS.value),
      "knn_ms": _median_ms(
          lambda: graphs.knn_graph(coords, 4), _REPEATS.value
      ),
      "radius_ms": _median_ms(
          lambda: graphs.radius_graph(coords, _RADIUS.value), _REPEATS.value
      ),
      "pad_batch_ms": _median_ms(
          lambda: batching.pad_batch(samples, budget), _REPEATS.value
      ),
      "batch_size": _BATCH.value,
      "budget": {
          "n_node": budget.n_node,
          "n_edge": dict(budget.n_edge),
          "n_graph": budget.n_graph,
      },
  }
  print(json.dumps(result, indent=1))


if __name__ == "__main__":
  app.run(main)

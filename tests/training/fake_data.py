"""Small random calcification-cluster examples for training tests."""

import numpy as np

MORPHOLOGY = ("punctate", "amorphous", "coarse_heterogeneous",
              "fine_pleomorphic", "fine_linear_branching")
DISTRIBUTION = ("diffuse", "regional", "grouped", "linear", "segmental")


def _crop(coords, size):
  """uint8 ``[size, size]``: 200 at each node's normalised ``xy``."""
  crop = np.zeros((size, size), np.uint8)
  xy = np.clip(np.round(coords * (size - 1)), 0, size - 1).astype(int)
  crop[xy[:, 1], xy[:, 0]] = 200
  return crop


def make_examples(num_examples=24, *, seed=0, patch_size=14, max_nodes=12,
                  crop_size=32):
  """Examples in the layout of the calcification-graph TFDS builders.

  Labels are learnable: the graph label sets the spread of the nodes and the
  node label sets the brightness of the patch. The ``crop`` shows the nodes
  as bright pixels at their coordinates.
  """
  rng = np.random.default_rng(seed)
  examples = []
  for i in range(num_examples):
    dist = i % len(DISTRIBUTION)
    n = int(rng.integers(1, max_nodes + 1))
    spread = 0.02 + 0.05 * dist
    centre = rng.uniform(0.3, 0.7, size=2)
    coords = (centre + rng.normal(0, spread, size=(n, 2))).astype(np.float32)
    morph = rng.integers(0, len(MORPHOLOGY), size=n)
    patches = rng.normal(0, 0.05, size=(n, patch_size, patch_size))
    patches += (morph[:, None, None] + 1) / 6.0
    examples.append({
        "example_id": f"img{i:03d}/c0",
        "patient_id": f"P{i // 2:03d}",
        "image_id": f"img{i:03d}",
        "patches": patches.astype(np.float32),
        "coords": coords,
        "centers_xy": coords * 100.0,
        "morphology": morph.astype(np.int64),
        "distribution": np.int64(dist),
        "crop": _crop(coords, crop_size),
        "crop_box": np.array([0, 0, 100, 100], np.float32),
        "source_split": "full",
    })
  info = {
      "vocabularies": {
          "morphology": list(MORPHOLOGY),
          "distribution": list(DISTRIBUTION),
      },
      "build_report": {},
  }
  return examples, info

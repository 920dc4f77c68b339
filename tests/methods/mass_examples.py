"""Tiny in-memory mass-ROI examples with the ``synthetic_masses`` keys.

The dataset contract of the mass-ROI builders (docs/datasets.md): ``crop`` /
``crop_mask`` uint8 ``[C, C]``, ``mass_shape`` / ``mass_margin`` indices
(-1 missing), ``pathology`` / ``malignant``, ``patient_id``, ``example_id``,
``view``, ``laterality``, ``source_split``. Each patient has one mass seen in
a CC and an MLO crop; the mass is an ellipse whose elongation follows the
shape and whose border roughness follows the margin, and the pathology
follows shape + margin, so a network can learn all three.
"""

import numpy as np

SHAPES = ("round", "oval", "lobulated", "irregular")
MARGINS = (
    "circumscribed", "obscured", "microlobulated", "ill_defined",
    "spiculated",
)


def vocabularies():
  return {
      "mass_shape": list(SHAPES),
      "mass_margin": list(MARGINS),
      "pathology": ["benign", "malignant"],
  }


def _crop(rng, shape, margin, size):
  yy, xx = np.mgrid[:size, :size] / (size - 1) * 2 - 1
  aspect = (1.0, 1.6, 1.3, 1.8)[shape]
  r = np.hypot(xx * aspect, yy)
  theta = np.arctan2(yy, xx)
  rough = (0.0, 0.05, 0.1, 0.15, 0.25)[margin]
  border = 0.55 + rough * np.sin(7 * theta + rng.uniform(0, 6))
  inside = r < border
  image = 60 + 25 * rng.random((size, size))
  image[inside] += 110 + 20 * shape
  return np.clip(image, 0, 255).astype(np.uint8), (inside * 255).astype(
      np.uint8
  )


def make_examples(num_patients=24, *, size=32, seed=0, missing=0.1):
  """``(examples, info)``: two views per patient, a few missing attributes."""
  rng = np.random.default_rng(seed)
  examples = []
  for p in range(num_patients):
    # Every value in every sixth of the patients (so in every split).
    shape = (p + seed) % len(SHAPES)
    margin = (3 * p + p // len(SHAPES) + seed) % len(MARGINS)
    risk = 0.4 * (shape == 3) + 0.15 * shape / 3 + 0.45 * margin / 4
    pathology = int(risk > 0.45)
    labels = {"mass_shape": shape, "mass_margin": margin}
    for view in ("CC", "MLO"):
      crop, mask = _crop(rng, shape, margin, size)
      ex = {
          "patient_id": f"P{p:03d}",
          "example_id": f"P{p:03d}_L_{view}",
          "image_id": f"P{p:03d}_L_{view}",
          "view": view,
          "laterality": "L",
          "source_split": "full",
          "crop": crop,
          "crop_mask": mask,
          "pathology": pathology,
          "malignant": pathology,
      }
      for name, value in labels.items():
        ex[name] = -1 if rng.random() < missing else value
      examples.append(ex)
  info = {"vocabularies": vocabularies(), "build_report": {}}
  return examples, info

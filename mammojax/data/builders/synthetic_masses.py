"""``synthetic_masses``: mass ROIs from the synthetic mammograms (TFDS).

The default data of the mass methods (DiagNet, DAE-GCN): one example per
mass in one view, with the mass-ROI features of ``mass_rois`` (exactly
``cbis_ddsm_masses``'s, so ``config.dataset.name`` switches between synthetic
and real masses). Every image of the generator's patient stream is rendered
with one mass and no calcification cluster (``mass_probability`` = 1,
``clusters_per_image`` = 0), in memory, and read through
``mammojax.data.dicom.load_dicom`` like a real file (VOI window, polarity,
laterality normalisation); CC and MLO of a breast show the same mass with the
same labels, so split patient-wise.

* ROI: the generator's mass outline (``annotation['masses'][i]
  ['contour_xy']``, stored-pixel grid, 72 vertices) rasterised
  (``mass_rois.polygon_mask``) and mirrored with the view; ``crop`` = its
  bounding box squared and padded to ``1 + 2 * crop_margin`` times its long
  side (default 0.3: 1.6x, DiagNet's section 4.1) from the full-resolution
  laterality-normalised view; ``crop_mask`` the outline in that crop.
* Labels: ``mass_shape`` (round, oval, lobulated, irregular) and
  ``mass_margin`` (circumscribed, obscured, microlobulated, ill_defined,
  spiculated), drawn uniformly; ``pathology`` from the generator's BI-RADS-
  like logistic risk of shape + margin (irregular / spiculated masses are
  mostly malignant, round / oval circumscribed ones mostly benign);
  ``density`` the image's ACR density; ``assessment`` and ``subtlety`` -1
  (the generator draws neither).
* A breast where the mass could not be placed gives no example (counted in
  ``build_report['skipped']``).

Configs: ``default`` (480 images, ~246 patients, 128 px crops from 0.1 mm
pixels, 256 x 160 views; a few minutes on 2 cores), ``paper`` (1,000 images,
224 px crops from the generator's native 0.07-0.1 mm pixels) and ``tiny``
(24 images, 32 px crops, 64 x 40 views, for tests). One split ``full``.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Optional

from absl import logging
import numpy as np
import tensorflow_datasets as tfds
import tqdm

from mammojax.data import dicom
from mammojax.data import synthetic
from mammojax.data.builders import base
from mammojax.data.builders import mass_rois
from mammojax.data.builders import whole_image

# Excess attenuation of mass tissue (1/mm): the generator's glandular excess
# (``SyntheticConfig.mu_gland_excess``), as a solid mass is about as dense as
# fibroglandular tissue; the generator's default (0.02, tuned for masses as a
# side finding of the whole-image data) hides many masses in dense breasts.
MASS_ATTENUATION_PER_MM = 0.035


@dataclasses.dataclass
class SyntheticMassConfig(mass_rois.MassRoiConfig):
  """Build options (part of the cache key through the config name).

  Attributes:
    num_images: images of the generator's patient stream to render.
    seed: dataset seed.
    pixel_spacing_mm: render at this pixel size (None: the generator's
      0.07 / 0.085 / 0.1 mm).
    generator_overrides: other ``SyntheticConfig`` fields.
    workers: rendering processes.
  """

  num_images: int = 480
  seed: int = 0
  crop_size: int = 128
  crop_margin: float = 0.3
  pixel_spacing_mm: Optional[float] = 0.1
  generator_overrides: tuple[tuple[str, Any], ...] = ()
  workers: int = 2


def generator_config(config: SyntheticMassConfig) -> synthetic.SyntheticConfig:
  """The generator config: one mass per breast, no calcification cluster."""
  kwargs = dict(config.generator_overrides)
  if config.pixel_spacing_mm:
    kwargs["pixel_spacings_mm"] = (float(config.pixel_spacing_mm),)
  kwargs.setdefault("mass_attenuation_per_mm", MASS_ATTENUATION_PER_MM)
  kwargs.update(mass_probability=1.0, clusters_per_image=0)
  return synthetic.SyntheticConfig(**kwargs)


def vocabularies() -> dict[str, list[str]]:
  """The dataset's vocabularies (the generator's shapes and margins)."""
  return mass_rois.vocabularies(synthetic.MASS_SHAPES, synthetic.MASS_MARGINS)


def render_examples(
    args: tuple[SyntheticMassConfig, int],
) -> tuple[list[tuple[str, dict[str, Any]]], Optional[str]]:
  """Renders image ``index``: ``(examples, skip reason or None)``."""
  config, index = args
  gen = generator_config(config)
  image = synthetic.generate_image(gen, config.seed, index)
  ann = image.annotation
  masses = ann.get("masses") or []
  if not masses:
    return [], "mass could not be placed"
  view = dicom.load_dicom(image.dataset, orient=True, crop=True,
                          resize=tuple(config.image_size))
  full = dicom.load_dicom(image.dataset, orient=True, crop=False)
  rows, cols = full.stored_shape
  vocab = vocabularies()
  density = synthetic.DENSITIES.index(ann["density"]) + 1
  out = []
  for m in masses:
    mask = mass_rois.polygon_mask(np.asarray(m["contour_xy"]), (rows, cols))
    if not mask.any():
      return [], "mass outline holds no pixel"
    oriented = mask[:, ::-1] if full.flipped else mask
    crop, crop_mask, box = mass_rois.box_crop(
        full.image, oriented, config.crop_margin, config.crop_size)
    roi_mask = base.to_uint8(
        whole_image.map_to_view(mask, view, tuple(config.image_size)) > 0.5)
    example_id = f"{ann['image_id']}_M{m['id']}"
    ex = whole_image.whole_image_example(
        view,
        example_id=example_id,
        patient_id=ann["patient_id"],
        image_id=ann["image_id"],
        view_name=ann["view"],
        labels={"calcification": 0, "mass": 1,
                "malignant": int(m["pathology"] == "malignant")},
    )
    ex.update(mass_rois.roi_features(
        crop=crop, crop_mask=crop_mask, crop_box=box, roi_mask=roi_mask,
        has_roi_mask=1,
        labels={"mass_shape": m["shape"], "mass_margin": m["margin"],
                "pathology": m["pathology"], "pathology_raw": m["pathology"],
                "abnormality_id": m["id"], "density": density},
        vocabulary=vocab))
    out.append((example_id, ex))
  return out, None


def build_report(results, num_images: int) -> dict[str, Any]:
  """Counts per label and skipped images with reasons."""
  vocab = vocabularies()
  report = {"images_planned": num_images, "examples": 0, "patients": 0,
            "pathology": {}, "mass_shape": {}, "mass_margin": {}, "view": {},
            "malignant_rate_by_shape": {}, "malignant_rate_by_margin": {},
            "skipped": {}}
  patients = set()
  by = {"mass_shape": {}, "mass_margin": {}}

  def bump(table, key, n=1):
    table[key] = table.get(key, 0) + n

  for examples, reason in results:
    if reason is not None:
      bump(report["skipped"], reason)
    for _, ex in examples:
      report["examples"] += 1
      patients.add(ex["patient_id"])
      bump(report["pathology"], vocab["pathology"][ex["pathology"]])
      bump(report["view"], ex["view"])
      for key in ("mass_shape", "mass_margin"):
        name = vocab[key][ex[key]]
        bump(report[key], name)
        row = by[key].setdefault(name, [0, 0])
        row[0] += 1
        row[1] += int(ex["pathology"])
  for key, table in by.items():
    report[f"malignant_rate_by_{key[5:]}"] = {
        k: round(m / n, 3) for k, (n, m) in sorted(table.items())}
  report["patients"] = len(patients)
  logging.info("synthetic_masses build report: %s", json.dumps(report))
  return report


class SyntheticMasses(tfds.core.GeneratorBasedBuilder):
  """Mass ROIs (crop, outline, shape, margin, pathology) of synthetic views."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = [
      SyntheticMassConfig(
          name="default",
          description="480 images (~246 patients), 128 px crops, CPU-sized.",
      ),
      SyntheticMassConfig(
          name="paper",
          description="1,000 images, 224 px crops at native resolution.",
          num_images=1000,
          crop_size=224,
          pixel_spacing_mm=None,
      ),
      SyntheticMassConfig(
          name="tiny",
          description="24 images, 32 px crops, 64 x 40 views, for tests.",
          num_images=24,
          image_size=(64, 40),
          crop_size=32,
          pixel_spacing_mm=0.3,
          generator_overrides=(("breast_scale", 0.6),),
          workers=1,
      ),
  ]

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=mass_rois.features(self.builder_config),
        metadata=tfds.core.MetadataDict(vocabularies=vocabularies()),
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    config = self.builder_config
    args = [(config, i) for i in range(config.num_images)]
    mapper = base.pool_mapper(config.workers)
    results = list(tqdm.tqdm(mapper(render_examples, args), total=len(args),
                             desc="synthetic masses"))
    self.info.metadata["build_report"] = build_report(
        results, config.num_images)
    examples = [item for items, _ in results for item in items]
    return {base.FULL_SPLIT: self._generate_examples(examples)}

  def _generate_examples(self, examples):
    yield from examples

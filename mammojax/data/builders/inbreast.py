"""INbreast calcification-graph TFDS builder: ``inbreast_calcifications``.

``manual_dir`` is the INbreast release folder as parsed by
``mammojax.data.sources.parse_inbreast`` (``INbreast.csv``,
``AllDICOMs/*.dcm``, ``AllXML/*.xml``). The graphs come straight from the
annotated calcifications of the XML files (no detector): each
``Calcification`` ROI is one node (1-point ROIs at the point, contours at
their centroid), grouped into clusters as the parser does (a ``Cluster``
contour containing the calcification, else one implicit cluster per image).
One example per cluster, with exactly the features of the synthetic
calcification-graph builder, built by the same ``examples_from_image``.

Labels: INbreast annotates neither calcification morphology nor cluster
distribution, so node ``morphology`` and graph ``distribution`` are -1
(unknown; masked out of MT-GCN's losses). The image-level labels are kept
per example in ``build_report['example_labels']``: ``birads`` (1, 2, 3, 4a,
4b, 4c, 5, 6) and ``pathology`` mapped from it (1-3 benign, 4a-6 malignant;
the usual INbreast convention; ``pathology_map`` of the builder config
overrides it), ``acr`` density 1-4, ``laterality``, ``view``.

Images without an XML file or without calcifications give no example
(counted). INbreast has no official split: one split ``full``, split
patient-wise by the pipeline (patient = the hash in the DICOM name, shared
by all images of one woman).

``inbreast_masses`` (DiagNet, DAE-GCN): one example per ``Mass`` ROI of the
XML files with the mass-ROI features of ``mass_rois`` (those of
``synthetic_masses`` / ``cbis_ddsm_masses``): the contour rasterised
(``mass_rois.polygon_mask``) in the stored-pixel grid, ``crop`` its bounding
box squared and padded 1.6x (``crop_margin`` 0.3, DiagNet's section 4.1)
from the laterality-normalised full-resolution view. INbreast annotates no
per-lesion shape, margin or pathology: ``mass_shape`` / ``mass_margin`` are
-1 (the synthetic vocabularies are kept so configs switch datasets), and
``pathology`` is the *image's* BI-RADS mapped as above (1-3 benign, 4a-6
malignant; ``pathology_map`` overrides, e.g. to drop BI-RADS 3 by mapping it
to nothing) with ``assessment`` the BI-RADS number (4a-4c -> 4). A mass
contour entirely outside the stored image gives no example
("mass outline outside the image", counted in the build report); one
partly outside is clipped (counted).
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from mammojax.data import dicom
from mammojax.data import synthetic
from mammojax.data import vocab as vocab_lib
from mammojax.data.builders import base
from mammojax.data.builders import graph_examples
from mammojax.data.builders import mass_rois
from mammojax.data.builders import whole_image
from mammojax.data.sources import inbreast as source


@dataclasses.dataclass
class InbreastConfig(graph_examples.CalcGraphConfig):
  """Options of ``inbreast_calcifications`` (part of the cache key).

  Attributes:
    downsample: block-average factor of the stored pixels; annotation
      coordinates are scaled to match (1 = off).
    pathology_map: (BI-RADS, 'benign' | 'malignant') pairs; empty = the
      parser's default (1-3 benign, 4a-6 malignant).
  """

  downsample: int = 1
  pathology_map: tuple[tuple[str, str], ...] = ()


def _scale(entry: dict, factor: int) -> None:
  """Divides the stored-grid coordinates of one finding by ``factor``."""
  # Pixel centres at integers: x_small = (x + 0.5) / f - 0.5.
  def f(xy):
    return [(float(v) + 0.5) / factor - 0.5 for v in xy]

  entry["center_xy"] = f(entry["center_xy"])
  if entry.get("contour_xy"):
    entry["contour_xy"] = [f(p) for p in entry["contour_xy"]]


def cluster_examples(payload) -> base.ItemResult:
  """One annotated INbreast image -> one example per cluster."""
  record, vocabularies, config = payload
  result = base.ItemResult()
  annotation = copy.deepcopy(record.annotation)
  try:
    ds = base.read_dataset(record.image_path, downsample=config.downsample,
                           laterality=annotation["laterality"])
  except dicom.DicomError as e:
    result.skipped.append((record.example_id, f"unreadable DICOM ({e.reason})"))
    return result
  if config.downsample > 1:
    annotation["rows"], annotation["columns"] = int(ds.Rows), int(ds.Columns)
    for key in ("calcifications", "masses"):
      for entry in annotation[key]:
        _scale(entry, config.downsample)
    result.counts["images downsampled"] = 1
  try:
    examples, skipped = graph_examples.examples_from_image(
        ds, annotation, vocabularies, config, where=record.example_id,
        counts=result.counts)
  except dicom.DicomError as e:
    result.skipped.append((record.example_id, f"unreadable DICOM ({e.reason})"))
    return result
  for reason, n in skipped.items():
    result.skipped.extend([(record.example_id, reason)] * n)
  implicit = record.extras.get("implicit_cluster_id")
  for key, ex in examples:
    cluster = int(key.rsplit("/c", 1)[1])
    result.counts["graphs: nodes"] = (
        result.counts.get("graphs: nodes", 0) + len(ex["morphology"]))
    result.examples.append((key, ex, {
        "birads": record.labels["birads"],
        "pathology": record.labels["pathology"],
        "cluster": "implicit" if cluster == implicit else "cluster contour",
        "morphology": "unknown",
        "distribution": "unknown",
    }))
    result.example_labels[key] = {
        k: record.labels.get(k)
        for k in ("birads", "pathology", "acr", "laterality", "view")
    }
  return result


class InbreastCalcifications(tfds.core.GeneratorBasedBuilder):
  """INbreast annotated calcifications as calcification graphs."""

  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {"1.0.0": "Initial release.",
                   "1.1.0": "Graph feature subtlety (-1: INbreast has none)."}
  BUILDER_CONFIGS = [
      InbreastConfig(name="default", description="Full resolution."),
      InbreastConfig(
          name="tiny",
          description="Pixels / 4, small crops and views; for tests.",
          downsample=4,
          crop_size=64,
          view_size=(64, 40),
          workers=1,
      ),
  ]
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Point manual_dir at the INbreast release folder with INbreast.csv, "
      "AllDICOMs/ and AllXML/ (docs/datasets.md)."
  )

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=graph_examples.features(self.builder_config),
        metadata=tfds.core.MetadataDict(vocabularies=self._vocabularies()),
    )

  @staticmethod
  def _vocabularies() -> dict[str, list[str]]:
    # No morphology / distribution labels exist in INbreast (all -1); the
    # class names are the synthetic / in-house ones MT-GCN is trained on.
    synthetic = vocab_lib.VOCABULARIES["synthetic"]
    return {
        "morphology": list(synthetic["morphology"]),
        "distribution": list(synthetic["distribution"]),
        "birads": list(source.BIRADS),
        "pathology": ["benign", "malignant"],
    }

  def _split_generators(self, dl_manager):
    config = self.builder_config
    records, report = source.parse_inbreast(
        base.manual_dir(dl_manager),
        pathology_map=dict(config.pathology_map) or None,
    )
    vocabularies = self._vocabularies()
    items = []
    for r in records:
      if not r.labels.get("has_annotation"):
        report.skip(r.example_id, "image without XML annotation")
        continue
      if not r.annotation.get("calcifications"):
        report.skip(r.example_id, "image without calcifications")
        continue
      items.append(base.PlannedItem(base.FULL_SPLIT, r.example_id,
                                    r.patient_id, (r, vocabularies, config)))
    build = base.LazyBuild(self, report, vocabularies)
    return build.splits(items, cluster_examples,
                        base.pool_mapper(config.workers))

  def _generate_examples(self, examples):
    yield from examples



@dataclasses.dataclass
class InbreastMassConfig(mass_rois.MassRoiConfig):
  """Options of ``inbreast_masses`` (part of the cache key).

  Attributes:
    pathology_map: (BI-RADS, 'benign' | 'malignant') pairs; empty = the
      parser's default (1-3 benign, 4a-6 malignant). Images whose BI-RADS
      is not in a given map are skipped (counted).
  """

  crop_margin: float = 0.3
  pathology_map: tuple[tuple[str, str], ...] = ()


def _mass_vocabularies() -> dict[str, list[str]]:
  return mass_rois.vocabularies(synthetic.MASS_SHAPES, synthetic.MASS_MARGINS)


def mass_examples(payload) -> base.ItemResult:
  """One annotated INbreast image -> one example per Mass ROI."""
  record, vocabularies, config = payload
  result = base.ItemResult()
  annotation = record.annotation
  try:
    ds, view = whole_image.load_view(record.image_path, config,
                                     laterality=annotation["laterality"])
    full = dicom.load_dicom(ds, orient=True, crop=False)
  except dicom.DicomError as e:
    result.skipped.append((record.example_id, f"unreadable DICOM ({e.reason})"))
    return result
  rows, cols = full.stored_shape
  factor = max(int(config.downsample), 1)
  size = tuple(config.image_size)
  birads = str(record.labels["birads"])
  for mass in annotation.get("masses", []):
    key = f"{record.example_id}/m{mass['id']}"
    contour = mass.get("contour_xy")
    if not contour or len(contour) < 3:
      result.skipped.append((key, "mass ROI without a contour"))
      continue
    xy = (np.asarray(contour, np.float64) + 0.5) / factor - 0.5
    inside = ((xy[:, 0] >= -0.5) & (xy[:, 0] < cols - 0.5)
              & (xy[:, 1] >= -0.5) & (xy[:, 1] < rows - 0.5))
    mask = mass_rois.polygon_mask(xy, (rows, cols))
    if not mask.any():
      result.skipped.append((key, "mass outline outside the image"))
      continue
    if not inside.all():
      result.counts["masses: outline partly outside the image (clipped)"] = (
          result.counts.get(
              "masses: outline partly outside the image (clipped)", 0) + 1)
    oriented = mask[:, ::-1] if full.flipped else mask
    crop, crop_mask, box = mass_rois.box_crop(
        full.image, oriented, config.crop_margin, config.crop_size)
    box *= factor
    roi_mask = base.to_uint8(
        whole_image.map_to_view(mask, view, size) > 0.5)
    pathology = record.labels["pathology"]
    ex = whole_image.whole_image_example(
        view,
        example_id=key,
        patient_id=record.patient_id,
        image_id=str(record.example_id),
        view_name=annotation["view"],
        labels={"calcification": int(bool(annotation.get("calcifications"))),
                "mass": 1, "malignant": int(pathology == "malignant")},
    )
    ex.update(mass_rois.roi_features(
        crop=crop, crop_mask=crop_mask, crop_box=box, roi_mask=roi_mask,
        has_roi_mask=1,
        labels={"mass_shape": None, "mass_margin": None,
                "pathology": pathology, "pathology_raw": f"BI-RADS {birads}",
                "abnormality_id": mass["id"],
                "assessment": int(birads[0]),
                "density": record.labels.get("acr")},
        vocabulary=vocabularies))
    result.examples.append((key, ex, {"pathology": pathology,
                                      "birads": birads}))
    result.example_labels[key] = {
        k: record.labels.get(k)
        for k in ("birads", "pathology", "acr", "laterality", "view")
    }
  return result


class InbreastMasses(tfds.core.GeneratorBasedBuilder):
  """INbreast Mass ROIs as mass-ROI examples (crop, outline, pathology)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = [
      InbreastMassConfig(name="default",
                         description="256 x 160 views, 256 px crops."),
      InbreastMassConfig(name="paper", description="224 px crops.",
                         crop_size=224),
      InbreastMassConfig(
          name="tiny",
          description="Pixels / 4, 32 px crops, 64 x 40 views; for tests.",
          downsample=4,
          crop_size=32,
          image_size=(64, 40),
      ),
  ]
  MANUAL_DOWNLOAD_INSTRUCTIONS = InbreastCalcifications.MANUAL_DOWNLOAD_INSTRUCTIONS

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=mass_rois.features(self.builder_config),
        metadata=tfds.core.MetadataDict(vocabularies=_mass_vocabularies()),
    )

  def _split_generators(self, dl_manager):
    config = self.builder_config
    mapping = dict(config.pathology_map) or None
    records, report = source.parse_inbreast(base.manual_dir(dl_manager),
                                            pathology_map=mapping)
    vocabularies = _mass_vocabularies()
    items = []
    for r in records:
      if not r.labels.get("has_annotation"):
        report.skip(r.example_id, "image without XML annotation")
        continue
      if not r.annotation.get("masses"):
        report.skip(r.example_id, "image without masses")
        continue
      items.append(base.PlannedItem(base.FULL_SPLIT, r.example_id,
                                    r.patient_id, (r, vocabularies, config)))
    build = base.LazyBuild(self, report, vocabularies)
    return build.splits(items, mass_examples)

  def _generate_examples(self, examples):
    yield from examples

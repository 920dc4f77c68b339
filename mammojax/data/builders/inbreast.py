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
"""

from __future__ import annotations

import copy
import dataclasses

import tensorflow_datasets as tfds

from mammojax.data import dicom
from mammojax.data import vocab as vocab_lib
from mammojax.data.builders import base
from mammojax.data.builders import graph_examples
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

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
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


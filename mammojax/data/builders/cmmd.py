"""CMMD (Chinese Mammography Database) whole-image TFDS builder: ``cmmd``.

``manual_dir`` is the NBIA download folder as parsed by
``mammojax.data.sources.parse_cmmd`` (clinical CSV or XLSX, the manifest
``metadata.csv`` and ``CMMD/<Subject>/<study>/<series>/*.dcm``). One example
per DICOM image of a breast with a clinical row, with the whole-image
features of docs/architecture.md:

* ``laterality`` from the DICOM header (ImageLaterality, else Laterality),
  which is also how the image is matched to the per-breast clinical row;
  ``view`` from the header ('' when absent).
* ``calcification`` / ``mass`` from ``abnormality``: calcification -> (1, 0),
  mass -> (0, 1), both -> (1, 1).
* ``malignant`` from ``classification`` (Malignant 1, Benign 0).
* ``subtype``: index in (luminal_a, luminal_b, her2_enriched,
  triple_negative), -1 when the clinical row has none (all benign rows,
  all D1-* rows); ``luminal``: 1 for Luminal A / B, 0 for HER2-enriched /
  triple negative, -1 without subtype.

CMMD has no official split: everything is in one split ``full`` and the
pipeline splits patient-wise (patient = subject id ``D1-0001``; its two
breasts stay together).
"""

from __future__ import annotations

import tensorflow_datasets as tfds

from mammojax.data import dicom
from mammojax.data.builders import base
from mammojax.data.builders import whole_image
from mammojax.data.sources import cmmd as cmmd_source

ABNORMALITY_FLAGS = {
    "calcification": (1, 0),
    "mass": (0, 1),
    "both": (1, 1),
}


def labels_of(record) -> dict[str, int]:
  """Whole-image label indices of one CMMD record."""
  calc, mass = ABNORMALITY_FLAGS[record.labels["abnormality"]]
  subtype = whole_image.subtype_index(record.labels.get("subtype"))
  return {
      "calcification": calc,
      "mass": mass,
      "malignant": int(record.labels["pathology"] == "malignant"),
      "subtype": subtype,
      "luminal": whole_image.luminal_from_subtype(subtype),
  }


def _process(payload) -> base.ItemResult:
  """One CMMD record -> its whole-image example."""
  record, config = payload
  try:
    _, view = whole_image.load_view(record.image_path, config)
  except dicom.DicomError as e:
    return base.ItemResult(
        skipped=[(str(record.image_path), f"unreadable DICOM ({e.reason})")]
    )
  ex = whole_image.whole_image_example(
      view,
      example_id=record.example_id,
      patient_id=record.patient_id,
      image_id=record.example_id,
      view_name=record.labels.get("view"),
      labels=labels_of(record),
  )
  summary = whole_image.label_summary(ex,
                                      whole_image.whole_image_vocabularies())
  summary["abnormality"] = record.labels["abnormality"]
  return base.ItemResult(examples=[(record.example_id, ex, summary)],
                         counts=base.ingestion_counts(view))


class Cmmd(tfds.core.GeneratorBasedBuilder):
  """CMMD mammograms with mass / calcification / malignant / subtype labels."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = whole_image.WHOLE_IMAGE_CONFIGS
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Point manual_dir at the CMMD download: CMMD_clinicaldata_revision.csv "
      "(or .xlsx), the NBIA manifest metadata.csv and its "
      "CMMD/<Subject>/<study>/<series>/*.dcm folders (docs/datasets.md)."
  )

  def _info(self) -> tfds.core.DatasetInfo:
    return whole_image.dataset_info(self, __doc__)

  def _split_generators(self, dl_manager):
    records, report = cmmd_source.parse_cmmd(base.manual_dir(dl_manager))
    items = [
        base.PlannedItem(base.FULL_SPLIT, r.example_id, r.patient_id,
                         (r, self.builder_config))
        for r in records
    ]
    build = base.LazyBuild(self, report, whole_image.whole_image_vocabularies())
    return build.splits(items, _process)

  def _generate_examples(self, examples):
    yield from examples

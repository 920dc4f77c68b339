"""Whole-mammogram TFDS builder for any DICOM folder + labels CSV / JSON.

``dicom_folder_images`` reads ``manual_dir`` with
``mammojax.data.sources.parse_dicom_folder``: either an ``annotations.json``
(docs/architecture.md) or one CSV with the columns ``file, patient_id,
laterality, view`` plus label columns, and emits one example per image with
the whole-image features of docs/architecture.md ("Whole-image datasets").

Label columns (CSV) or ``labels`` entries (annotations.json) read:

* ``calcification``, ``mass``, ``malignant``: 0 / 1 (empty = -1 unknown).
  With annotations.json and no such label, ``calcification`` / ``mass`` are
  1 when the image lists calcifications / masses and 0 otherwise.
* ``pathology`` (benign | malignant) gives ``malignant`` when there is no
  ``malignant`` column.
* ``subtype`` (luminal_a, luminal_b, her2_enriched, triple_negative; the
  spellings 'Luminal A', 'HER2-enriched', 'triple negative' are accepted)
  and ``luminal`` (0 / 1, or luminal / non_luminal; derived from ``subtype``
  when absent).
* ``split`` (train | validation | test): the split of the image. Images
  without one go to ``train`` when any image has a split; when none has,
  everything is in one split ``full`` and the pipeline splits patient-wise.
  A patient found in several splits keeps only the examples of its most
  held-out split (test > validation > train); the others are skipped and
  counted (no patient leaks across splits).
"""

from __future__ import annotations

import tensorflow_datasets as tfds

from mammojax.data import dicom
from mammojax.data.builders import base
from mammojax.data.builders import whole_image
from mammojax.data.sources import common
from mammojax.data.sources import dicom_folder


def folder_labels(
    record: common.SourceRecord, *, from_findings: bool = False
) -> dict[str, int]:
  """Whole-image labels of a DICOM-folder record (see module docstring).

  Args:
    record: a record of ``parse_dicom_folder``.
    from_findings: derive missing calcification / mass flags from the
      findings listed in the annotation (annotations.json input).

  Returns:
    ``calcification``, ``mass``, ``malignant``, ``subtype`` and ``luminal``
    label indices (-1 unknown).

  Raises:
    ValueError: a label value that cannot be read (names the image).
  """
  labels = record.labels
  annotation = record.annotation or {}
  out = {}
  try:
    for name, key in (("calcification", "calcifications"),
                      ("mass", "masses")):
      out[name] = whole_image.binary(labels.get(name), field=name)
      if out[name] < 0 and from_findings and labels.get(name) is None:
        out[name] = int(bool(annotation.get(key)))
    if labels.get("malignant") is not None:
      out["malignant"] = whole_image.binary(
          labels["malignant"], field="malignant", yes=("malignant",),
          no=("benign",))
    else:
      out["malignant"] = whole_image.binary(
          labels.get("pathology"), field="pathology", yes=("malignant",),
          no=("benign",))
    out["subtype"] = whole_image.subtype_index(labels.get("subtype"))
    if labels.get("luminal") is not None:
      out["luminal"] = whole_image.binary(
          labels["luminal"], field="luminal", yes=("luminal",),
          no=("non_luminal",))
    else:
      out["luminal"] = whole_image.luminal_from_subtype(out["subtype"])
  except ValueError as e:
    raise ValueError(f"dicom_folder_images: image {record.example_id!r}: "
                     f"{e}") from None
  return out


def _folder_item(payload) -> base.ItemResult:
  """One DICOM-folder record -> its whole-image example."""
  record, labels, config = payload
  annotation = record.annotation or {}
  try:
    _, view = whole_image.load_view(record.image_path, config,
                                    laterality=annotation.get("laterality"))
  except dicom.DicomError as e:
    return base.ItemResult(skipped=[(str(record.image_path),
                                     f"unreadable DICOM ({e.reason})")])
  ex = whole_image.whole_image_example(
      view,
      example_id=record.example_id,
      patient_id=record.patient_id,
      image_id=str(annotation.get("image_id", record.example_id)),
      view_name=annotation.get("view") or record.labels.get("view"),
      labels=labels,
  )
  summary = whole_image.label_summary(ex,
                                      whole_image.whole_image_vocabularies())
  return base.ItemResult(examples=[(record.example_id, ex, summary)],
                         counts=base.ingestion_counts(view))


class DicomFolderImages(tfds.core.GeneratorBasedBuilder):
  """Whole mammograms + image-level labels from a DICOM folder."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = whole_image.WHOLE_IMAGE_CONFIGS
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Point manual_dir at a folder with the DICOM files and either "
      "annotations.json (docs/architecture.md) or one CSV with columns "
      "file, patient_id, laterality, view and label columns (docs/datasets.md)."
  )

  def _info(self) -> tfds.core.DatasetInfo:
    return whole_image.dataset_info(self, __doc__)

  def _split_generators(self, dl_manager):
    root = base.manual_dir(dl_manager)
    records, report = dicom_folder.parse_dicom_folder(root)
    from_json = (root / "annotations.json").is_file()
    any_split = any(r.split for r in records)
    items = []
    for record in records:
      split = record.split or ("train" if any_split else base.FULL_SPLIT)
      if any_split and not record.split:
        report.count("images without split -> train")
      payload = (record, folder_labels(record, from_findings=from_json),
                 self.builder_config)
      items.append(base.PlannedItem(split, record.example_id,
                                    record.patient_id, payload))
    build = base.LazyBuild(self, report, whole_image.whole_image_vocabularies())
    return build.splits(items, _folder_item)

  def _generate_examples(self, examples):
    yield from examples

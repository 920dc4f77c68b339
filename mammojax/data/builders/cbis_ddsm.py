"""CBIS-DDSM TFDS builders: calcification graphs and mass abnormalities.

Both read ``manual_dir`` with ``mammojax.data.sources.parse_cbis_ddsm`` (the
four case-description CSVs + the NBIA ``CBIS-DDSM/`` DICOM tree, joined by
study / series UID; see that module for the label policies), one record per
CSV row = one abnormality in one view. The official ``train`` / ``test``
split of the CSV file names is kept; the pipeline carves a patient-wise
validation set out of ``train``. Both builders warn (build report and log)
about the patients that occur in both the calc and the mass files, since
pooling calc and mass splits would leak them.

``cbis_ddsm_calcifications`` (MT-GCN): exactly the features of the
synthetic calcification-graph builder (``graph_examples.features``),
one example per calc abnormality, built through the same
``examples_from_image`` as the synthetic and DICOM-folder graphs:

* nodes = the individual calcifications inside the abnormality's ROI mask:
  ``calcification_detector.detect_calcifications(image, roi_mask=mask,
  method="mad", threshold=3)`` (white top-hat detector, run on the mask's
  bounding box plus a margin; builder config ``multiscale`` switches to the
  matched-filter detector).
  When it finds nothing (e.g. coarse or rod-like calcifications wider than
  the 1 mm top-hat), the fallback is the connected components of the ROI
  content above its Otsu threshold (``components_from_mask``). Rows whose
  mask holds neither are skipped; the method used is counted. At most
  ``max_nodes`` nodes are kept (the largest components; counted).
* node ``morphology`` = the row's ``calc type`` and graph ``distribution``
  = its ``calc distribution``, both mapped by the parser's LabelPolicy
  (multi-valued labels: the most suspicious in-vocabulary atom by default;
  rare classes outside MT-GCN's 5 + 5 classes, e.g. vascular, coarse,
  lucent_center, and N/A -> -1 unknown, masked out of the losses; all
  counted in ``build_report['stats']``).
* labels without a graph feature (pathology, assessment, subtlety, density,
  the raw calc type / distribution, abnormality id) are kept per example in
  ``build_report['example_labels']``.
* rows without an ROI mask file are skipped (the calcifications cannot be
  located); CBIS-DDSM headers carry no pixel spacing, so
  ``default_pixel_spacing_mm`` (0.05 mm, the DDSM scanners' 43.5-50 um) is
  used and counted.

``cbis_ddsm_masses``: one example per mass abnormality with the mass-ROI
features of ``mass_rois`` (the whole-image features of docs/architecture.md:
``image`` = the laterality-normalised, breast-cropped full view; ``mass`` =
1; ``malignant`` from the pathology; ``calcification`` = 1 when the calc CSVs
list an abnormality on the same patient / side / view, else -1 unknown;
``subtype`` = ``luminal`` = -1; plus ``roi_mask``, ``crop``, ``crop_mask``,
``crop_box``, ``mass_shape``, ``mass_margin``, ``pathology`` (0 benign incl.
BENIGN_WITHOUT_CALLBACK, 1 malignant), ``pathology_raw``, ``assessment``,
``subtlety``, ``density``). The crop is the ROI mask's bounding box plus
``crop_margin`` (squared); without a mask, the CSV's cropped image (mirrored
for right breasts, ``crop_mask`` and ``crop_box`` empty); zeros when neither
exists (counted).

``downsample`` (both builders) block-averages the stored pixels (and takes
the max of the masks) before detection and cropping, for fast builds.
"""

from __future__ import annotations

import copy
import dataclasses
import pathlib
from typing import Any, Optional

import numpy as np
import tensorflow_datasets as tfds

from mammojax.data import breast_region
from mammojax.data import calcification_detector
from mammojax.data import calcifications
from mammojax.data import dicom
from mammojax.data import resample
from mammojax.data import vocab as vocab_lib
from mammojax.data.builders import base
from mammojax.data.builders import graph_examples
from mammojax.data.builders import mass_rois
from mammojax.data.builders import whole_image
from mammojax.data.sources import cbis_ddsm as source
from mammojax.data.sources import common

PATHOLOGY = mass_rois.PATHOLOGY
DENSITY = mass_rois.DENSITY
_INSTRUCTIONS = (
    "Point manual_dir at the CBIS-DDSM download: the case-description CSVs "
    "(calc_case_description_train_set.csv, ..._test_set.csv, "
    "mass_case_description_*.csv) next to the NBIA folder "
    "CBIS-DDSM/<Subject>/<study>/<series>/1-1.dcm (docs/datasets.md)."
)


# ---------------------------------------------------------------------------
# Shared parsing.
# ---------------------------------------------------------------------------


def parse(
    root: pathlib.Path,
    abnormality_type: str,
    *,
    multi_label: str,
    out_of_vocab: str,
    verify_mask_pixels: bool = True,
) -> tuple[list[common.SourceRecord], common.BuildReport, list[Any]]:
  """Parses one abnormality family plus the calc/mass patient warning.

  Returns:
    (records, report, rows of all four CSVs).
  """
  policy = source.LabelPolicy(multi_label=multi_label,
                              out_of_vocab=out_of_vocab)
  records, report = source.parse_cbis_ddsm(
      root, policy=policy, abnormality_types=(abnormality_type,),
      verify_mask_pixels=verify_mask_pixels,
  )
  # The parser read only one family; the other family's CSVs are not
  # missing, and the calc/mass patient overlap needs all four files.
  csv_files = source.find_csv_files(root)
  other = [name for (kind, _), name in source.CSV_FILES.items()
           if kind != abnormality_type]
  report.warnings = [
      w for w in report.warnings
      if not any(w.startswith(f"CBIS-DDSM: {n} not found") for n in other)
  ]
  all_rows, all_report = source.parse_case_descriptions(csv_files)
  for key, value in all_report.stats.items():
    if key.startswith("patients in"):
      report.stats[key] = value
  report.warnings.extend(w for w in all_report.warnings
                         if "both the calc" in w)
  return records, report, all_rows


# ---------------------------------------------------------------------------
# cbis_ddsm_calcifications.
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class CbisCalcConfig(graph_examples.CalcGraphConfig):
  """Options of ``cbis_ddsm_calcifications`` (part of the cache key).

  Attributes:
    downsample: block-average factor of the stored pixels (1 = off).
    default_pixel_spacing_mm: spacing used when the header has none.
    max_nodes: most calcifications kept per graph (largest first).
    detector_method: ``method`` of ``detect_calcifications``. Default
      ``"mad"`` (top-hat + robust threshold): the multiscale detector's
      noise-normalised z-scores were tuned on the synthetic FFDM images and
      blow up on noise-free regions (flat film backgrounds, step edges of
      the ROI crops); the ``multiscale`` builder config
      (``--config.dataset.builder_config=multiscale``) uses it instead, for
      scans where it has been checked.
    detector_threshold: ``threshold`` of ``detect_calcifications`` (None:
      the method's default).
    multi_label, out_of_vocab: the parser's ``LabelPolicy``.
    verify_mask_pixels: check that ROI-mask candidates are binary.
  """

  downsample: int = 1
  default_pixel_spacing_mm: float = 0.05
  max_nodes: int = 256
  detector_method: str = "mad"
  detector_threshold: Optional[float] = 3.0
  multi_label: str = "most_suspicious"
  out_of_vocab: str = "unknown"
  verify_mask_pixels: bool = True


def locate_calcifications(
    image01: np.ndarray,
    mask: np.ndarray,
    spacing_mm: float,
    threshold: Optional[float] = 3.0,
    method: str = "mad",
) -> tuple[calcifications.Calcifications, str]:
  """Calcifications inside ``mask``: detector, else Otsu components.

  Returns:
    (calcifications in the grid of ``image01``, 'detector' | 'threshold' |
    'none').
  """
  rows, cols = np.nonzero(mask)
  if not rows.size:
    return calcifications.from_points([]), "none"
  margin = int(np.ceil(max(1.0, 2.0 / spacing_mm)))
  y0, y1 = max(rows.min() - margin, 0), min(rows.max() + 1 + margin,
                                            mask.shape[0])
  x0, x1 = max(cols.min() - margin, 0), min(cols.max() + 1 + margin,
                                            mask.shape[1])
  image = image01[y0:y1, x0:x1]
  roi = mask[y0:y1, x0:x1]
  offset = np.array([x0, y0], np.float64)
  found = calcification_detector.detect_calcifications(
      image, pixel_spacing_mm=spacing_mm, roi_mask=roi, threshold=threshold,
      method=method,
  )
  how = "detector"
  if not len(found):
    values = image[roi]
    if values.size < 2 or values.max() <= values.min():
      return found, "none"
    found = calcifications.components_from_mask(
        roi & (image > breast_region.otsu_threshold(values))
    )
    how = "threshold" if len(found) else "none"
  return dataclasses.replace(
      found,
      centers_xy=found.centers_xy + offset,
      bboxes=found.bboxes + np.concatenate([offset, offset]),
      label_image=None,
  ), how


def _subtlety(value: Any) -> Optional[int]:
  """The CSV's subtlety when it is a rating 1-5, else None (unknown)."""
  return value if isinstance(value, int) and 1 <= value <= 5 else None


def calc_graph_examples(payload) -> base.ItemResult:
  """One calc abnormality -> its graph example (or a reported skip)."""
  record, vocabularies, config = payload
  item = record.example_id
  result = base.ItemResult()
  if record.roi_mask_path is None:
    result.skipped.append(
        (item, "no ROI mask found (calcifications cannot be located)"))
    return result
  try:
    ds = base.read_dataset(
        record.image_path, downsample=config.downsample,
        laterality=record.annotation["laterality"],
    )
    stored = dicom.load_dicom(ds, orient=False, crop=False,
                              **base.load_options(config))
    mask = base.read_mask(record.roi_mask_path, stored.image.shape,
                          config.downsample)
  except dicom.DicomError as e:
    result.skipped.append((item, f"unreadable DICOM ({e.reason})"))
    return result
  spacing = stored.meta.pixel_spacing_mm
  if spacing is None:
    spacing_mm = config.default_pixel_spacing_mm * config.downsample
    result.counts["pixel spacing missing -> default_pixel_spacing_mm"] = 1
  else:
    spacing_mm = float(np.mean(spacing))
  found, method = locate_calcifications(
      stored.image, mask, spacing_mm, config.detector_threshold,
      config.detector_method,
  )
  if not len(found):
    result.skipped.append((item, "no calcification found inside the ROI mask"))
    return result
  result.counts[f"graphs: calcifications located by {method}"] = 1
  keep = np.arange(len(found))
  if len(found) > config.max_nodes:
    keep = np.sort(np.argsort(-found.areas, kind="stable")[:config.max_nodes])
    result.counts["graphs: nodes capped at max_nodes"] = 1
  annotation = copy.deepcopy(record.annotation)
  annotation["rows"], annotation["columns"] = stored.image.shape
  annotation["pixel_spacing_mm"] = [spacing_mm, spacing_mm]
  morphology = record.labels.get("calc_type")
  annotation["calcifications"] = [
      {"id": i, "center_xy": [float(v) for v in found.centers_xy[k]],
       "morphology": morphology, "cluster_id": 0}
      for i, k in enumerate(keep)
  ]
  annotation["clusters"] = [{
      "cluster_id": 0,
      "distribution": record.labels.get("calc_distribution"),
      "subtlety": _subtlety(record.labels.get("subtlety")),
      "calcification_ids": list(range(len(keep))),
  }]
  try:
    examples, skipped = graph_examples.examples_from_image(
        ds, annotation, vocabularies, config, where=item,
        counts=result.counts)
  except dicom.DicomError as e:
    result.skipped.append((item, f"unreadable DICOM ({e.reason})"))
    return result
  for reason, n in skipped.items():
    result.skipped.extend([(item, reason)] * n)
  for _, ex in examples:
    ex["example_id"] = record.example_id
    result.counts["graphs: nodes"] = (
        result.counts.get("graphs: nodes", 0) + len(ex["morphology"]))
    result.examples.append((record.example_id, ex, {
        "morphology": morphology or "unknown",
        "distribution": record.labels.get("calc_distribution") or "unknown",
        "pathology": record.labels["pathology"],
    }))
    result.example_labels[record.example_id] = {
        k: record.labels.get(k) for k in (
            "pathology", "pathology_raw", "assessment", "subtlety",
            "density", "abnormality_id", "calc_type_raw",
            "calc_distribution_raw")
    }
  return result


class CbisDdsmCalcifications(tfds.core.GeneratorBasedBuilder):
  """CBIS-DDSM calc abnormalities as calcification graphs (MT-GCN)."""

  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {"1.0.0": "Initial release.",
                   "1.1.0": "Graph feature subtlety (1-5, -1 unknown)."}
  BUILDER_CONFIGS = [
      CbisCalcConfig(name="default", description="Full resolution."),
      CbisCalcConfig(
          name="multiscale",
          description="Full resolution, multiscale matched-filter detector.",
          detector_method="multiscale",
          detector_threshold=None,
      ),
      CbisCalcConfig(
          name="tiny",
          description="Small crops and views, one process; for tests.",
          crop_size=64,
          view_size=(64, 40),
          workers=1,
      ),
  ]
  MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=graph_examples.features(self.builder_config),
        metadata=tfds.core.MetadataDict(vocabularies=self._vocabularies()),
    )

  @staticmethod
  def _vocabularies() -> dict[str, list[str]]:
    cbis = vocab_lib.VOCABULARIES["cbis_ddsm"]
    return {
        "morphology": list(cbis["morphology"]),
        "distribution": list(cbis["distribution"]),
        "pathology": list(PATHOLOGY),
        "density": list(DENSITY),
    }

  def _split_generators(self, dl_manager):
    config = self.builder_config
    records, report, _ = parse(
        base.manual_dir(dl_manager), "calcification",
        multi_label=config.multi_label, out_of_vocab=config.out_of_vocab,
        verify_mask_pixels=config.verify_mask_pixels,
    )
    vocabularies = self._vocabularies()
    items = [
        base.PlannedItem(r.split or base.FULL_SPLIT, r.example_id,
                         r.patient_id, (r, vocabularies, config))
        for r in records
    ]
    build = base.LazyBuild(self, report, vocabularies)
    return build.splits(items, calc_graph_examples,
                        base.pool_mapper(config.workers))

  def _generate_examples(self, examples):
    yield from examples


# ---------------------------------------------------------------------------
# cbis_ddsm_masses.
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class CbisMassConfig(mass_rois.MassRoiConfig):
  """Options of ``cbis_ddsm_masses`` (part of the cache key).

  Attributes:
    crop_size, crop_margin: the crop (``mass_rois.MassRoiConfig``).
    multi_label, out_of_vocab: the parser's ``LabelPolicy``.
    verify_mask_pixels: check that ROI-mask candidates are binary.
  """

  multi_label: str = "most_suspicious"
  out_of_vocab: str = "unknown"
  verify_mask_pixels: bool = True


def _mass_vocabularies() -> dict[str, list[str]]:
  cbis = vocab_lib.VOCABULARIES["cbis_ddsm"]
  return mass_rois.vocabularies(cbis["mass_shape"], cbis["mass_margin"])


def mass_examples(payload) -> base.ItemResult:
  """The mass abnormalities of one full image -> their examples."""
  records, calc_views, vocabularies, config = payload
  first = records[0]
  result = base.ItemResult()
  try:
    ds, view = whole_image.load_view(
        first.image_path, config, laterality=first.annotation["laterality"])
    full = dicom.load_dicom(ds, orient=True, crop=False,
                            **base.load_options(config))
    result.counts.update(base.ingestion_counts(full))
  except dicom.DicomError as e:
    for record in records:
      result.skipped.append(
          (record.example_id, f"unreadable DICOM ({e.reason})"))
    return result
  size = tuple(config.image_size)
  for record in records:
    labels = record.labels
    key = (record.patient_id, record.annotation["laterality"],
           record.annotation["view"])
    roi_mask = np.zeros(size, np.uint8)
    crop = np.zeros((config.crop_size, config.crop_size), np.uint8)
    crop_mask = np.zeros_like(crop)
    box = np.full((4,), -1.0, np.float32)
    has_mask = 0
    try:
      mask = None
      if record.roi_mask_path is not None:
        mask = base.read_mask(record.roi_mask_path, full.stored_shape,
                              config.downsample)
        if not mask.any():
          result.counts["masses: empty ROI mask"] = 1
          mask = None
      if mask is not None:
        has_mask = 1
        roi_mask = base.to_uint8(
            whole_image.map_to_view(mask, view, size) > 0.5)
        oriented = mask[:, ::-1] if full.flipped else mask
        crop, crop_mask, box = mass_rois.box_crop(
            full.image, oriented, config.crop_margin, config.crop_size)
        box *= config.downsample
        result.counts["masses: crop from the ROI mask"] = (
            result.counts.get("masses: crop from the ROI mask", 0) + 1)
      elif record.crop_path is not None:
        cropped = dicom.load_dicom(record.crop_path, orient=False, crop=False,
                                   allow_non_mg=True).image
        if record.annotation["laterality"] == "R":
          cropped = cropped[:, ::-1]
        crop = base.to_uint8(
            resample.fit_image(cropped, (config.crop_size,) * 2))
        result.counts["masses: crop from the cropped-image file"] = (
            result.counts.get("masses: crop from the cropped-image file", 0)
            + 1)
      else:
        result.counts["masses: no ROI mask and no crop (crop left empty)"] = (
            result.counts.get(
                "masses: no ROI mask and no crop (crop left empty)", 0) + 1)
    except dicom.DicomError as e:
      result.skipped.append(
          (record.example_id, f"unreadable ROI DICOM ({e.reason})"))
      continue
    pathology = labels["pathology"]
    ex = whole_image.whole_image_example(
        view,
        example_id=record.example_id,
        patient_id=record.patient_id,
        image_id=str(record.annotation["image_id"]),
        view_name=record.annotation["view"],
        labels={
            "calcification": 1 if key in calc_views else -1,
            "mass": 1,
            "malignant": int(pathology == "malignant"),
        },
    )
    ex.update(mass_rois.roi_features(
        crop=crop, crop_mask=crop_mask, crop_box=box, roi_mask=roi_mask,
        has_roi_mask=has_mask, labels=labels, vocabulary=vocabularies))
    result.examples.append((record.example_id, ex, {
        "pathology": pathology,
        "mass_shape": labels.get("mass_shape") or "unknown",
        "mass_margin": labels.get("mass_margin") or "unknown",
        "calcification": ex["calcification"],
        "has_roi_mask": has_mask,
    }))
  return result


class CbisDdsmMasses(tfds.core.GeneratorBasedBuilder):
  """CBIS-DDSM mass abnormalities: full view, ROI mask, crop and labels."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = [
      CbisMassConfig(name="default", description="256 x 160 views."),
      CbisMassConfig(name="paper", description="1326 x 512 views.",
                     image_size=(1326, 512)),
      CbisMassConfig(
          name="tiny",
          description="64 x 40 views, 32 px crops, pixels / 4; for tests.",
          image_size=(64, 40),
          crop_size=32,
          downsample=4,
      ),
  ]
  MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=mass_rois.features(self.builder_config),
        metadata=tfds.core.MetadataDict(vocabularies=_mass_vocabularies()),
    )

  def _split_generators(self, dl_manager):
    config = self.builder_config
    records, report, all_rows = parse(
        base.manual_dir(dl_manager), "mass",
        multi_label=config.multi_label, out_of_vocab=config.out_of_vocab,
        verify_mask_pixels=config.verify_mask_pixels,
    )
    calc_views = {(r.patient_id, r.laterality, r.view) for r in all_rows
                  if r.abnormality_type == "calcification"}
    vocabularies = _mass_vocabularies()
    by_image: dict[tuple[str, pathlib.Path], list[common.SourceRecord]] = {}
    for r in records:
      by_image.setdefault((r.split or base.FULL_SPLIT, r.image_path),
                          []).append(r)
    items = [
        base.PlannedItem(split, rs[0].example_id, rs[0].patient_id,
                         (rs, calc_views, vocabularies, config))
        for (split, _), rs in sorted(by_image.items(),
                                     key=lambda kv: kv[1][0].example_id)
    ]
    build = base.LazyBuild(self, report, vocabularies)
    return build.splits(items, mass_examples)

  def _generate_examples(self, examples):
    yield from examples

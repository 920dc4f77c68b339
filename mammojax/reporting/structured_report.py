"""DICOM Structured Report of a calcification prediction (TID 1500, highdicom).

``write_structured_report`` writes a Comprehensive SR (a new series in the
source image's study, same patient) holding a TID 1500 Measurement Report
("Imaging Measurement Report", procedure "Mammography"), its observer the
mammojax algorithm (device observer), with one TID 1501 "Measurement and
Qualitative Evaluation Group" per predicted cluster on the source image
(source image for the group):

* tracking identifier ``cluster <k>`` (and a UID), finding type
  "Calcification Cluster" (DCM 111105), finding site the breast with the
  image's laterality, algorithm identification (mammojax, version, method,
  config hash, checkpoint step);
* qualitative evaluations: "Calcification Distribution" (DCM 111008) = the
  predicted distribution, "Calcification Type" (DCM 111009) = the
  morphology most of its calcifications are predicted to have;
* numeric measurements (unit UCUM ``1``), each inferred from spatial
  coordinates on the source image: "Number of calcifications" (DCM 111038),
  the probability of every distribution class and the mean (over the
  cluster's calcifications) probability of every morphology class, from a
  SCOORD MULTIPOINT of all the cluster's calcification centres; for every
  calcification, the probability of its predicted morphology (named by
  the class), from a SCOORD POINT at its centre (the full per-class
  probabilities are in findings.json: highdicom's content checks grow
  quickly with the number of items, ~2 s per image for 5 items per
  calcification). SCOORD pixel convention: (column, row) with (0, 0)
  the top-left corner of the top-left pixel, i.e. findings.json
  ``center_xy`` + 0.5. (A TID 1410 planar-ROI group would take one region
  and highdicom forbids MULTIPOINT regions, hence TID 1501.)

Code table (``MORPHOLOGY_CODES``, ``DISTRIBUTION_CODES``): the SNOMED CT
concepts of DICOM PS3.16 CID 6011 "Calcification Type from BI-RADS" and
CID 6012 "Calcification Distribution Modifier" (as shipped in
``pydicom.sr.codedict``); BI-RADS "fine pleomorphic" has no SNOMED CT
concept there and takes the DICOM code DCM 111344. Classes without a
standard concept, and the probability measurement names, use the local
coding scheme ``99MAMMOJAX``.

``read_structured_report`` reads one back (highdicom) into plain dicts.
"""

import collections
from typing import Any, Optional

import highdicom as hd
import numpy as np
import pydicom
from pydicom.sr.codedict import codes

import mammojax

LOCAL_SCHEME = "99MAMMOJAX"

_SCT, _DCM = "SCT", "DCM"
# Vocabulary name -> (code value, scheme, meaning).
MORPHOLOGY_CODES = {
    "punctate": ("129755006", _SCT, "Punctate calcification"),
    "amorphous": ("129760005", _SCT, "Amorphous calcification"),
    "coarse_heterogeneous": ("129763007", _SCT, "Heterogeneous calcification"),
    "heterogeneous": ("129763007", _SCT, "Heterogeneous calcification"),
    "fine_pleomorphic": ("111344", _DCM, "Fine pleomorphic calcification"),
    "pleomorphic": ("111344", _DCM, "Fine pleomorphic calcification"),
    "fine_linear_branching": (
        "129762002", _SCT, "Fine linear, branching (casting) calcification"),
    "linear": ("129761009", _SCT, "Fine, linear (casting) calcification"),
    "round_and_regular": ("129756007", _SCT, "Round shaped calcification"),
}
DISTRIBUTION_CODES = {
    "diffuse": ("129764001", _SCT, "Diffuse calcification distribution"),
    "diffusely_scattered": (
        "129764001", _SCT, "Diffuse calcification distribution"),
    "regional": ("129767008", _SCT, "Regional calcification distribution"),
    "grouped": ("129766004", _SCT, "Grouped calcification distribution"),
    "clustered": ("129766004", _SCT, "Grouped calcification distribution"),
    "linear": ("129765000", _SCT, "Linear calcification distribution"),
    "segmental": ("129768003", _SCT, "Segmental calcification distribution"),
}
_LATERALITY = {
    "L": hd.sr.CodedConcept("7771000", _SCT, "Left"),
    "R": hd.sr.CodedConcept("24028007", _SCT, "Right"),
}
_BREAST = hd.sr.CodedConcept("76752008", _SCT, "Breast")
_MAMMOGRAPHY = hd.sr.CodedConcept("71651007", _SCT, "Mammography")
_NO_UNITS = hd.sr.CodedConcept("1", "UCUM", "no units")


def _local(value: str, meaning: str) -> hd.sr.CodedConcept:
  return hd.sr.CodedConcept(value[:16], LOCAL_SCHEME, meaning[:64])


def class_concept(field: str, name: str) -> hd.sr.CodedConcept:
  """The coded concept of a morphology / distribution class name."""
  table = MORPHOLOGY_CODES if field == "morphology" else DISTRIBUTION_CODES
  if name in table:
    return hd.sr.CodedConcept(*table[name])
  prefix = "M" if field == "morphology" else "D"
  return _local(f"{prefix}-{name.upper()}",
                f"{name.replace('_', ' ')} calcification {field}")


_PROBABILITY_NAMES = {
    "distribution": ("PD", "Probability of distribution"),
    "morphology": ("PM", "Probability of morphology"),
    "mean_morphology": ("PMM", "Mean probability of morphology"),
}


def _probability_name(field: str, index: int, name: str) -> hd.sr.CodedConcept:
  prefix, what = _PROBABILITY_NAMES[field]
  return _local(f"{prefix}{index}", f"{what} {name.replace('_', ' ')}")


def _coordinates(points_xy: np.ndarray, source: pydicom.Dataset):
  points = np.asarray(points_xy, np.float64).reshape(-1, 2) + 0.5
  single = len(points) == 1
  return hd.sr.CoordinatesForMeasurement(
      graphic_type=(hd.sr.GraphicTypeValues.POINT if single
                    else hd.sr.GraphicTypeValues.MULTIPOINT),
      graphic_data=points,
      source_image=hd.sr.SourceImageForRegion.from_source_image(source),
  )


def _group(k_cluster: dict[str, Any], findings: dict[str, Any],
           vocabularies: dict, source: pydicom.Dataset,
           algorithm: hd.sr.AlgorithmIdentification):
  calcs = findings["calcifications"]
  members = [calcs[i] for i in k_cluster["calcification_ids"]]
  centres = np.asarray([c["center_xy"] for c in members], np.float64)
  cluster_points = [_coordinates(centres, source)]
  evaluations = []
  dist_name = k_cluster.get("predicted_distribution")
  if dist_name:
    evaluations.append(hd.sr.QualitativeEvaluation(
        name=codes.DCM.CalcificationDistribution,
        value=class_concept("distribution", dist_name)))
  morphs = [c["predicted_morphology"] for c in members
            if c.get("predicted_morphology")]
  if morphs:
    common = collections.Counter(morphs).most_common(1)[0][0]
    evaluations.append(hd.sr.QualitativeEvaluation(
        name=codes.DCM.CalcificationType,
        value=class_concept("morphology", common)))
  measurements = [hd.sr.Measurement(
      name=codes.DCM.NumberOfCalcifications, value=float(len(members)),
      unit=_NO_UNITS, referenced_coordinates=cluster_points)]
  if k_cluster.get("distribution"):
    for i, name in enumerate(vocabularies["distribution"]):
      measurements.append(hd.sr.Measurement(
          name=_probability_name("distribution", i, name),
          value=float(k_cluster["distribution"][name]), unit=_NO_UNITS,
          referenced_coordinates=cluster_points))
  if members and members[0].get("morphology"):
    for i, name in enumerate(vocabularies["morphology"]):
      measurements.append(hd.sr.Measurement(
          name=_probability_name("mean_morphology", i, name),
          value=float(np.mean([c["morphology"][name] for c in members])),
          unit=_NO_UNITS, referenced_coordinates=cluster_points))
  for c in members:
    if not c.get("morphology"):
      continue
    name = c["predicted_morphology"]
    i = list(vocabularies["morphology"]).index(name)
    measurements.append(hd.sr.Measurement(
        name=_probability_name("morphology", i, name),
        value=float(c["morphology"][name]), unit=_NO_UNITS,
        referenced_coordinates=[
            _coordinates(np.asarray(c["center_xy"]), source)]))
  laterality = _LATERALITY.get(str(findings.get("laterality") or ""))
  sites = [hd.sr.FindingSite(anatomic_location=_BREAST,
                             laterality=laterality)]
  return hd.sr.MeasurementsAndQualitativeEvaluations(
      tracking_identifier=hd.sr.TrackingIdentifier(
          uid=hd.UID(), identifier=f"cluster {k_cluster['cluster_id']}"),
      finding_type=codes.DCM.CalcificationCluster,
      finding_sites=sites,
      algorithm_id=algorithm,
      measurements=measurements,
      qualitative_evaluations=evaluations or None,
      source_images=[
          hd.sr.SourceImageForMeasurementGroup.from_source_image(source)],
  )


def build_structured_report(
    source: pydicom.Dataset, findings: dict[str, Any],
    vocabularies: dict[str, Any], *, series_number: int = 9901,
) -> hd.sr.ComprehensiveSR:
  """The SR dataset of ``findings`` (a findings.json dict) on ``source``."""
  model = findings.get("model") or {}
  algorithm = hd.sr.AlgorithmIdentification(
      name="mammojax", version=str(mammojax.__version__),
      parameters=[f"method={model.get('method')}",
                  f"config_hash={model.get('config_hash')}",
                  f"checkpoint_step={model.get('checkpoint_step')}"])
  observer = hd.sr.ObserverContext(
      observer_type=codes.DCM.Device,
      observer_identifying_attributes=(
          hd.sr.DeviceObserverIdentifyingAttributes(
              uid=hd.UID(), name="mammojax", manufacturer_name="mammojax",
              model_name=str(model.get("method") or "mammojax"))))
  groups = [_group(c, findings, vocabularies, source, algorithm)
            for c in findings["clusters"]]
  report = hd.sr.MeasurementReport(
      observation_context=hd.sr.ObservationContext(
          observer_device_context=observer),
      procedure_reported=_MAMMOGRAPHY,
      imaging_measurements=groups or None,
      title=codes.cid7021.ImagingMeasurementReport,
      referenced_images=None if groups else [source],
  )
  sr = hd.sr.ComprehensiveSR(
      evidence=[source], content=report,
      series_instance_uid=hd.UID(), series_number=series_number,
      sop_instance_uid=hd.UID(), instance_number=1,
      manufacturer="mammojax", is_complete=True,
      series_description="mammojax calcification findings",
  )
  # Declare the local coding scheme (PS3.3 C.12.1.1.2.1).
  scheme = pydicom.Dataset()
  scheme.CodingSchemeDesignator = LOCAL_SCHEME
  scheme.CodingSchemeName = "mammojax local codes"
  scheme.CodingSchemeResponsibleOrganization = "mammojax"
  sr.CodingSchemeIdentificationSequence = [scheme]
  return sr


def write_structured_report(
    path: str, source_path: str, findings: dict[str, Any],
    vocabularies: dict[str, Any],
) -> str:
  """Writes the SR of ``findings`` for the DICOM file ``source_path``."""
  source = pydicom.dcmread(source_path, stop_before_pixels=True)
  build_structured_report(source, findings, vocabularies).save_as(path)
  return path


def _points(measurement) -> Optional[np.ndarray]:
  """Stored-grid xy (pixel centres) of a measurement's first SCOORD."""
  coords = measurement.referenced_coordinates
  if not coords:
    return None
  return np.asarray(coords[0].value, np.float64).reshape(-1, 2) - 0.5


def read_structured_report(path: str) -> dict[str, Any]:
  """An SR written here, read back with highdicom, as plain data.

  Returns:
    ``{'sop_instance_uid', 'study_instance_uid', 'patient_id',
    'referenced_sop_instance_uids' (evidence), 'groups': [{
    'tracking_identifier', 'finding_type', 'source_sop_instance_uid',
    'points_xy' (the cluster's calcification centres, stored grid, pixel
    centres at integers), 'evaluations' (name meaning -> value meaning),
    'measurements': [{'name', 'value', 'graphic_type', 'points_xy'}]}]}``.
  """
  sr = hd.sr.srread(path)
  groups = []
  for g in sr.content.get_image_measurement_groups():
    measurements = []
    cluster_points = None
    for m in g.get_measurements():
      points = _points(m)
      coords = m.referenced_coordinates
      measurements.append({
          "name": str(m.name.meaning), "value": float(m.value),
          "graphic_type": (str(coords[0].graphic_type.value)
                           if coords else None),
          "points_xy": points,
      })
      if m.name == codes.DCM.NumberOfCalcifications:
        cluster_points = points
    sources = g.source_images
    groups.append({
        "tracking_identifier": str(g.tracking_identifier),
        "finding_type": str(g.finding_type.meaning),
        "source_sop_instance_uid": (
            str(sources[0].referenced_sop_instance_uid) if sources else None),
        "points_xy": cluster_points,
        "evaluations": {
            str(e.name.meaning): str(e.value.meaning)
            for e in g.get_qualitative_evaluations()
        },
        "measurements": measurements,
    })
  evidence = []
  for study in getattr(sr, "CurrentRequestedProcedureEvidenceSequence", []):
    for series in study.ReferencedSeriesSequence:
      for sop in series.ReferencedSOPSequence:
        evidence.append(str(sop.ReferencedSOPInstanceUID))
  return {
      "sop_instance_uid": str(sr.SOPInstanceUID),
      "study_instance_uid": str(sr.StudyInstanceUID),
      "patient_id": str(sr.get("PatientID", "")),
      "referenced_sop_instance_uids": evidence,
      "groups": groups,
  }

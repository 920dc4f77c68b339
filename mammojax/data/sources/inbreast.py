"""INbreast: `INbreast.csv` + `AllDICOMs/*.dcm` + `AllXML/*.xml`.

Expected `manual_dir` (the INbreast release folder, up to two levels deep):

  INbreast.csv            ';'-separated, CRLF, one row per image
  AllDICOMs/<File Name>_<hash>_MG_<L|R>_<CC|ML|MLO|FB>_ANON.dcm
  AllXML/<File Name>.xml  Apple plist with the ROIs (only annotated images)

One record per CSV row (image), joined to its DICOM by the file-name prefix
`<File Name>_`. The 16-hex `<hash>` of the DICOM name is the same for all
images of one woman and is used as `patient_id` (the CSV's `Patient ID` is
the literal `removed`). INbreast has no official split (split None).

Policies:

* pathology from BI-RADS (image level): 1, 2, 3 -> 'benign'; 4a, 4b, 4c, 5,
  6 -> 'malignant' (the usual INbreast benign/malignant convention, e.g.
  Zhu et al., "Deep multi-instance networks", 2017). 'benign' therefore
  includes normal images (BI-RADS 1). Override with `pathology_map`.
* density: ACR 1-4 -> `acr` int and annotation density a-d; the one
  whitespace-only ACR value gives None (counted).
* ROI names (case-insensitive) -> finding type: Calcification(s) ->
  calcification; Cluster -> cluster; Mass -> mass; Spiculated Region /
  Espiculated Region -> spiculated_region; Asymmetry / Assymetry ->
  asymmetry; Distortion -> distortion. Other names (Point 1, Point 3,
  Unnamed, ...) carry no finding type and are skipped (counted).
* Calcifications: 1-point ROIs give the centre; contours give the polygon
  (area) centroid as centre and keep `contour_xy`.
* Clusters: a calcification whose centre lies inside a Cluster contour gets
  that cluster's id (the first containing cluster if several). All other
  calcifications of the image form ONE implicit cluster (the next id,
  `implicit: true`), since INbreast marks individual calcifications but
  rarely the cluster. No distribution label exists: distribution None.
* Masses: contour + centroid; shape/margin/pathology are not annotated
  per lesion (None). Spiculated regions, asymmetries and distortions go to
  `other_findings` of the annotation entry.
"""

from __future__ import annotations

import pathlib
import plistlib
import re
from typing import Any, Mapping, Sequence

import numpy as np

from mammojax.data.sources import common

DATASET = 'inbreast'

BIRADS = ('1', '2', '3', '4a', '4b', '4c', '5', '6')
PATHOLOGY_FROM_BIRADS = {
  '1': 'benign', '2': 'benign', '3': 'benign',
  '4a': 'malignant', '4b': 'malignant', '4c': 'malignant',
  '5': 'malignant', '6': 'malignant',
}

ROI_TYPES = {
  'calcification': 'calcification',
  'calcifications': 'calcification',
  'cluster': 'cluster',
  'mass': 'mass',
  'spiculated region': 'spiculated_region',
  'espiculated region': 'spiculated_region',
  'asymmetry': 'asymmetry',
  'assymetry': 'asymmetry',
  'distortion': 'distortion',
}

DICOM_NAME = re.compile(
  r'^(?P<file>\d+)_(?P<hash>[0-9A-Za-z]+)_MG_(?P<side>[LR])_'
  r'(?P<view>[A-Z]+)_ANON\.dcm$',
  re.IGNORECASE,
)
_POINT = re.compile(
  r'^\(\s*([-+]?[0-9.]+(?:[eE][-+]?\d+)?)\s*,\s*'
  r'([-+]?[0-9.]+(?:[eE][-+]?\d+)?)'
)
_COLUMNS = ('Laterality', 'View', 'File Name', 'ACR', 'Bi-Rads')
_LAYOUT = ('the INbreast release folder with INbreast.csv, '
           'AllDICOMs/<File Name>_<hash>_MG_<L|R>_<view>_ANON.dcm and '
           'AllXML/<File Name>.xml')


def parse_point(text: str) -> tuple[float, float]:
  """'(2964.620117, 3427.979980)' -> (x, y); raises ValueError otherwise."""
  match = _POINT.match(text.strip())
  if not match:
    raise ValueError(f'not an "(x, y)" point: {text!r}')
  return float(match.group(1)), float(match.group(2))


def polygon_centroid(points: np.ndarray) -> np.ndarray:
  """Area centroid of a closed polygon `[n, 2]`; vertex mean if degenerate."""
  if len(points) < 3:
    return points.mean(axis=0)
  x, y = points[:, 0], points[:, 1]
  xn, yn = np.roll(x, -1), np.roll(y, -1)
  cross = x * yn - xn * y
  area = cross.sum() / 2.0
  if abs(area) < 1e-9:
    return points.mean(axis=0)
  cx = ((x + xn) * cross).sum() / (6.0 * area)
  cy = ((y + yn) * cross).sum() / (6.0 * area)
  return np.array([cx, cy])


def point_in_polygon(point: Sequence[float], polygon: np.ndarray) -> bool:
  """Even-odd ray casting test of `point` (x, y) against `polygon` [n, 2]."""
  x, y = point
  px, py = polygon[:, 0], polygon[:, 1]
  qx, qy = np.roll(px, -1), np.roll(py, -1)
  crosses = (py > y) != (qy > y)
  with np.errstate(divide='ignore', invalid='ignore'):
    x_at = px + (y - py) * (qx - px) / (qy - py)
  return bool(np.count_nonzero(crosses & (x < x_at)) % 2)


def parse_xml(
  path: pathlib.Path, report: common.BuildReport
) -> dict[str, list[dict[str, Any]]]:
  """Reads one INbreast XML into findings in stored pixel coordinates.

  Returns:
    {'calcifications': [...], 'clusters': [...], 'masses': [...]} in the
    annotations.json entry format, plus 'extras': {'cluster_contours_xy':
    {cluster_id: [[x, y], ...]}, 'implicit_cluster_id': int | None,
    'other_findings': [{'id', 'type', 'center_xy', 'contour_xy'}]}.
  """
  with open(path, 'rb') as f:
    try:
      plist = plistlib.load(f)
    except Exception as e:  # pylint: disable=broad-except
      raise common.SourceError(
        f'INbreast: {path} is not a readable plist XML ({e}); expected an '
        'AllXML file with a top-level "Images" array'
      ) from e
  images = plist.get('Images') if isinstance(plist, dict) else None
  if not images:
    raise common.SourceError(
      f'INbreast: {path} has no "Images" array; expected an AllXML plist')
  if len(images) > 1:
    report.warn(f'INbreast: {path.name} has {len(images)} images; '
                'using ImageIndex 0 only')
  rois = images[0].get('ROIs', [])
  calcs, cluster_contours, masses, others = [], [], [], []
  for i, roi in enumerate(rois):
    item = f'{path.name}:ROI {i}'
    name = str(roi.get('Name', '')).strip()
    kind = ROI_TYPES.get(name.lower())
    if kind is None:
      report.skip(item, f'ROI name {name!r} has no finding type')
      continue
    if name.lower() != kind.replace('_', ' '):
      report.count(f'ROI name {name!r} read as {kind}')
    try:
      points = np.array([parse_point(p) for p in roi.get('Point_px', [])])
    except ValueError as e:
      report.skip(item, f'unparsable Point_px ({e})')
      continue
    if not len(points):
      report.skip(item, 'ROI without points')
      continue
    center = polygon_centroid(points)
    entry: dict[str, Any] = {'center_xy': [float(v) for v in center]}
    if len(points) > 1:
      entry['contour_xy'] = points.tolist()
    if kind == 'calcification':
      report.count('calcification points' if len(points) == 1
                   else 'calcification contours')
      calcs.append(entry)
    elif kind == 'cluster':
      if len(points) < 3:
        report.skip(item, 'Cluster ROI with fewer than 3 points')
        continue
      cluster_contours.append(points)
    elif kind == 'mass':
      entry.update(shape=None, margin=None, pathology=None)
      masses.append(entry)
    else:
      entry['type'] = kind
      others.append(entry)
  clusters = [
    {'cluster_id': k, 'distribution': None, 'calcification_ids': []}
    for k in range(len(cluster_contours))
  ]
  implicit = None
  for i, calc in enumerate(calcs):
    calc['id'] = i
    calc['morphology'] = None
    owner = next((k for k, c in enumerate(cluster_contours)
                  if point_in_polygon(calc['center_xy'], c)), None)
    if owner is None:
      if implicit is None:
        implicit = len(clusters)
        clusters.append({'cluster_id': implicit, 'distribution': None,
                         'calcification_ids': []})
      owner = implicit
      report.count('calcifications in the implicit cluster')
    else:
      report.count('calcifications inside a Cluster contour')
    calc['cluster_id'] = owner
    clusters[owner]['calcification_ids'].append(i)
  for i, mass in enumerate(masses):
    mass['id'] = i
  for i, other in enumerate(others):
    other['id'] = i
  return {
    'calcifications': calcs,
    'clusters': clusters,
    'masses': masses,
    'extras': {
      'cluster_contours_xy': {k: c.tolist()
                              for k, c in enumerate(cluster_contours)},
      'implicit_cluster_id': implicit,
      'other_findings': others,
    },
  }


def parse_inbreast(
  manual_dir: common.PathLike,
  *,
  pathology_map: Mapping[str, str] | None = None,
) -> tuple[list[common.SourceRecord], common.BuildReport]:
  """Parses an INbreast download into one record per image.

  Args:
    manual_dir: the INbreast release folder.
    pathology_map: BI-RADS string -> 'benign' | 'malignant' (default
      `PATHOLOGY_FROM_BIRADS`).

  Returns:
    (records, report); rows without a DICOM are skipped with the reason,
    images without an XML are kept with empty findings (counted).

  Raises:
    SourceError: no INbreast.csv, wrong columns, or no INbreast DICOM.
  """
  root = common.require_dir(manual_dir, 'INbreast', _LAYOUT)
  pathology_map = dict(pathology_map or PATHOLOGY_FROM_BIRADS)
  csv_paths = common.find_files(root, ['INbreast.csv'])
  if not csv_paths:
    raise common.SourceError(
      f'INbreast: no INbreast.csv found in {root}; expected {_LAYOUT}')
  report = common.BuildReport(dataset=DATASET)
  header, rows = common.read_csv_rows(csv_paths[0], delimiter=';')
  common.require_columns(csv_paths[0], header, _COLUMNS)
  dicoms: dict[str, list[tuple[pathlib.Path, re.Match]]] = {}
  xmls: dict[str, pathlib.Path] = {}
  for path in common.iter_files(root, ('.dcm', '.xml')):  # by name only
    if path.suffix.lower() == '.xml':
      xmls.setdefault(path.stem, path)
      continue
    match = DICOM_NAME.match(path.name)
    if match is None:
      report.skip(path, 'DICOM name not <File Name>_<hash>_MG_<L|R>_<view>'
                  '_ANON.dcm')
      continue
    dicoms.setdefault(match['file'], []).append((path, match))
  if not dicoms:
    raise common.SourceError(
      f'INbreast: no DICOM files named <File Name>_<hash>_MG_<L|R>_<view>'
      f'_ANON.dcm found under {root}; expected {_LAYOUT}')
  records = []
  used = set()
  for line, row in enumerate(rows, start=2):
    record = _record(row, line, root, dicoms, xmls, pathology_map, report)
    if record is not None:
      records.append(record)
      used.add(record.example_id)
  for file_id, found in sorted(dicoms.items()):
    if file_id not in used:
      for path, _ in found:
        report.skip(path, 'DICOM without a row in INbreast.csv')
  return common.finish(records, report)


def _record(
  row: Mapping[str, str],
  line: int,
  root: pathlib.Path,
  dicoms: Mapping[str, list[tuple[pathlib.Path, re.Match]]],
  xmls: Mapping[str, pathlib.Path],
  pathology_map: Mapping[str, str],
  report: common.BuildReport,
) -> common.SourceRecord | None:
  """One CSV row -> record (None = skipped, reason reported)."""
  file_id = row['File Name'].strip()
  item = f'INbreast.csv:{line} ({file_id})'
  birads = row['Bi-Rads'].strip().lower()
  if birads not in pathology_map:
    report.skip(item, f'unknown Bi-Rads {row["Bi-Rads"]!r}')
    return None
  found = dicoms.get(file_id, [])
  if not found:
    report.skip(item, f'no DICOM named {file_id}_*_MG_*_ANON.dcm')
    return None
  if len(found) > 1:
    report.warn(f'INbreast: {len(found)} DICOMs for {file_id}; using '
                f'{found[0][0].name}')
  path, match = found[0]
  side = row['Laterality'].strip().upper()
  view = row['View'].strip().upper()
  file_view = match['view'].upper()
  if file_view == 'ML':
    report.count('view ML in DICOM name read as MLO')
    file_view = 'MLO'
  if (match['side'].upper(), file_view) != (side, view):
    report.warn(
      f'INbreast: {file_id}: CSV says {side} {view}, DICOM name says '
      f'{match["side"].upper()} {match["view"].upper()}; using the CSV')
  if view not in ('CC', 'MLO'):
    report.count(f'view {view}')
  acr_raw = row['ACR'].strip()
  acr = int(acr_raw) if acr_raw in ('1', '2', '3', '4') else None
  if acr is None:
    report.count(f'ACR missing or invalid ({row["ACR"].strip()!r})')
  try:
    header = common.read_header(path)
  except Exception as e:  # pylint: disable=broad-except
    report.skip(item, f'unreadable DICOM {path.name} ({type(e).__name__})')
    return None
  patient_id = match['hash']
  annotation = common.image_entry(
    image_id=file_id,
    file=common.relative_file(path, root),
    patient_id=patient_id,
    laterality=side,
    view=view,
    header=header,
    density=common.density_letter(acr_raw),
  )
  xml = xmls.get(file_id)
  extras = {}
  if xml is None:
    report.count('images without XML annotation')
  else:
    findings = parse_xml(xml, report)
    extras = findings.pop('extras')
    annotation.update(findings)
    annotation['labels']['implicit_cluster_id'] = extras['implicit_cluster_id']
    _check_bounds(annotation, extras['other_findings'], header, report)
  labels: dict[str, common.LabelValue] = {
    'birads': birads,
    'pathology': pathology_map[birads],
    'acr': acr,
    'laterality': side,
    'view': view,
    'has_annotation': int(xml is not None),
  }
  return common.SourceRecord(
    example_id=file_id,
    patient_id=patient_id,
    image_path=path,
    annotation=annotation,
    labels=labels,
    split=None,
    extras=extras,
  )


def _check_bounds(
  annotation: Mapping[str, Any],
  others: Sequence[Mapping[str, Any]],
  header: common.DicomHeader,
  report: common.BuildReport,
) -> None:
  """Counts findings whose centre lies outside the stored pixel grid."""
  if not header.rows or not header.columns:
    return
  groups = {'calcifications': annotation['calcifications'],
            'masses': annotation['masses'], 'other_findings': others}
  for key, entries in groups.items():
    for entry in entries:
      x, y = entry['center_xy']
      if not (0 <= x < header.columns and 0 <= y < header.rows):
        report.count(f'{key} centre outside the image')

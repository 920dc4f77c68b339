"""The annotation file format (`annotations.json`): read, validate, write.

The format is fixed in docs/architecture.md. Coordinates are `xy` = (column,
row) in the stored pixel grid of the DICOM file. `load_annotations` and
`validate_annotations` return a normalised copy in which every optional field
is present (defaults below); every error names the file, the image and the
field.

Defaults of optional fields:
  top level: `dataset` "custom"; `vocabularies` those of `dataset` in
    `mammojax.data.vocab` (required when the dataset is not known there).
  image: `patient_id` = image_id, `rows`/`columns`/`pixel_spacing_mm`/
    `density` None, `calcifications`/`clusters`/`masses` [], `labels` {}.
  calcification: `contour_xy`/`diameter_mm`/`morphology`/`cluster_id` None.
  cluster: `distribution` None, `pathology` None, `subtlety` None (1-5,
    the CBIS-DDSM rating; extensions of the documented format),
    `calcification_ids` = ids of calcifications naming it.
  mass: `contour_xy`/`shape`/`margin`/`pathology` None.
"""

import json
import math
import os
import pathlib
from typing import Any, Optional, TypedDict

from mammojax.data import vocab as vocab_lib

FORMAT = "mammojax-annotations"
FORMAT_VERSION = 1
LABEL_FIELDS = ("morphology", "distribution", "mass_shape", "mass_margin",
                "pathology")
LATERALITIES = ("L", "R")
DENSITIES = ("a", "b", "c", "d")

PathLike = str | os.PathLike


class Calcification(TypedDict):
  """One calcification; `contour_xy` is `[k, 2]` boundary pixel centres."""

  id: int
  center_xy: list[float]
  contour_xy: Optional[list[list[float]]]
  diameter_mm: Optional[float]
  morphology: Optional[str]
  cluster_id: Optional[int]


class Cluster(TypedDict):
  """One calcification cluster (one graph sample)."""

  cluster_id: int
  distribution: Optional[str]
  pathology: Optional[str]
  subtlety: Optional[int]
  calcification_ids: list[int]


class Mass(TypedDict):
  """One mass with its outline `contour_xy` `[k, 2]`."""

  id: int
  center_xy: list[float]
  contour_xy: Optional[list[list[float]]]
  shape: Optional[str]
  margin: Optional[str]
  pathology: Optional[str]


class ImageAnnotation(TypedDict):
  """One entry of `images`."""

  image_id: str
  file: str
  patient_id: str
  laterality: str
  view: str
  rows: Optional[int]
  columns: Optional[int]
  pixel_spacing_mm: Optional[list[float]]
  density: Optional[str]
  calcifications: list[Calcification]
  clusters: list[Cluster]
  masses: list[Mass]
  labels: dict[str, Any]


class AnnotationError(ValueError):
  """Invalid annotation content; the message names file, image and field."""


def _fail(where: str, message: str):
  """Raises AnnotationError with a `where: message` text."""
  raise AnnotationError(f"{where}: {message}")


def _check_keys(obj: dict, where: str, required: tuple, optional: tuple):
  """Fails on missing required keys and on unknown keys."""
  for key in required:
    if key not in obj:
      _fail(where, f"missing required field {key!r}")
  unknown = sorted(set(obj) - set(required) - set(optional))
  if unknown:
    _fail(
        where,
        f"unknown field(s) {unknown}; allowed: "
        f"{sorted(required + optional)}",
    )


def _is_int(x: Any) -> bool:
  """True for ints that are not bools."""
  return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: Any) -> bool:
  """True for finite ints/floats that are not bools."""
  return (
      isinstance(x, (int, float))
      and not isinstance(x, bool)
      and math.isfinite(x)
  )


def _int(obj: dict, key: str, where: str, *, minimum: Optional[int] = None):
  """Returns `obj[key]` checked to be an integer (>= minimum)."""
  value = obj[key]
  if not _is_int(value) or (minimum is not None and value < minimum):
    bound = f" >= {minimum}" if minimum is not None else ""
    _fail(where, f"{key} must be an integer{bound}, got {value!r}")
  return value


def _string(obj: dict, key: str, where: str) -> str:
  """Returns `obj[key]` checked to be a non-empty string."""
  value = obj[key]
  if not isinstance(value, str) or not value:
    _fail(where, f"{key} must be a non-empty string, got {value!r}")
  return value


def _point(value: Any, key: str, where: str) -> list[float]:
  """Returns `value` checked to be a finite `[x, y]` point."""
  if (
      not isinstance(value, (list, tuple))
      or len(value) != 2
      or not all(_is_number(v) for v in value)
  ):
    _fail(where, f"{key} must be [x, y] finite numbers, got {value!r}")
  return [float(value[0]), float(value[1])]


def _contour(value: Any, key: str, where: str) -> Optional[list]:
  """Returns `value` checked to be None or a `[k, 2]` point list."""
  if value is None:
    return None
  if not isinstance(value, (list, tuple)) or not value:
    _fail(where, f"{key} must be a non-empty list of [x, y], got {value!r}")
  return [_point(p, f"{key}[{i}]", where) for i, p in enumerate(value)]


def _label(
    obj: dict, key: str, field: str, vocabularies: dict, where: str
) -> Optional[str]:
  """Returns the label at `obj[key]` checked against its vocabulary."""
  value = obj.get(key)
  if value is None:
    return None
  if field not in vocabularies:
    _fail(where, f"{key} {value!r} given but the file has no {field!r} "
          "vocabulary")
  vocab_lib.encode(value, vocabularies[field], field=key, where=where)
  return value


def _check_in_image(xy: list[float], image: dict, key: str, where: str):
  """Fails when `xy` lies outside the image (if its size is known)."""
  rows, cols = image["rows"], image["columns"]
  if rows is None or cols is None:
    return
  x, y = xy
  if not (-0.5 <= x <= cols - 0.5 and -0.5 <= y <= rows - 0.5):
    _fail(where, f"{key} {xy} outside the image ({cols} x {rows} columns x "
          "rows)")


def _validate_calcification(
    c: Any, image: dict, vocabs: dict, image_where: str, position: int
):
  """Returns a normalised copy of one calcification."""
  where = f"{image_where}: calcifications[{position}]"
  if not isinstance(c, dict):
    _fail(where, f"calcification must be an object, got {c!r}")
  _check_keys(c, where, ("id", "center_xy"),
              ("contour_xy", "diameter_mm", "morphology", "cluster_id"))
  out = {"id": _int(c, "id", where, minimum=0)}
  where = f"{image_where}: calcification {out['id']}"
  out["center_xy"] = _point(c["center_xy"], "center_xy", where)
  _check_in_image(out["center_xy"], image, "center_xy", where)
  out["contour_xy"] = _contour(c.get("contour_xy"), "contour_xy", where)
  diameter = c.get("diameter_mm")
  if diameter is not None and (not _is_number(diameter) or diameter <= 0):
    _fail(where, f"diameter_mm must be a positive number, got {diameter!r}")
  out["diameter_mm"] = None if diameter is None else float(diameter)
  out["morphology"] = _label(c, "morphology", "morphology", vocabs, where)
  cluster_id = c.get("cluster_id")
  if cluster_id is not None and not _is_int(cluster_id):
    _fail(where, f"cluster_id must be an integer or null, got {cluster_id!r}")
  out["cluster_id"] = cluster_id
  return out


def _validate_cluster(
    c: Any, vocabs: dict, image_where: str, position: int
):
  """Returns a normalised copy of one cluster."""
  where = f"{image_where}: clusters[{position}]"
  if not isinstance(c, dict):
    _fail(where, f"cluster must be an object, got {c!r}")
  _check_keys(c, where, ("cluster_id",),
              ("distribution", "pathology", "calcification_ids",
               "subtlety"))
  out = {"cluster_id": _int(c, "cluster_id", where)}
  where = f"{image_where}: cluster {out['cluster_id']}"
  subtlety = c.get("subtlety")
  if subtlety is not None and not (_is_int(subtlety) and 1 <= subtlety <= 5):
    _fail(where, f"subtlety must be an integer 1-5 or null, got {subtlety!r}")
  out["subtlety"] = subtlety
  out["distribution"] = _label(c, "distribution", "distribution", vocabs,
                               where)
  out["pathology"] = _label(c, "pathology", "pathology", vocabs, where)
  ids = c.get("calcification_ids")
  if ids is not None and (
      not isinstance(ids, list) or not all(_is_int(i) for i in ids)
  ):
    _fail(where, f"calcification_ids must be a list of integers, got {ids!r}")
  out["calcification_ids"] = ids
  return out


def _validate_mass(
    m: Any, image: dict, vocabs: dict, image_where: str, position: int
):
  """Returns a normalised copy of one mass."""
  where = f"{image_where}: masses[{position}]"
  if not isinstance(m, dict):
    _fail(where, f"mass must be an object, got {m!r}")
  _check_keys(m, where, ("id", "center_xy"),
              ("contour_xy", "shape", "margin", "pathology"))
  out = {"id": _int(m, "id", where, minimum=0)}
  where = f"{image_where}: mass {out['id']}"
  out["center_xy"] = _point(m["center_xy"], "center_xy", where)
  _check_in_image(out["center_xy"], image, "center_xy", where)
  out["contour_xy"] = _contour(m.get("contour_xy"), "contour_xy", where)
  out["shape"] = _label(m, "shape", "mass_shape", vocabs, where)
  out["margin"] = _label(m, "margin", "mass_margin", vocabs, where)
  out["pathology"] = _label(m, "pathology", "pathology", vocabs, where)
  return out


def _list(obj: dict, key: str, where: str) -> list:
  """Returns `obj[key]` (default []) checked to be a list."""
  value = obj.get(key, [])
  if not isinstance(value, list):
    _fail(where, f"{key} must be a list, got {type(value).__name__}")
  return value


def _validate_image(im: Any, position: int, vocabs: dict, source: str):
  """Returns a normalised copy of one `images` entry."""
  where = f"{source}: images[{position}]"
  if not isinstance(im, dict):
    _fail(where, f"must be an object, got {im!r}")
  if isinstance(im.get("image_id"), str) and im["image_id"]:
    where = f"{source}: image {im['image_id']!r}"
  _check_keys(
      im, where, ("image_id", "file", "laterality", "view"),
      ("patient_id", "rows", "columns", "pixel_spacing_mm", "density",
       "calcifications", "clusters", "masses", "labels"))
  out = {"image_id": _string(im, "image_id", where),
         "file": _string(im, "file", where)}
  out["patient_id"] = (
      _string(im, "patient_id", where)
      if im.get("patient_id") is not None else out["image_id"])
  if im["laterality"] not in LATERALITIES:
    _fail(where, f"laterality must be one of {list(LATERALITIES)}, got "
          f"{im['laterality']!r}")
  out["laterality"] = im["laterality"]
  out["view"] = _string(im, "view", where)
  for key in ("rows", "columns"):
    out[key] = (_int(im, key, where, minimum=1)
                if im.get(key) is not None else None)
  spacing = im.get("pixel_spacing_mm")
  if spacing is not None:
    if (not isinstance(spacing, list) or len(spacing) != 2
        or not all(_is_number(s) and s > 0 for s in spacing)):
      _fail(where, "pixel_spacing_mm must be [row, column] positive numbers, "
            f"got {spacing!r}")
    spacing = [float(s) for s in spacing]
  out["pixel_spacing_mm"] = spacing
  density = im.get("density")
  if density is not None:
    vocab_lib.encode(density, vocabs.get("density", DENSITIES),
                     field="density", where=where)
  out["density"] = density

  calcs = [
      _validate_calcification(c, out, vocabs, where, i)
      for i, c in enumerate(_list(im, "calcifications", where))
  ]
  calc_ids = [c["id"] for c in calcs]
  if len(set(calc_ids)) != len(calc_ids):
    dup = sorted({i for i in calc_ids if calc_ids.count(i) > 1})
    _fail(where, f"duplicate calcification id(s) {dup}")
  clusters = [
      _validate_cluster(c, vocabs, where, i)
      for i, c in enumerate(_list(im, "clusters", where))
  ]
  cluster_ids = [c["cluster_id"] for c in clusters]
  if len(set(cluster_ids)) != len(cluster_ids):
    _fail(where, f"duplicate cluster_id(s) in {cluster_ids}")
  for c in calcs:
    if c["cluster_id"] is not None and c["cluster_id"] not in cluster_ids:
      _fail(where, f"calcification {c['id']}: cluster_id {c['cluster_id']} "
            f"not among clusters {cluster_ids}")
  for cl in clusters:
    members = [c["id"] for c in calcs if c["cluster_id"] == cl["cluster_id"]]
    if cl["calcification_ids"] is None:
      cl["calcification_ids"] = members
    else:
      missing = sorted(set(cl["calcification_ids"]) - set(calc_ids))
      if missing:
        _fail(where, f"cluster {cl['cluster_id']}: calcification_ids "
              f"{missing} not among calcifications")
  masses = [
      _validate_mass(m, out, vocabs, where, i)
      for i, m in enumerate(_list(im, "masses", where))
  ]
  mass_ids = [m["id"] for m in masses]
  if len(set(mass_ids)) != len(mass_ids):
    _fail(where, f"duplicate mass id(s) in {mass_ids}")
  labels = im.get("labels", {})
  if not isinstance(labels, dict):
    _fail(where, f"labels must be an object, got {labels!r}")
  for key, value in labels.items():
    if not isinstance(value, (str, int, float, bool, type(None))):
      _fail(where, f"labels[{key!r}] must be a JSON scalar, got {value!r}")
  out.update(calcifications=calcs, clusters=clusters, masses=masses,
             labels=dict(labels))
  return out


def _validate_vocabularies(data: dict, source: str) -> dict:
  """Returns the file's vocabularies (or the dataset's defaults)."""
  dataset = data.get("dataset", "custom")
  if not isinstance(dataset, str) or not dataset:
    _fail(source, f"dataset must be a non-empty string, got {dataset!r}")
  vocabs = data.get("vocabularies")
  if vocabs is None:
    if dataset not in vocab_lib.VOCABULARIES:
      _fail(source, f"missing required field 'vocabularies' (dataset "
            f"{dataset!r} is not one of {sorted(vocab_lib.VOCABULARIES)})")
    return {k: list(v) for k, v in vocab_lib.VOCABULARIES[dataset].items()}
  if not isinstance(vocabs, dict):
    _fail(source, f"vocabularies must be an object, got {vocabs!r}")
  out = {}
  for field, names in vocabs.items():
    if (not isinstance(names, list) or not names
        or not all(isinstance(n, str) and n for n in names)):
      _fail(source, f"vocabularies[{field!r}] must be a non-empty list of "
            f"strings, got {names!r}")
    if len(set(names)) != len(names):
      _fail(source, f"vocabularies[{field!r}] has duplicate names: {names}")
    out[field] = list(names)
  return out


def validate_annotations(data: Any, *, source: str = "<annotations>") -> dict:
  """Validates an annotation dict and returns a normalised copy.

  Args:
    data: the parsed JSON object.
    source: name used as the first part of every error message (the file).

  Returns:
    A new dict with all optional fields filled with their defaults.

  Raises:
    AnnotationError (a ValueError) naming source, image and field.
  """
  if not isinstance(data, dict):
    _fail(source, f"top level must be an object, got {type(data).__name__}")
  _check_keys(data, source, ("format", "format_version", "images"),
              ("dataset", "vocabularies"))
  if data["format"] != FORMAT:
    _fail(source, f"format must be {FORMAT!r}, got {data['format']!r}")
  if data["format_version"] != FORMAT_VERSION:
    _fail(source, f"format_version must be {FORMAT_VERSION}, got "
          f"{data['format_version']!r}")
  vocabs = _validate_vocabularies(data, source)
  images = data["images"]
  if not isinstance(images, list):
    _fail(source, f"images must be a list, got {type(images).__name__}")
  out_images = [
      _validate_image(im, i, vocabs, source) for i, im in enumerate(images)
  ]
  seen = set()
  for im in out_images:
    if im["image_id"] in seen:
      _fail(source, f"duplicate image_id {im['image_id']!r}")
    seen.add(im["image_id"])
  return {
      "format": FORMAT,
      "format_version": FORMAT_VERSION,
      "dataset": data.get("dataset", "custom"),
      "vocabularies": vocabs,
      "images": out_images,
  }


def load_annotations(path: PathLike) -> dict:
  """Reads and validates an `annotations.json` file.

  Args:
    path: the JSON file; `file` entries are relative to its folder.

  Returns:
    The normalised annotation dict (see `validate_annotations`).
  """
  path = pathlib.Path(path)
  try:
    text = path.read_text()
  except OSError as e:
    raise AnnotationError(f"{path}: cannot read annotation file: {e}") from e
  try:
    data = json.loads(text)
  except json.JSONDecodeError as e:
    raise AnnotationError(f"{path}: invalid JSON: {e}") from e
  return validate_annotations(data, source=str(path))


def make_annotations(
    images: list[dict],
    *,
    dataset: str = "synthetic",
    vocabularies: Optional[dict] = None,
) -> dict:
  """Returns a top-level annotation dict around `images`."""
  if vocabularies is None:
    vocabularies = {
        k: list(v) for k, v in vocab_lib.VOCABULARIES[dataset].items()
        if k in LABEL_FIELDS
    }
  return {
      "format": FORMAT,
      "format_version": FORMAT_VERSION,
      "dataset": dataset,
      "vocabularies": vocabularies,
      "images": images,
  }


def save_annotations(path: PathLike, data: dict) -> None:
  """Validates `data` and writes it as JSON (one image per line)."""
  path = pathlib.Path(path)
  data = validate_annotations(data, source=str(path))
  head = {k: v for k, v in data.items() if k != "images"}
  lines = [json.dumps(head)[:-1] + ', "images": [']
  lines.append(",\n".join(json.dumps(im) for im in data["images"]))
  lines.append("]}\n")
  tmp = path.with_name(path.name + ".tmp")
  tmp.write_text("\n".join(lines))
  os.replace(tmp, path)


def resolve_file(annotation_path: PathLike, image: dict) -> pathlib.Path:
  """Returns the DICOM path of `image`, relative to the JSON's folder."""
  return pathlib.Path(annotation_path).parent / image["file"]

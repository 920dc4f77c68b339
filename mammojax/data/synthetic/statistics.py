"""Calcification-cluster statistics of CBIS-DDSM, estimated and compared.

The generator's default (`SyntheticConfig.calc_statistics = "cbis_ddsm"`)
draws its clusters from statistics estimated from the CBIS-DDSM calc case
descriptions (Lee et al., "A curated mammography data set for use in
computer-aided detection and diagnosis research", Sci. Data 2017) by
`scripts/estimate_calc_statistics.py` and stored as data in
`cbis_ddsm_calc_statistics.json` next to this module (with its provenance).
The planner reads them through `load_statistics`; nothing is hard-coded.

Reading of the CSVs (`estimate`), on the rows of
`mammojax.data.sources.cbis_ddsm.parse_case_descriptions` (one row = one
abnormality in one view):

* `calc type` / `calc distribution` are split into atoms by the parser's
  `split_atoms` ('PLEOMORPHIC-FINE_LINEAR_BRANCHING' -> two atoms, repeats
  removed). Only atoms of MT-GCN's 5 + 5 classes (`vocab.VOCABULARIES
  ['cbis_ddsm']`) are kept; they are mapped to the synthetic vocabulary by
  `MORPHOLOGY_MAP` / `DISTRIBUTION_MAP` (clustered -> grouped, diffusely
  scattered -> diffuse, pleomorphic -> fine pleomorphic; round and regular,
  the fifth and least suspicious MT-GCN class, takes the synthetic fifth
  class coarse heterogeneous, the generator's other benign-looking type).
* `joint_counts[m][d]` (5 x 5, synthetic order) counts each value of a
  multi-valued entry: a row 'A-B' x 'grouped' adds 1 to (A, grouped) and 1
  to (B, grouped). Rows with no in-vocabulary type or distribution (N/A,
  vascular, lucent centre, ...) are not in it.
* `cases`: the distinct (set of in-vocabulary types, distribution) of those
  rows with their counts; a row with k in-vocabulary distributions adds 1/k
  to each of its k cases. The planner draws a cluster's morphologies and
  distribution from them (`draw_case`).
* `mixing_pairs`: unordered pairs of in-vocabulary types of one row.
* `subtlety_counts`: the 1-5 subtlety histogram over all calc rows.
* `clusters_per_image_counts`: calc abnormalities per (patient, side,
  view), i.e. per image.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import math
import pathlib
from typing import Any, Iterable, Mapping, Optional, Sequence

import numpy as np

from mammojax.data import vocab as vocab_lib
from mammojax.data.sources import cbis_ddsm as cbis_source

MORPHOLOGIES = vocab_lib.VOCABULARIES["synthetic"]["morphology"]
DISTRIBUTIONS = vocab_lib.VOCABULARIES["synthetic"]["distribution"]

# CBIS-DDSM (MT-GCN's 5 classes) -> synthetic vocabulary.
MORPHOLOGY_MAP = {
    "punctate": "punctate",
    "amorphous": "amorphous",
    "round_and_regular": "coarse_heterogeneous",
    "pleomorphic": "fine_pleomorphic",
    "fine_linear_branching": "fine_linear_branching",
}
DISTRIBUTION_MAP = {
    "diffusely_scattered": "diffuse",
    "regional": "regional",
    "clustered": "grouped",
    "linear": "linear",
    "segmental": "segmental",
}

STATISTICS_FILE = pathlib.Path(__file__).with_name(
    "cbis_ddsm_calc_statistics.json")
KNOWN_STATISTICS = ("cbis_ddsm",)


def _mapped(raw: str, mapping: Mapping[str, str]) -> list[str]:
  """In-vocabulary atoms of a raw CSV label, mapped, in listed order."""
  out = []
  for atom in cbis_source.split_atoms(raw or ""):
    if atom in mapping and mapping[atom] not in out:
      out.append(mapping[atom])
  return out


def estimate(rows: Sequence[Any]) -> dict[str, Any]:
  """Estimates the cluster statistics from parsed calc case rows.

  Args:
    rows: `CaseRow`s of `parse_case_descriptions` (calc rows are used; their
      labels need `calc_type_raw`, `calc_distribution_raw`, `subtlety`).

  Returns:
    A JSON-able dict (see the module docstring for every field).
  """
  rows = [r for r in rows if r.abnormality_type == "calcification"]
  joint = np.zeros((len(MORPHOLOGIES), len(DISTRIBUTIONS)))
  cases: dict[tuple[tuple[str, ...], str], float] = {}
  pairs: dict[tuple[str, str], int] = {}
  subtlety = [0] * 5
  per_image: dict[tuple[str, str, str], int] = {}
  multi_type = multi_in_vocab = with_type = in_joint = 0
  for r in rows:
    raw_types = cbis_source.split_atoms(r.labels.get("calc_type_raw") or "")
    types = _mapped(r.labels.get("calc_type_raw"), MORPHOLOGY_MAP)
    dists = _mapped(r.labels.get("calc_distribution_raw"), DISTRIBUTION_MAP)
    s = r.labels.get("subtlety")
    if isinstance(s, int) and 1 <= s <= 5:
      subtlety[s - 1] += 1
    key = (r.patient_id, r.laterality, r.view)
    per_image[key] = per_image.get(key, 0) + 1
    multi_type += len(raw_types) >= 2
    with_type += bool(types)
    if len(types) >= 2:
      multi_in_vocab += 1
      for a, b in itertools.combinations(sorted(types, key=MORPHOLOGIES.index),
                                         2):
        pairs[(a, b)] = pairs.get((a, b), 0) + 1
    if not types or not dists:
      continue
    in_joint += 1
    for m in types:
      for d in dists:
        joint[MORPHOLOGIES.index(m), DISTRIBUTIONS.index(d)] += 1
    members = tuple(sorted(types, key=MORPHOLOGIES.index))
    for d in dists:
      cases[(members, d)] = cases.get((members, d), 0.0) + 1.0 / len(dists)
  counts = {}
  for n in per_image.values():
    counts[n] = counts.get(n, 0) + 1
  return {
      "calc_rows": len(rows),
      "rows_with_two_or_more_types": multi_type,
      "rows_with_an_in_vocabulary_type": with_type,
      "rows_with_two_or_more_in_vocabulary_types": multi_in_vocab,
      "rows_in_joint": in_joint,
      "morphologies": list(MORPHOLOGIES),
      "distributions": list(DISTRIBUTIONS),
      "joint_counts": joint.astype(int).tolist(),
      "cases": [{"morphologies": list(k[0]), "distribution": k[1],
                 "count": round(v, 6)} for k, v in sorted(
                     cases.items(), key=lambda kv: (-kv[1], kv[0]))],
      "mixing_pairs": [{"pair": list(k), "count": v} for k, v in sorted(
          pairs.items(), key=lambda kv: (-kv[1], kv[0]))],
      "subtlety_counts": subtlety,
      "images": len(per_image),
      "clusters_per_image_counts": {str(k): counts[k] for k in sorted(counts)},
  }


def estimate_from_csvs(paths: Iterable[pathlib.Path]) -> dict[str, Any]:
  """`estimate` of calc case-description CSVs, with their provenance."""
  paths = sorted(pathlib.Path(p) for p in paths)
  by_name = {n: k for k, n in cbis_source.CSV_FILES.items()}
  files = {}
  for p in paths:
    if p.name.lower() not in by_name:
      raise ValueError(
          f"{p}: not a CBIS-DDSM case-description CSV; expected one of "
          f"{sorted(cbis_source.CSV_FILES.values())}")
    files[by_name[p.name.lower()]] = p
  rows, _ = cbis_source.parse_case_descriptions(
      files, abnormality_types=("calcification",))
  stats = estimate(rows)
  stats["provenance"] = {
      "files": [{"name": p.name,
                 "sha256": hashlib.sha256(p.read_bytes()).hexdigest()}
                for p in paths],
      "morphology_map": MORPHOLOGY_MAP,
      "distribution_map": DISTRIBUTION_MAP,
  }
  return stats


@functools.lru_cache(maxsize=4)
def load_statistics(name: str = "cbis_ddsm") -> dict[str, Any]:
  """The stored statistics `name` (the JSON data file next to this module)."""
  if name not in KNOWN_STATISTICS:
    raise ValueError(
        f"SyntheticConfig.calc_statistics={name!r}; expected 'independent' "
        f"or one of {list(KNOWN_STATISTICS)}")
  with open(STATISTICS_FILE, encoding="utf-8") as f:
    return json.load(f)


# ---------------------------------------------------------------------------
# Drawing from the statistics (used by the planner).
# ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _case_table(name: str):
  """(members per case, distribution per case, weight [cases, morph])."""
  stats = load_statistics(name)
  members, dists = [], []
  weight = np.zeros((len(stats["cases"]), len(MORPHOLOGIES)))
  for i, case in enumerate(stats["cases"]):
    members.append(tuple(case["morphologies"]))
    dists.append(case["distribution"])
    for m in case["morphologies"]:
      # Each member is the dominant morphology of an equal share.
      weight[i, MORPHOLOGIES.index(m)] = case["count"] / len(
          case["morphologies"])
  return tuple(members), tuple(dists), weight


def dominant_marginal(name: str = "cbis_ddsm") -> np.ndarray:
  """P(dominant morphology) of the statistics, [5] in MORPHOLOGIES order."""
  _, _, weight = _case_table(name)
  w = weight.sum(0)
  return w / w.sum()


def draw_case(
    rng: np.random.Generator,
    name: str = "cbis_ddsm",
    dominant_probs: Optional[Sequence[float]] = None,
) -> tuple[str, tuple[str, ...], str]:
  """Draws (dominant, minority morphologies, distribution) of one cluster.

  The dominant morphology comes from `dominant_probs` (None: the real
  marginal), then a real case containing it (weight: the case's count
  shared equally among its members) gives the other morphologies and the
  distribution, so P(case | dominant) is the real one whatever the marginal.
  """
  members, dists, weight = _case_table(name)
  p = dominant_marginal(name) if dominant_probs is None else np.asarray(
      dominant_probs, np.float64)
  if p.shape != (len(MORPHOLOGIES),) or (p < 0).any() or p.sum() <= 0:
    raise ValueError(
        f"SyntheticConfig.dominant_morphology_probs={dominant_probs!r}; "
        f"expected {len(MORPHOLOGIES)} non-negative weights in the order "
        f"{list(MORPHOLOGIES)}")
  m = int(rng.choice(len(MORPHOLOGIES), p=p / p.sum()))
  col = weight[:, m]
  if col.sum() <= 0:
    raise ValueError(f"statistics {name!r} have no case with morphology "
                     f"{MORPHOLOGIES[m]!r}")
  i = int(rng.choice(len(col), p=col / col.sum()))
  dominant = MORPHOLOGIES[m]
  return dominant, tuple(x for x in members[i] if x != dominant), dists[i]


def draw_subtlety(rng: np.random.Generator, name: str = "cbis_ddsm") -> int:
  """A subtlety rating 1-5 with the real frequencies."""
  c = np.asarray(load_statistics(name)["subtlety_counts"], np.float64)
  return int(rng.choice(5, p=c / c.sum())) + 1


def draw_cluster_count(rng: np.random.Generator, name: str = "cbis_ddsm",
                       maximum: int = 7) -> int:
  """Clusters in one image with the real frequencies (at most `maximum`)."""
  counts = load_statistics(name)["clusters_per_image_counts"]
  ks = np.asarray([int(k) for k in counts if int(k) <= maximum])
  c = np.asarray([counts[str(k)] for k in ks], np.float64)
  return int(ks[rng.choice(len(ks), p=c / c.sum())])


# ---------------------------------------------------------------------------
# Comparison (measurement script, tests).
# ---------------------------------------------------------------------------


def conditional(joint: np.ndarray) -> np.ndarray:
  """Row-normalised P(distribution | morphology); zero rows stay zero."""
  joint = np.asarray(joint, np.float64)
  total = joint.sum(1, keepdims=True)
  return np.divide(joint, total, out=np.zeros_like(joint), where=total > 0)


def total_variation(p: np.ndarray, q: np.ndarray) -> np.ndarray:
  """Row-wise total variation distance 0.5 * sum |p - q|."""
  return 0.5 * np.abs(np.asarray(p) - np.asarray(q)).sum(-1)


def cramers_v(joint: np.ndarray) -> float:
  """Cramer's V of a contingency table (empty rows / columns dropped)."""
  t = np.asarray(joint, np.float64)
  t = t[t.sum(1) > 0][:, t.sum(0) > 0]
  n = t.sum()
  k = min(t.shape) - 1
  if n <= 0 or k < 1:
    return 0.0
  e = t.sum(1, keepdims=True) * t.sum(0, keepdims=True) / n
  chi2 = float(((t - e) ** 2 / e).sum())
  return math.sqrt(chi2 / (n * k))


def cluster_statistics(clusters: Iterable[Mapping[str, Any]],
                       images: Iterable[int]) -> dict[str, Any]:
  """The statistics of generated clusters, in the layout of `estimate`.

  Args:
    clusters: dicts with `morphologies` (distinct morphologies of the
      cluster's calcifications), `distribution` and `subtlety` (or None).
    images: the number of clusters of each image.
  """
  joint = np.zeros((len(MORPHOLOGIES), len(DISTRIBUTIONS)))
  pairs: dict[tuple[str, str], int] = {}
  subtlety = [0] * 5
  mixed = n = 0
  for c in clusters:
    n += 1
    ms = sorted(set(c["morphologies"]), key=MORPHOLOGIES.index)
    for m in ms:
      joint[MORPHOLOGIES.index(m), DISTRIBUTIONS.index(c["distribution"])] += 1
    if len(ms) >= 2:
      mixed += 1
      for a, b in itertools.combinations(ms, 2):
        pairs[(a, b)] = pairs.get((a, b), 0) + 1
    if c.get("subtlety") is not None:
      subtlety[int(c["subtlety"]) - 1] += 1
  counts: dict[int, int] = {}
  for k in images:
    counts[int(k)] = counts.get(int(k), 0) + 1
  return {
      "clusters": n,
      "rows_with_two_or_more_in_vocabulary_types": mixed,
      "joint_counts": joint.astype(int).tolist(),
      "mixing_pairs": [{"pair": list(k), "count": v} for k, v in sorted(
          pairs.items(), key=lambda kv: (-kv[1], kv[0]))],
      "subtlety_counts": subtlety,
      "images": sum(counts.values()),
      "clusters_per_image_counts": {str(k): counts[k] for k in sorted(counts)},
  }


def compare(real: Mapping[str, Any], generated: Mapping[str, Any],
            min_cases: int = 50) -> dict[str, Any]:
  """Side-by-side numbers of two statistics dicts (real first).

  Returns the conditional tables, the TV distance per morphology row (and
  which rows have at least `min_cases` real cases), Cramer's V of both, the
  mixing-pair, subtlety and clusters-per-image frequencies of both.
  """
  rj = np.asarray(real["joint_counts"], np.float64)
  gj = np.asarray(generated["joint_counts"], np.float64)
  tv = total_variation(conditional(rj), conditional(gj))

  def freq(counts):
    c = np.asarray(counts, np.float64)
    return (c / max(c.sum(), 1.0)).round(4).tolist()

  def pair_freq(stats):
    total = sum(p["count"] for p in stats["mixing_pairs"]) or 1
    return {"+".join(p["pair"]): round(p["count"] / total, 4)
            for p in stats["mixing_pairs"]}

  def per_image(stats):
    c = stats["clusters_per_image_counts"]
    total = sum(c.values()) or 1
    mean = sum(int(k) * v for k, v in c.items()) / total
    return {"mean": round(mean, 4),
            "two_or_more": round(sum(v for k, v in c.items()
                                     if int(k) >= 2) / total, 4)}

  def mixed_fraction(stats, clusters):
    return round(stats["rows_with_two_or_more_in_vocabulary_types"]
                 / max(clusters, 1), 4)

  return {
      "morphologies": list(MORPHOLOGIES),
      "distributions": list(DISTRIBUTIONS),
      "real_conditional": conditional(rj).round(4).tolist(),
      "generated_conditional": conditional(gj).round(4).tolist(),
      "real_row_cases": rj.sum(1).astype(int).tolist(),
      "generated_row_cases": gj.sum(1).astype(int).tolist(),
      "tv_distance": tv.round(4).tolist(),
      "tv_rows_checked": (rj.sum(1) >= min_cases).tolist(),
      "max_tv_checked": float(tv[rj.sum(1) >= min_cases].max(initial=0.0)),
      "cramers_v": {"real": round(cramers_v(rj), 4),
                    "generated": round(cramers_v(gj), 4)},
      "mixed_fraction": {
          "real": mixed_fraction(real, real.get("rows_with_an_in_vocabulary_"
                                                "type", 1)),
          "generated": mixed_fraction(generated,
                                      generated.get("clusters", 1))},
      "mixing_pairs": {"real": pair_freq(real),
                       "generated": pair_freq(generated)},
      "subtlety": {"real": freq(real["subtlety_counts"]),
                   "generated": freq(generated["subtlety_counts"])},
      "clusters_per_image": {"real": per_image(real),
                             "generated": per_image(generated)},
  }

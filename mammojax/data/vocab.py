"""Label vocabularies per dataset, kept as data rather than model code.

`VOCABULARIES[dataset][field]` is the ordered tuple of class names; a label's
class index is its position in that tuple. Unknown labels (`None`) encode to
`UNKNOWN` (-1), which losses mask out.
"""

from collections.abc import Sequence
from typing import Optional

UNKNOWN = -1

_DENSITY = ("a", "b", "c", "d")
_PATHOLOGY = ("benign", "malignant")

# Mass descriptors as they occur in the CBIS-DDSM case-description CSVs
# (atomic values after splitting combined labels on '-', lower-cased).
_CBIS_MASS_SHAPE = (
    "round",
    "oval",
    "lobulated",
    "irregular",
    "architectural_distortion",
    "lymph_node",
    "asymmetric_breast_tissue",
    "focal_asymmetric_density",
)
_CBIS_MASS_MARGIN = (
    "circumscribed",
    "obscured",
    "microlobulated",
    "ill_defined",
    "spiculated",
)

VOCABULARIES: dict[str, dict[str, tuple[str, ...]]] = {
    "synthetic": {
        "morphology": (
            "punctate",
            "amorphous",
            "coarse_heterogeneous",
            "fine_pleomorphic",
            "fine_linear_branching",
        ),
        "distribution": (
            "diffuse",
            "regional",
            "grouped",
            "linear",
            "segmental",
        ),
        "mass_shape": ("round", "oval", "lobulated", "irregular"),
        "mass_margin": (
            "circumscribed",
            "obscured",
            "microlobulated",
            "ill_defined",
            "spiculated",
        ),
        "pathology": _PATHOLOGY,
        "density": _DENSITY,
        "subtype": (
            "luminal_a",
            "luminal_b",
            "her2_enriched",
            "triple_negative",
        ),
    },
    # Classes of the MT-GCN authors' CBIS-DDSM code (Du et al., IEEE JBHI
    # 2023).
    "cbis_ddsm": {
        "morphology": (
            "amorphous",
            "pleomorphic",
            "fine_linear_branching",
            "punctate",
            "round_and_regular",
        ),
        "distribution": (
            "clustered",
            "segmental",
            "linear",
            "regional",
            "diffusely_scattered",
        ),
        "mass_shape": _CBIS_MASS_SHAPE,
        "mass_margin": _CBIS_MASS_MARGIN,
        "pathology": ("benign", "benign_without_callback", "malignant"),
        "density": _DENSITY,
    },
    # The MT-GCN in-house set (Du et al., IEEE JBHI 2023); distribution
    # classes follow the paper's figure.
    "inhouse": {
        "morphology": (
            "not_suspicious",
            "amorphous",
            "heterogeneous",
            "pleomorphic",
            "linear",
        ),
        "distribution": (
            "diffuse",
            "regional",
            "grouped",
            "linear",
            "segmental",
        ),
        "pathology": _PATHOLOGY,
        "density": _DENSITY,
    },
}


def get_vocabulary(dataset: str, field: str) -> tuple[str, ...]:
  """Returns the class names of `field` in `dataset`, raising ValueError."""
  if dataset not in VOCABULARIES:
    raise ValueError(
        f"unknown dataset {dataset!r}; known datasets: "
        f"{sorted(VOCABULARIES)}"
    )
  fields = VOCABULARIES[dataset]
  if field not in fields:
    raise ValueError(
        f"dataset {dataset!r} has no vocabulary {field!r}; known fields: "
        f"{sorted(fields)}"
    )
  return fields[field]


def encode(
    label: Optional[str],
    vocab: Sequence[str],
    *,
    field: str,
    where: str = "",
) -> int:
  """Returns the index of `label` in `vocab` (`UNKNOWN` for None).

  Args:
    label: a class name or None (unknown).
    vocab: the ordered class names.
    field: the field name, used in the error message.
    where: context prefix for the error, e.g. "annotations.json: image 'x'".

  Returns:
    The class index, or `UNKNOWN` (-1) when `label` is None.

  Raises:
    ValueError: `label` is not in `vocab`.
  """
  if label is None:
    return UNKNOWN
  try:
    return list(vocab).index(label)
  except ValueError:
    prefix = f"{where}: " if where else ""
    raise ValueError(
        f"{prefix}{field} {label!r} not in vocabulary "
        f"{field}={list(vocab)}"
    ) from None


def decode(index: int, vocab: Sequence[str]) -> Optional[str]:
  """Returns the class name at `index` (None for `UNKNOWN`)."""
  if index == UNKNOWN:
    return None
  if not 0 <= index < len(vocab):
    raise ValueError(
        f"class index {index} out of range for vocabulary {list(vocab)}"
    )
  return vocab[index]

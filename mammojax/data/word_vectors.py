"""Word vectors in GloVe's text format, for attribute-node embeddings.

DAE-GCN's graph nodes start from word embeddings of the attribute values
(the paper's supplementary, not public; ML-GCN uses 300-d GloVe). Nothing is
downloaded at run time: the user points ``config.model.attribute_embeddings``
at a GloVe-format text file (e.g. ``glove.6B.300d.txt``), one word per line
followed by its numbers, separated by spaces::

  round 0.12 -0.5 ...
  oval -0.3 0.08 ...

The file is streamed once and only the needed words are parsed (GloVe files
are gigabytes). A term of several words (``ill_defined``,
``architectural_distortion``) is looked up whole first (as written, then
with ``-`` and with spaces), else as the mean of its ``_``-separated words
(ML-GCN's reading of multi-word labels). Lookups are case-insensitive
(GloVe is lower-case).
"""

import os
from typing import Optional, Sequence

import numpy as np


class WordVectorError(ValueError):
  """The embeddings file lacks words or has the wrong width."""


def _candidates(term: str) -> list[str]:
  t = term.strip().lower()
  return [t, t.replace("_", "-"), t.replace("_", " ")]


def load_word_vectors(
    path: str | os.PathLike[str],
    terms: Sequence[str],
    *,
    dim: Optional[int] = None,
    what: str = "config.model.attribute_embeddings",
) -> np.ndarray:
  """The embedding of each term, float32 ``[len(terms), D]``.

  Args:
    path: a GloVe-format text file.
    terms: the terms to embed (attribute values).
    dim: the expected width ``D`` (None: the file's).
    what: the config key the file came from (for error messages).

  Raises:
    WordVectorError: the file is missing or empty, a line has a width other
      than the first line's (or ``dim``) or a non-number, or a term (or one
      of its words) is not in the file.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise WordVectorError(f"{what}={path!r}: no such file (a GloVe-format "
                          "text file: one word and its numbers per line)")
  wanted = set()
  for term in terms:
    wanted.update(_candidates(term))
    wanted.update(w for w in term.strip().lower().split("_") if w)
  found: dict[str, np.ndarray] = {}
  width = dim
  first_line = None
  with open(path, encoding="utf-8", errors="replace") as f:
    for line_no, line in enumerate(f, 1):
      line = line.rstrip("\n").rstrip("\r")
      if not line.strip():
        continue
      # GloVe 840B has words with spaces: the numbers are the last D fields.
      parts = line.rstrip().split(" ")
      if first_line is None:
        first_line = line_no
        first = len(parts) - 1
        if first < 1:
          raise WordVectorError(
              f"{what}={path!r} line {line_no}: expected a word followed "
              "by its vector"
          )
        if width is not None and first != width:
          raise WordVectorError(
              f"{what}={path!r}: vectors have {first} numbers, expected "
              f"{width} (config.model.attribute_embedding_dim)"
          )
        width = first
      if len(parts) - 1 < width:
        raise WordVectorError(
            f"{what}={path!r} line {line_no}: {len(parts) - 1} numbers, "
            f"expected {width} like line {first_line}"
        )
      word = " ".join(parts[: len(parts) - width]).lower()
      if word in wanted and word not in found:
        try:
          found[word] = np.asarray(parts[-width:], np.float32)
        except ValueError as e:
          raise WordVectorError(
              f"{what}={path!r} line {line_no}: not a number in the vector "
              f"of {word!r} ({e})"
          ) from None
  if first_line is None:
    raise WordVectorError(f"{what}={path!r}: the file is empty")
  out, missing = [], []
  for term in terms:
    whole = next((c for c in _candidates(term) if c in found), None)
    if whole is not None:
      out.append(found[whole])
      continue
    words = [w for w in term.strip().lower().split("_") if w]
    absent = [w for w in words if w not in found]
    if not words or absent:
      missing.append(f"{term!r} (missing: {', '.join(absent) or term})")
      continue
    out.append(np.mean([found[w] for w in words], axis=0))
  if missing:
    raise WordVectorError(
        f"{what}={path!r}: no vector for {len(missing)} attribute value(s): "
        f"{'; '.join(missing)}"
    )
  return np.stack(out).astype(np.float32)

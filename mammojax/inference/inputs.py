"""The input files of a predict run: DICOM files and folders (recursive)."""

import os
import pathlib
from typing import Sequence

from mammojax.data import dicom


def discover(
    inputs: Sequence[str],
) -> tuple[list[str], list[tuple[str, str]]]:
  """Expands files and folders into the files to predict on.

  A file given by name is always a candidate (so a non-DICOM file gets its
  own row and status); a folder contributes, recursively, every file that
  ``dicom.find_dicom_files`` recognises (``*.dcm``, or no extension and the
  ``DICM`` magic); other files in folders are listed as ignored.

  Args:
    inputs: paths from the command line.

  Returns:
    ``(candidates, ignored)``: candidate paths in order (duplicates
    removed) and ``(path, reason)`` of what was left out.
  """
  candidates, ignored, seen = [], [], set()

  def add(path: pathlib.Path):
    key = os.path.abspath(path)
    if key not in seen:
      seen.add(key)
      candidates.append(str(path))

  for item in inputs:
    path = pathlib.Path(item)
    if path.is_dir():
      found = dicom.find_dicom_files(path)
      found_set = {os.path.abspath(p) for p in found}
      for p in found:
        add(p)
      for p in sorted(path.rglob("*")):
        if p.is_file() and os.path.abspath(p) not in found_set:
          ignored.append((str(p), "not a DICOM file name or no DICM magic "
                          "(ignored in a folder)"))
    elif path.exists():
      add(path)
    else:
      ignored.append((str(path), "no such file or folder"))
  return candidates, ignored

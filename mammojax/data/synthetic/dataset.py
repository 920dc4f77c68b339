"""Datasets: the image stream, DICOM folders and their summaries.

`write_dataset` renders images in worker processes and writes
`<patient>/<image_id>.dcm` files plus `annotations.json`
(`mammojax.data.annotations`); `summarise` counts images, patients and labels.
"""

import collections
import functools
import json
import multiprocessing
import os
import pathlib
import time
from typing import Iterator, Optional, Sequence

import numpy as np

from mammojax.data import annotations as annotations_lib
from mammojax.data.synthetic.config import SyntheticConfig
from mammojax.data.synthetic.dicom_writer import write_dicom
from mammojax.data.synthetic.layout import plan_dataset
from mammojax.data.synthetic.render import SyntheticImage
from mammojax.data.synthetic.render import generate_image


def generate_dataset(
    config: SyntheticConfig,
    num_images: int,
    seed: int = 0,
    num_patients: Optional[int] = None,
) -> Iterator[SyntheticImage]:
  """Yields the first `num_images` images of the stream, in order."""
  for spec in plan_dataset(config, num_images, num_patients, seed):
    yield generate_image(config, spec)


def _write_one(args) -> tuple[dict, float]:
  """Worker: renders and writes one image; returns (annotation, seconds)."""
  config, spec, out_dir = args
  start = time.perf_counter()
  image = generate_image(config, spec)
  write_dicom(pathlib.Path(out_dir) / spec.file, image.dataset)
  return image.annotation, time.perf_counter() - start


def summarise(annotations: Sequence[dict]) -> dict:
  """Counts of images, patients and labels over annotation entries."""
  counts = collections.defaultdict(collections.Counter)
  for im in annotations:
    counts["view"][im["view"]] += 1
    counts["laterality"][im["laterality"]] += 1
    counts["density"][im.get("density")] += 1
    for key in ("pathology", "subtype"):
      if key in im.get("labels", {}):
        counts[key][im["labels"][key]] += 1
    for c in im["clusters"]:
      counts["distribution"][c["distribution"]] += 1
    for c in im["calcifications"]:
      counts["morphology"][c["morphology"]] += 1
    for m in im["masses"]:
      counts["mass_shape"][m["shape"]] += 1
      counts["mass_margin"][m["margin"]] += 1
  n_calcs = [len(im["calcifications"]) for im in annotations]
  return {
      "images": len(annotations),
      "patients": len({im["patient_id"] for im in annotations}),
      "calcifications": int(sum(n_calcs)),
      "calcifications_per_image": {
          "min": int(min(n_calcs, default=0)),
          "mean": float(np.mean(n_calcs)) if n_calcs else 0.0,
          "max": int(max(n_calcs, default=0))},
      "labels": {k: dict(sorted(v.items(), key=lambda kv: str(kv[0])))
                 for k, v in counts.items()},
  }


def write_dataset(
    out_dir: str | os.PathLike,
    config: SyntheticConfig,
    num_images: int,
    seed: int = 0,
    num_patients: Optional[int] = None,
    *,
    workers: int = 2,
    progress: bool = True,
) -> dict:
  """Writes `<patient>/<image_id>.dcm` files and `annotations.json`.

  Args:
    out_dir: output folder (created).
    config: generator config.
    num_images: number of images.
    seed: dataset seed.
    num_patients: expected patient count (checked, see `plan_dataset`).
    workers: worker processes (1 = in process).
    progress: show a tqdm progress bar.

  Returns:
    A JSON-able summary (counts per label, seconds).
  """
  import tqdm  # pylint: disable=g-import-not-at-top

  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  specs = plan_dataset(config, num_images, num_patients, seed)
  args = [(config, spec, str(out_dir)) for spec in specs]
  start = time.perf_counter()
  bar = functools.partial(tqdm.tqdm, total=len(args), disable=not progress,
                          desc="synthetic mammograms", unit="img")
  if workers > 1:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(workers) as pool:
      results = list(bar(pool.imap(_write_one, args)))
  else:
    results = [_write_one(a) for a in bar(args)]
  images = [r[0] for r in results]
  annotations_lib.save_annotations(
      out_dir / "annotations.json",
      annotations_lib.make_annotations(images, dataset="synthetic"))
  total = time.perf_counter() - start
  summary = summarise(images)
  summary.update(
      seed=seed, workers=workers, seconds_total=round(total, 2),
      seconds_per_image_worker=round(float(np.mean([r[1] for r in results])),
                                     3),
      out_dir=str(out_dir))
  return summary


def dumps_summary(summary: dict) -> str:
  """The summary as indented JSON."""
  return json.dumps(summary, indent=2, default=str)

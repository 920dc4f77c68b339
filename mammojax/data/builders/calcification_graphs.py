"""TFDS builders of calcification-cluster graph samples (array_record).

One example per calcification cluster: the node inputs MT-GCN consumes
(full-resolution patches, normalised coordinates, morphology labels), the
cluster's distribution label, a crop of the mammogram around the cluster (for
drawing graphs), a downsampled full view (for image models) and the patient
id (for patient-wise splits).

Two sources share one ingestion path (``graph_examples.examples_from_image``,
also used by the CBIS-DDSM and INbreast builders), so synthetic and real data
are processed identically:

* ``synthetic_calcifications`` runs the project's synthetic mammogram
  generator in memory (no download) and reads each generated DICOM dataset
  through ``mammojax.data.dicom.load_dicom``;
* ``dicom_folder_calcifications`` reads a folder of DICOM files plus an
  ``annotations.json`` (docs/architecture.md) given as ``manual_dir``.

Both write ``array_record`` files and are read with ``tfds.data_source``; no
TensorFlow is needed. A build is cached under the TFDS data dir and skipped
when it already exists.
"""

import dataclasses
import hashlib
import json
import multiprocessing
import os
import pathlib
import pickle
from typing import Any

from absl import logging
import tensorflow_datasets as tfds
import tqdm

from mammojax.data import annotations as annotations_lib
from mammojax.data import synthetic
from mammojax.data.builders import base
from mammojax.data.builders import graph_examples


def _synthetic_worker(args):
  gen_config, seed, index, vocabularies, config, cache_file = args
  if cache_file is not None and os.path.exists(cache_file):
    try:
      with open(cache_file, "rb") as f:
        return pickle.load(f)
    except (OSError, EOFError, pickle.UnpicklingError):
      pass  # A partial file from an interrupted build: render again.
  image = synthetic.generate_image(gen_config, seed, index)
  result = graph_examples.examples_from_image(
      image.dataset,
      image.annotation,
      vocabularies,
      config,
      where=f"synthetic image {index}",
  )
  if cache_file is not None:
    tmp = f"{cache_file}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
      pickle.dump(result, f, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, cache_file)
  return result


def image_cache_dir(
    data_dir_root: str, gen_config: Any, config: graph_examples.CalcGraphConfig
) -> str:
  """Per-image cache folder keyed by everything that shapes an example.

  The synthetic stream is deterministic per (generator config, seed, image
  index), so cached images are reused by a larger or interrupted build.
  """
  key = repr((
      dataclasses.asdict(gen_config),
      config.seed,
      config.patch_size,
      tuple(config.view_size),
      config.crop_size,
      "v1",
  ))
  digest = hashlib.sha256(key.encode()).hexdigest()[:16]
  return os.path.join(data_dir_root, "_mammojax_cache", "synthetic", digest)


def summarise(
    results: list[tuple[list[tuple[str, dict[str, Any]]], dict[str, int]]],
    vocabularies: dict[str, list[str]],
) -> tuple[list[tuple[str, dict[str, Any]]], dict[str, Any]]:
  """Flattens per-image results and counts examples, labels and skips."""
  report = {
      "examples": 0,
      "nodes": 0,
      "morphology": {},
      "distribution": {},
      "subtlety": {},
      "skipped": {},
  }
  examples = []
  for image_examples, skipped in results:
    for reason, n in skipped.items():
      report["skipped"][reason] = report["skipped"].get(reason, 0) + n
    for key, ex in image_examples:
      report["examples"] += 1
      report["nodes"] += len(ex["morphology"])
      d = ex["distribution"]
      name = "unknown" if d < 0 else vocabularies["distribution"][d]
      report["distribution"][name] = report["distribution"].get(name, 0) + 1
      s = int(ex.get("subtlety", -1))
      name = "unknown" if s < 0 else str(s)
      report["subtlety"][name] = report["subtlety"].get(name, 0) + 1
      for m in ex["morphology"]:
        name = "unknown" if m < 0 else vocabularies["morphology"][m]
        report["morphology"][name] = report["morphology"].get(name, 0) + 1
      examples.append((key, ex))
  logging.info("build report: %s", json.dumps(report))
  return examples, report


class SyntheticCalcifications(tfds.core.GeneratorBasedBuilder):
  """Calcification graphs from the embedded synthetic mammogram generator."""

  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {
      "1.0.0": "Initial release.",
      "1.1.0": ("Clusters with the CBIS-DDSM statistics (joint morphology x "
                "distribution, coherent mixing, subtlety, several clusters "
                "per image); feature subtlety; builder configs independent "
                "(the 1.0.0 data) and balanced."),
  }
  BUILDER_CONFIGS = [
      graph_examples.CalcGraphConfig(
          name="default",
          description=("The paper's size: about 390 images, 200 patients; "
                       "clusters with the CBIS-DDSM statistics."),
      ),
      graph_examples.CalcGraphConfig(
          name="tiny",
          description="24 small images from 12 patients, for tests.",
          num_images=24,
          num_patients=None,
          generator_overrides=(("breast_scale", 0.5),),
          workers=1,
      ),
      graph_examples.CalcGraphConfig(
          name="independent",
          description=("The default's size with the generator before issue "
                       "15: distribution and dominant morphology independent "
                       "and balanced, uniform mixing, one cluster per image, "
                       "no subtlety (reproduces the earlier numbers)."),
          generator_overrides=(("calc_statistics", "independent"),),
      ),
      graph_examples.CalcGraphConfig(
          name="balanced",
          description=("The default with balanced dominant morphologies "
                       "(P(distribution, mixing | morphology) stay the "
                       "CBIS-DDSM ones)."),
          generator_overrides=(
              ("dominant_morphology_probs", (0.2, 0.2, 0.2, 0.2, 0.2)),),
      ),
  ]

  def _generator_config(self) -> "synthetic.SyntheticConfig":
    overrides = dict(self.builder_config.generator_overrides)
    return synthetic.SyntheticConfig(**overrides)

  def _info(self) -> tfds.core.DatasetInfo:
    from mammojax.data import vocab  # pylint: disable=g-import-not-at-top

    vocabularies = {
        k: list(v) for k, v in vocab.VOCABULARIES["synthetic"].items()
    }
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=graph_examples.features(self.builder_config),
        metadata=tfds.core.MetadataDict(vocabularies=vocabularies),
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    config = self.builder_config
    vocabularies = dict(self.info.metadata["vocabularies"])
    gen_config = self._generator_config()
    plan = synthetic.plan_dataset(
        gen_config, config.num_images, config.num_patients, config.seed
    )
    cache = image_cache_dir(self.data_dir_root, gen_config, config)
    os.makedirs(cache, exist_ok=True)
    args = [
        (gen_config, config.seed, i, vocabularies, config,
         os.path.join(cache, f"{i:06d}.pkl"))
        for i in range(len(plan))
    ]
    cached = sum(os.path.exists(a[-1]) for a in args)
    logging.info("%d of %d synthetic images come from the cache %s",
                 cached, len(args), cache)
    if config.workers > 1:
      ctx = multiprocessing.get_context("spawn")
      with ctx.Pool(config.workers) as pool:
        results = list(
            tqdm.tqdm(
                pool.imap(_synthetic_worker, args, chunksize=2),
                total=len(args),
                desc="synthetic mammograms",
            )
        )
    else:
      results = [
          _synthetic_worker(a)
          for a in tqdm.tqdm(args, desc="synthetic mammograms")
      ]
    examples, report = summarise(results, vocabularies)
    self.info.metadata["build_report"] = report
    return {base.FULL_SPLIT: self._generate_examples(examples)}

  def _generate_examples(self, examples):
    yield from examples


class DicomFolderCalcifications(tfds.core.GeneratorBasedBuilder):
  """Calcification graphs from a DICOM folder + ``annotations.json``.

  ``manual_dir`` is the folder holding ``annotations.json``; image paths in
  it are relative to that folder. The same format is what
  ``python -m mammojax.data.synthesize`` writes.
  """

  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {"1.0.0": "Initial release.",
                   "1.1.0": "Graph feature subtlety (1-5, -1 unknown)."}
  BUILDER_CONFIGS = [graph_examples.CalcGraphConfig(name="default")]
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Point manual_dir at a folder with annotations.json (see "
      "docs/architecture.md) and the DICOM files it lists."
  )

  def _annotations_path(self, manual_dir: os.PathLike) -> pathlib.Path:
    path = pathlib.Path(manual_dir) / "annotations.json"
    if not path.exists():
      raise FileNotFoundError(
          f"dicom_folder_calcifications: {path} not found; expected "
          "manual_dir to hold annotations.json and the DICOM files it lists"
      )
    return path

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=self.__doc__,
        features=graph_examples.features(self.builder_config),
        metadata=tfds.core.MetadataDict(),
    )

  def _split_generators(self, dl_manager):
    path = self._annotations_path(dl_manager.manual_dir)
    data = annotations_lib.load_annotations(path)
    vocabularies = {k: list(v) for k, v in data["vocabularies"].items()}
    results = []
    ingestion: dict[str, int] = {}
    for entry in tqdm.tqdm(data["images"], desc="DICOM images"):
      file = path.parent / entry["file"]
      if not file.exists():
        logging.warning(
            "%s: image %r: file %s not found; skipped",
            path, entry["image_id"], file,
        )
        results.append(([], {"missing DICOM file": 1}))
        continue
      results.append(
          graph_examples.examples_from_image(
              file,
              entry,
              vocabularies,
              self.builder_config,
              where=f"{path}: image {entry['image_id']!r}",
              counts=ingestion,
          )
      )
    examples, report = summarise(results, vocabularies)
    report["ingestion"] = ingestion
    self.info.metadata["vocabularies"] = vocabularies
    self.info.metadata["build_report"] = report
    return {base.FULL_SPLIT: self._generate_examples(examples)}

  def _generate_examples(self, examples):
    yield from examples

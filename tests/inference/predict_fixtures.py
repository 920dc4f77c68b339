"""A tiny trained MT-GCN run on synthetic DICOMs, shared by the predict tests.

``make_dataset`` writes synthetic DICOMs with ``mammojax.data.synthesize``'s
library (``synthetic.write_dataset``: ground-truth ``annotations.json``);
``train_tiny_run`` builds the graph examples of those files exactly as the
``dicom_folder_calcifications`` builder does
(``graph_examples.examples_from_image``) and trains ``configs/mtgcn.py:test``
for one epoch on them (no TFDS build); ``checkpointed_run`` leaves the same
workdir layout (results.json with config and vocabularies, the best
checkpoint written by ``training.checkpoints.Checkpointer``) from the
initial train state, without a gradient step: the predict tests check
geometry, statuses and files, not accuracy, and one compilation of the
train step costs more than their whole time budget on 2 shared cores.
"""

import dataclasses
import os
import pathlib

from mammojax.data import annotations as annotations_lib
from mammojax.data import synthetic
from mammojax.data.builders import calcification_graphs
from mammojax.data.builders import graph_examples
from mammojax import methods
from mammojax.training import checkpoints
from mammojax.training import loop
from mammojax.training import writers
import jax
import optax

from configs import mtgcn as mtgcn_config


def make_dataset(out: str, *, num_images: int, seed: int, **overrides) -> str:
  """Writes small synthetic DICOMs + annotations.json; returns the json."""
  config = dataclasses.replace(
      synthetic.SyntheticConfig(), breast_scale=0.5, **overrides)
  synthetic.write_dataset(out, config, num_images, seed, None, workers=1,
                          progress=False)
  return os.path.join(out, "annotations.json")


def examples_of(annotations_path: str):
  """Graph examples + info of a DICOM folder (the folder builder's path)."""
  data = annotations_lib.load_annotations(annotations_path)
  vocabularies = {k: list(v) for k, v in data["vocabularies"].items()}
  root = pathlib.Path(annotations_path).parent
  results = [
      graph_examples.examples_from_image(
          root / entry["file"], entry, vocabularies,
          graph_examples.CalcGraphConfig(name="test"), where=entry["image_id"])
      for entry in data["images"]
  ]
  examples, report = calcification_graphs.summarise(results, vocabularies)
  return ([ex for _, ex in examples],
          {"vocabularies": vocabularies, "build_report": report})


def train_tiny_run(workdir: str, annotations_path: str):
  """Trains the MT-GCN test config for one epoch; returns the config."""
  config = mtgcn_config.get_config("test")
  config.dataset.name = "dicom_folder_calcifications"
  config.num_epochs = 1
  config.num_devices = 1
  config.num_report_graphs = 0
  # Smaller than the test variant: one GENConv layer, no GradNorm (the
  # predict tests need a trained checkpoint, not a good model; this keeps
  # the one compilation of the train step short).
  config.model.num_layers = 1
  config.gradnorm.enabled = False
  loop.train_and_evaluate(
      config, workdir, examples_and_info=examples_of(annotations_path))
  return config


def checkpointed_run(workdir: str, annotations_path: str, *, config=None):
  """A workdir as ``train_and_evaluate`` leaves it, from the initial state.

  Returns:
    The config.
  """
  if config is None:
    config = mtgcn_config.get_config("test")
    config.dataset.name = "dicom_folder_calcifications"
    config.num_devices = 1
    config.model.num_layers = 1  # One compilation per budget: keep it short.
  method = methods.get_method(config)
  data = method.create_data(config, num_devices=1,
                            examples_and_info=examples_of(annotations_path))
  model = method.create_model(config, data.vocabularies)
  task = method.create_task(config, model, data)
  gradnorm_tx = (optax.adam(config.gradnorm.learning_rate)
                 if loop.gradnorm_enabled(config, len(task.task_names))
                 else None)
  state = loop.create_train_state(
      config, model, task,
      next(iter(data.batches(list(range(len(data.examples)))))),
      jax.random.key(0), gradnorm_tx, {})
  checkpointer = checkpoints.Checkpointer(workdir)
  checkpointer.save_best(3, jax.device_get(state), {"epoch": 0})
  checkpointer.close()
  writers.write_json(os.path.join(workdir, "results.json"), {
      "config": config.to_dict(),
      "vocabularies": {k: list(v) for k, v in data.vocabularies.items()},
  })
  return config


class _Counts:
  """What ``create_task`` of an image method reads of its data."""

  def class_counts(self, split, field):
    del split, field
    import numpy as np  # pylint: disable=g-import-not-at-top
    return np.ones(5, np.int64)


def checkpointed_image_run(workdir: str, config, vocabularies=None,
                           image_shape=None):
  """A workdir of an image method (luminal, CNN baseline), initial state.

  Args:
    workdir: where to write it.
    config: the run's config (its ``batch_size`` x the builder's image size
      is the init batch).
    vocabularies: written to results.json.
    image_shape: the model input (default: the builder's image size).

  Returns:
    The config.
  """
  import numpy as np  # pylint: disable=g-import-not-at-top
  from mammojax.inference import datasets  # pylint: disable=g-import-not-at-top
  method = methods.get_method(config)
  model = method.create_model(config, vocabularies or {})
  task = method.create_task(config, model, _Counts())
  size = image_shape
  if size is None:
    built = datasets.builder_config(config.dataset, "image_size")
    size = tuple(config.dataset.get("image_size") or built.image_size)
  batch = {"image": np.zeros((config.batch_size,) + size, np.uint8),
           "mask": np.ones((config.batch_size,), bool)}
  state = loop.create_train_state(config, model, task, batch,
                                  jax.random.key(0), None, {})
  checkpointer = checkpoints.Checkpointer(workdir)
  checkpointer.save_best(2, jax.device_get(state), {"epoch": 0})
  checkpointer.close()
  writers.write_json(os.path.join(workdir, "results.json"), {
      "config": config.to_dict(), "vocabularies": vocabularies or {}})
  return config

"""The methods: one module per paper, picked by ``config.method``.

A method module holds what ``training.loop.train_and_evaluate`` needs from
one paper, as plain functions (the loop's hooks):

* ``create_data(config, *, num_devices, examples_and_info)`` -> data with
  ``train_batches(epoch, num_devices=, process_index=, process_count=)``,
  ``eval_batches(split, ...)`` (the same keywords: this process's part of
  each global step), ``splits``, ``vocabularies`` and ``info``;
* ``create_model(config, vocabularies)`` -> the linen model;
* ``create_task(config, model, data)`` -> the loss definition, a
  ``training.steps.Task``;
* ``class_names(data, task)`` -> class names of one task head;
* ``num_items(batch)`` -> real (non-padding) training items in a host batch;
* ``write_report(workdir, config, data, results, raw_outputs, state)`` ->
  figures and ``report.md`` at the end of a run;
* optional ``validate_config(config)``: raises on out-of-range values before
  any work (``training.validation``);
* optional ``adapt_initial_state(config, state)`` -> state: runs on the
  freshly initialised state of a new run (not on a resumed one), e.g. to load
  pretrained weights;
* optional ``predict_images(run, sources, *, timer, annotations,
  detector_overrides, progress)`` -> one ``inference.results.
  ImagePrediction`` per DICOM path of ``sources``, in order: the method's
  prediction on new files for ``python -m mammojax.predict``. ``run`` is the
  restored run (``inference.run.Run``: config, vocabularies, best
  variables); ``timer`` times the stages (ingestion, detection, graphs,
  model); ``annotations`` (an ``inference.calcifications.AnnotationIndex``
  or None) replaces calcification detection; bad inputs become predictions
  with a status (``inference.results``), never exceptions. Shared parts
  (ingestion, calcifications, outputs, SR) live in ``mammojax.inference``
  and ``mammojax.reporting``; a method without the hook is a clear error of
  the predict command naming it.

Every method shares the loop, the steps, checkpoints, metrics and writers;
no method module imports another (shared code lives in ``data/``,
``models/``, ``objectives/``, ``reporting/`` and ``training/``).
"""

import importlib
import types

import ml_collections

METHODS = {
    "mtgcn": "mammojax.methods.mtgcn",
    "cnn_baseline": "mammojax.methods.cnn_baseline",
    "luminal": "mammojax.methods.luminal",
    "rmcg": "mammojax.methods.rmcg",
    "diagnet": "mammojax.methods.diagnet",
    "daegcn": "mammojax.methods.daegcn",
}

HOOKS = (
    "create_data", "create_model", "create_task", "class_names", "num_items",
    "write_report",
)


def get_method(config: ml_collections.ConfigDict) -> types.ModuleType:
  """The module of ``config.method``.

  Raises:
    ValueError: ``config.method`` is missing or names no method.
  """
  name = config.get("method")
  if name not in METHODS:
    raise ValueError(
        f"config.method={name!r}: expected one of {sorted(METHODS)}"
    )
  return importlib.import_module(METHODS[name])

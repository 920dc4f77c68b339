"""A trained run restored for prediction: config, vocabularies, best weights.

``load_run(workdir)`` reads ``workdir/results.json`` (the config of the run
and the label vocabularies its heads index; written at the end of every
training run) and the best checkpoint (``training.checkpoints``). The
weights are checked against the model the config builds
(``check_variables``) before use, so a workdir from another version of the
model (another parameter tree) is a clear error naming the checkpoint, not
a shape error deep inside JAX.
"""

import dataclasses
import hashlib
import json
import os
import types
from typing import Any

import jax
import ml_collections
import numpy as np

import mammojax
from mammojax import methods as methods_lib
from mammojax.data import vocab as vocab_lib
from mammojax.training import checkpoints

PREDICT_HOOK = "predict_images"
# Vocabulary families of runs whose results.json predates the
# "vocabularies" entry (dataset name prefix -> vocab.VOCABULARIES key).
_VOCAB_FAMILIES = (
    ("synthetic", "synthetic"), ("dicom_folder", "synthetic"),
    ("cbis_ddsm", "cbis_ddsm"),
)


class RunError(ValueError):
  """A workdir that cannot be used for prediction (names the path)."""


@dataclasses.dataclass
class Run:
  """A restored run.

  Attributes:
    workdir: the run's folder.
    config: its ``ml_collections`` config (from ``results.json``).
    vocabularies: label vocabularies (field -> class names).
    variables: ``{'params': ..., **model_state}`` of the best checkpoint.
    step: training step of the best checkpoint.
    checkpoint_path: the best checkpoint's folder.
    method: the method module of ``config.method``.
    config_hash: first 16 hex digits of the SHA-256 of the config (sorted
      JSON).
  """

  workdir: str
  config: ml_collections.ConfigDict
  vocabularies: dict[str, list[str]]
  variables: Any
  step: int
  checkpoint_path: str
  method: types.ModuleType
  config_hash: str

  def model_facts(self) -> dict[str, Any]:
    """The ``model`` block of findings.json."""
    return {
        "workdir": os.path.abspath(self.workdir),
        "method": self.config.method,
        "dataset": self.config.dataset.name,
        "config_hash": self.config_hash,
        "checkpoint_step": self.step,
        "checkpoint": self.checkpoint_path,
        "mammojax_version": mammojax.__version__,
    }


def config_hash(config_dict: dict[str, Any]) -> str:
  """Short stable hash of a config dict."""
  text = json.dumps(config_dict, sort_keys=True, default=str)
  return hashlib.sha256(text.encode()).hexdigest()[:16]


def _vocabularies(results: dict[str, Any], config, path: str):
  vocabularies = results.get("vocabularies")
  if vocabularies:
    return {k: list(v) for k, v in vocabularies.items()}
  name = str(config.dataset.name)
  for prefix, family in _VOCAB_FAMILIES:
    if name.startswith(prefix):
      return {k: list(v) for k, v in vocab_lib.VOCABULARIES[family].items()}
  raise RunError(
      f"{path}: no 'vocabularies' entry and dataset {name!r} has no known "
      "vocabulary; retrain the run with this version of mammojax"
  )


def load_run(workdir: str) -> Run:
  """Restores ``workdir`` for prediction.

  Raises:
    RunError: no results.json, no best checkpoint, or a method without
      the ``predict_images`` hook (each naming the path or the method).
  """
  path = os.path.join(workdir, "results.json")
  if not os.path.isfile(path):
    raise RunError(
        f"--workdir={workdir!r}: {os.path.abspath(path)} not found; expected "
        "the workdir of a finished training run (python -m mammojax.main "
        "--config=... --workdir=...)"
    )
  try:
    with open(path) as f:
      results = json.load(f)
    config_dict = results["config"]
  except (OSError, ValueError, KeyError) as e:
    raise RunError(f"{path}: cannot read the run's config ({e})") from e
  config = ml_collections.ConfigDict(config_dict)
  if config.get("method") not in methods_lib.METHODS:
    raise RunError(
        f"{path}: config.method={config.get('method')!r} is not one of "
        f"{sorted(methods_lib.METHODS)}"
    )
  method = methods_lib.get_method(config)
  if not hasattr(method, PREDICT_HOOK):
    with_hook = sorted(
        name for name in methods_lib.METHODS
        if hasattr(methods_lib.get_method(
            ml_collections.ConfigDict({"method": name})), PREDICT_HOOK)
    )
    raise RunError(
        f"--workdir={workdir!r}: method {config.method!r} has no "
        f"{PREDICT_HOOK} hook, so it cannot predict; methods that can: "
        f"{with_hook}"
    )
  try:
    variables, step, ckpt = checkpoints.restore_best_checkpoint(
        workdir, config_key="--workdir"
    )
  except FileNotFoundError as e:
    raise RunError(str(e)) from e
  except Exception as e:  # pylint: disable=broad-except
    ckpt = os.path.abspath(os.path.join(workdir, "checkpoints", "best"))
    raise RunError(
        f"{ckpt}: the best checkpoint cannot be restored "
        f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
    ) from e
  return Run(
      workdir=workdir,
      config=config,
      vocabularies=_vocabularies(results, config, path),
      variables=variables,
      step=step,
      checkpoint_path=ckpt,
      method=method,
      config_hash=config_hash(config_dict),
  )


def check_variables(run: Run, model: Any, example_input: Any, **kwargs) -> Any:
  """The run's variables, checked against ``model.init``'s tree.

  Args:
    run: the restored run.
    model: the linen model its config builds.
    example_input: one input batch of the model.
    **kwargs: extra ``model.init`` keywords (e.g. ``train=False``).

  Returns:
    The variables as jax arrays, in the model's tree structure.

  Raises:
    RunError: naming the checkpoint and the first differing entries when
      the saved tree is not the model's (a run of another model version).
  """
  expected = jax.eval_shape(
      lambda: model.init(jax.random.key(0), example_input, **kwargs))
  flat_expected = {
      jax.tree_util.keystr(k): v
      for k, v in jax.tree_util.tree_flatten_with_path(dict(expected))[0]
  }
  flat_saved = {
      jax.tree_util.keystr(k): v
      for k, v in jax.tree_util.tree_flatten_with_path(dict(run.variables))[0]
  }
  problems = []
  for key in sorted(set(flat_expected) | set(flat_saved)):
    if key not in flat_saved:
      problems.append(f"{key} missing")
    elif key not in flat_expected:
      problems.append(f"{key} unexpected")
    elif tuple(np.shape(flat_saved[key])) != tuple(flat_expected[key].shape):
      problems.append(
          f"{key} has shape {tuple(np.shape(flat_saved[key]))}, the model "
          f"expects {tuple(flat_expected[key].shape)}")
  if problems:
    raise RunError(
        f"{run.checkpoint_path}: the checkpoint's parameter tree does not "
        f"match the {run.config.method} model of this mammojax version "
        f"({len(problems)} differences, e.g. {'; '.join(problems[:3])}); "
        "retrain the run with this version"
    )
  treedef = jax.tree_util.tree_structure(dict(expected))
  leaves = [jax.numpy.asarray(flat_saved[k]) for k in flat_expected]
  # flat_expected preserves the flattening order of ``expected``.
  return jax.tree_util.tree_unflatten(treedef, leaves)

"""A tiny method with an auxiliary loss term, for the trainer's tests.

A linear auto-encoder with a classification head on its code: the task head
``label`` is scored with the shared metrics, the reconstruction error
``rec`` is an auxiliary term (weight ``config.rec_weight``), and the
reconstructions are an evaluation output that is not a probability.
"""

import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mammojax.data import pipeline
from mammojax.objectives import losses
from mammojax.reporting import classification
from mammojax.reporting import report as report_lib


def get_config():
  config = ml_collections.ConfigDict()
  config.method = "toy"
  config.seed = 0
  config.dataset = ml_collections.ConfigDict(
      {"name": "toy", "class_balanced": False}
  )
  config.optimizer = "adam"
  config.learning_rate = 1e-2
  config.weight_decay = 0.0
  config.batch_size = 8
  config.num_epochs = 3
  config.early_stopping_patience = 0
  config.selection_metric = "val/loss_rec"
  config.num_devices = 1
  config.log_every_steps = 1
  config.rec_weight = 0.5
  return config


class ToyData(pipeline.ArrayBatches):

  def __init__(self, config):
    rng = np.random.default_rng(0)
    self.x = rng.normal(size=(48, 6)).astype(np.float32)
    self.y = (self.x[:, 0] > 0).astype(np.int32)
    self.splits = {"train": np.arange(32), "val": np.arange(32, 40),
                   "test": np.arange(40, 48)}
    self.per_device_batch_size = config.batch_size
    self.vocabularies = {"label": ["neg", "pos"]}
    self.info = {"vocabularies": self.vocabularies}

  def epoch_order(self, epoch):
    return np.random.default_rng(epoch).permutation(self.splits["train"])

  def _batch(self, indices, size):
    idx = np.zeros(size, np.int64)
    idx[: len(indices)] = indices
    mask = np.arange(size) < len(indices)
    return {"x": self.x[idx], "label": np.where(mask, self.y[idx], -1),
            "mask": mask}


class AutoEncoder(nn.Module):

  @nn.compact
  def __call__(self, batch, *, train):
    del train
    code = nn.Dense(3, name="encoder")(batch["x"])
    return {"logits": nn.Dense(2, name="head")(code),
            "rec": nn.Dense(6, name="decoder")(code)}


class ToyTask:
  task_names = ("label",)
  aux_names = ("rec",)

  def __init__(self, model, rec_weight):
    self.model = model
    self.aux_weights = (rec_weight,)

  def _valid(self, batch):
    return jnp.logical_and(batch["mask"], batch["label"] >= 0)

  def normalisers(self, batch):
    n = jnp.sum(batch["mask"].astype(jnp.float32))
    return jnp.stack([jnp.sum(self._valid(batch).astype(jnp.float32)),
                      n * batch["x"].shape[-1]])

  def loss_sums(self, params, model_state, batch, rng, *, train):
    out = self.model.apply({"params": params}, batch, train=train)
    ce, _ = losses.cross_entropy_terms(
        out["logits"], batch["label"], self._valid(batch)
    )
    err = jnp.square(out["rec"] - batch["x"]) * batch["mask"][:, None]
    return jnp.stack([jnp.sum(ce), jnp.sum(err)]), (model_state, out)

  def eval_outputs(self, outputs, batch):
    return {"label_probs": jax.nn.softmax(outputs["logits"]),
            "label_labels": batch["label"], "label_mask": batch["mask"],
            "reconstruction": outputs["rec"]}


def create_data(config, *, num_devices, examples_and_info):
  del num_devices, examples_and_info
  return ToyData(config)


def create_model(config, vocabularies):
  del config, vocabularies
  return AutoEncoder()


def create_task(config, model, data):
  del data
  return ToyTask(model, config.rec_weight)


def class_names(data, task):
  return data.vocabularies[task]


def num_items(batch):
  return int(np.sum(batch["mask"]))


def write_report(workdir, config, data, results, raw_outputs, state):
  del config, data, state
  np.save(os.path.join(workdir, "reconstruction_test.npy"),
          raw_outputs["test"]["reconstruction"])
  report_lib.write_markdown_report(
      os.path.join(workdir, "report.md"),
      {"title": "toy", "tasks": {"label, test": results["test"]["label"]},
       "losses": classification.loss_table(results)},
      {},
  )

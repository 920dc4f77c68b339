"""Knowledge distillation: teachers' soft targets attached to the data.

Teachers are earlier runs of the same command (``configs/mtgcn.py:
teacher_node`` / ``:teacher_graph``). Their ``results.json`` holds the
config and their ``checkpoints/best`` the weights. Each teacher's logits for
every example are computed once (graphs have no random augmentation, so the
soft targets are fixed) and stored as ``nodes['teacher_logits']`` /
``globals['teacher_logits']`` of the samples, where the MT-GCN loss mixes
them with the hard labels (``config.distill.alpha``, temperature
``config.distill.temperature``).
"""

import json
import os
from typing import Any

from absl import logging
import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp


def _load_teacher(workdir: str):
  results_path = os.path.join(workdir, "results.json")
  if not os.path.exists(results_path):
    raise FileNotFoundError(
        f"config.distill.teachers: {results_path} not found; train the "
        "teacher first, e.g. python -m mammojax.main "
        "--config=configs/mtgcn.py:teacher_node --workdir=" + workdir
    )
  with open(results_path) as f:
    config = ml_collections.ConfigDict(json.load(f)["config"])
  manager = ocp.CheckpointManager(
      os.path.abspath(os.path.join(workdir, "checkpoints", "best"))
  )
  step = manager.latest_step()
  if step is None:
    raise FileNotFoundError(
        f"config.distill.teachers: no best checkpoint in {workdir}/checkpoints"
    )
  restored = manager.restore(
      step,
      args=ocp.args.Composite(
          state=ocp.args.StandardRestore(), meta=ocp.args.JsonRestore()
      ),
  )
  manager.close()
  return config, restored.state


def attach_teacher_logits(config: ml_collections.ConfigDict, data: Any) -> None:
  """Computes every teacher's logits and stores them in ``data``'s samples."""
  from mammojax.training import loop  # pylint: disable=g-import-not-at-top

  all_indices = np.arange(len(data.examples))
  attached = set()
  for workdir in config.distill.teachers:
    t_config, t_state = _load_teacher(workdir)
    model = loop.create_model(t_config, data.vocabularies)
    missing = set(t_config.graph.types) - set(config.graph.types)
    if missing:
      raise ValueError(
          f"config.distill.teachers: teacher {workdir} uses graph types "
          f"{sorted(missing)} that config.graph.types lacks"
      )
    variables = {"params": t_state["params"], **t_state["model_state"]}
    apply = jax.jit(lambda v, b: model.apply(v, b, train=False))
    node_logits, graph_logits = [], []
    for batch in data.batches(all_indices):
      out = jax.device_get(apply(variables, batch))
      first = batch[config.graph.types[0]]
      if "node_logits" in out:
        node_logits.append(np.asarray(out["node_logits"])[first.nodes["mask"]])
      if "graph_logits" in out:
        graph_logits.append(
            np.asarray(out["graph_logits"])[first.globals["mask"]]
        )
    sizes = [len(ex["morphology"]) for ex in data.examples]
    bounds = np.cumsum([0] + sizes)
    for task, chunks in (("node", node_logits), ("graph", graph_logits)):
      if not chunks:
        continue
      if task in attached:
        raise ValueError(
            f"config.distill.teachers: two teachers provide the {task} task"
        )
      attached.add(task)
      logits = np.concatenate(chunks).astype(np.float32)
      for i, sample in enumerate(data.sample_graphs):
        first = next(iter(sample.values()))
        if task == "node":
          # The node dict is shared by every graph type of the sample.
          first.nodes["teacher_logits"] = logits[bounds[i] : bounds[i + 1]]
        else:
          for g in sample.values():
            g.globals["teacher_logits"] = logits[i : i + 1]
    logging.info("attached teacher %s (tasks %s)", workdir, t_config.tasks)
  wanted = set(config.tasks)
  if not wanted <= attached:
    logging.warning(
        "config.distill.teachers give soft targets for %s only; tasks %s "
        "train on hard labels", sorted(attached), sorted(wanted - attached),
    )

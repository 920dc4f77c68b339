"""Predict benchmark: images/s of ``python -m mammojax.predict`` on this
machine, split into ingestion, detection, graph building, model and writing
(findings.json, overlay PNG, DICOM SR); prints ONE JSON object.

  python scripts/benchmark_predict.py                # 16 default-size images
  python scripts/benchmark_predict.py --num-images 8 --breast-scale 0.5 \\
      --config=configs/mtgcn.py:test --workdir RUN   # RUN: a trained run

Workload: ``--num-images`` synthetic mammograms written as DICOM files by
``mammojax.data.synthetic.write_dataset`` (the library behind
``python -m mammojax.data.synthesize``; seed ``--seed``), predicted with the
run in ``--workdir`` or, without it, a run of ``--config`` (default
``configs/mtgcn.py``, the default model) saved from its initial state (the
speed does not depend on the weights), once with the run's detector and once
with ``--annotations`` (ground-truth calcifications, no detection). Each
pass runs twice in one process; the second (warm: compilations done) is
reported, with the first one's total as ``cold_seconds``.
"""

import argparse
import dataclasses
import json
import os
import pathlib
import platform
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import optax  # pylint: disable=g-import-not-at-top,wrong-import-position

from mammojax import methods  # pylint: disable=g-import-not-at-top,wrong-import-position
from mammojax import predict  # pylint: disable=g-import-not-at-top,wrong-import-position
from mammojax.data import annotations as annotations_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from mammojax.data import synthetic  # pylint: disable=g-import-not-at-top,wrong-import-position
from mammojax.data.builders import calcification_graphs  # pylint: disable=g-import-not-at-top,wrong-import-position
from mammojax.data.builders import graph_examples  # pylint: disable=g-import-not-at-top,wrong-import-position
from mammojax.training import checkpoints  # pylint: disable=g-import-not-at-top,wrong-import-position
from mammojax.training import loop  # pylint: disable=g-import-not-at-top,wrong-import-position
from mammojax.training import writers  # pylint: disable=g-import-not-at-top,wrong-import-position


def _load_config(spec: str):
  path, _, variant = spec.partition(":")
  import importlib.util  # pylint: disable=g-import-not-at-top
  module_spec = importlib.util.spec_from_file_location("_bench_cfg", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(variant) if variant else module.get_config()


def initial_run(workdir: str, config, annotations_path: str) -> None:
  """A workdir like a finished run's, from the initial state."""
  data = annotations_lib.load_annotations(annotations_path)
  vocabularies = {k: list(v) for k, v in data["vocabularies"].items()}
  root = pathlib.Path(annotations_path).parent
  results = [graph_examples.examples_from_image(
      root / e["file"], e, vocabularies,
      graph_examples.CalcGraphConfig(name="bench"), where=e["image_id"])
             for e in data["images"]]
  examples, report = calcification_graphs.summarise(results, vocabularies)
  method = methods.get_method(config)
  graph = method.create_data(config, num_devices=1, examples_and_info=(
      [ex for _, ex in examples],
      {"vocabularies": vocabularies, "build_report": report}))
  model = method.create_model(config, graph.vocabularies)
  task = method.create_task(config, model, graph)
  tx = (optax.adam(config.gradnorm.learning_rate)
        if loop.gradnorm_enabled(config, len(task.task_names)) else None)
  state = loop.create_train_state(
      config, model, task,
      next(iter(graph.batches(list(range(len(graph.examples)))))),
      jax.random.key(0), tx, {})
  ckpt = checkpoints.Checkpointer(workdir)
  ckpt.save_best(0, jax.device_get(state), {"epoch": 0})
  ckpt.close()
  writers.write_json(os.path.join(workdir, "results.json"), {
      "config": config.to_dict(), "vocabularies": vocabularies})


def _pass(workdir, out, data, annotations):
  summaries = []
  for _ in range(2):
    summaries.append(predict.run_predict(
        workdir, out, [data], annotations=annotations, progress=False))
  cold, warm = summaries
  stages = warm["stage_seconds"]
  n = warm["inputs"]
  writing = warm["output_seconds"]
  return {
      "images": n,
      "statuses": warm["statuses"],
      "images_per_second": n / warm["seconds_total"],
      "seconds_total": warm["seconds_total"],
      "cold_seconds": cold["seconds_total"],
      "ms_per_image": {
          **{k: round(1000 * v / n, 1) for k, v in stages.items()},
          **{f"write_{k}": round(1000 * v / n, 1) for k, v in writing.items()},
      },
      "restore_seconds": warm["restore_seconds"],
      "images_per_second_without_writing": n / max(sum(stages.values()),
                                                   1e-9),
  }


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--num-images", type=int, default=16)
  parser.add_argument("--breast-scale", type=float, default=1.0)
  parser.add_argument("--seed", type=int, default=7)
  parser.add_argument("--config", default="configs/mtgcn.py")
  parser.add_argument("--workdir", default="")
  parser.add_argument("--tmp", default="")
  args = parser.parse_args(argv)
  tmp = args.tmp or tempfile.mkdtemp(prefix="mammojax_bench_predict_")
  data = os.path.join(tmp, "data")
  start = time.perf_counter()
  gen = dataclasses.replace(synthetic.SyntheticConfig(),
                            breast_scale=args.breast_scale)
  synthetic.write_dataset(data, gen, args.num_images, args.seed, None,
                          workers=1, progress=False)
  annotations = os.path.join(data, "annotations.json")
  synth_seconds = time.perf_counter() - start
  workdir = args.workdir
  config_name = None
  if not workdir:
    workdir = os.path.join(tmp, "run")
    if not os.path.exists(os.path.join(workdir, "results.json")):
      config = _load_config(args.config)
      config.dataset.name = "dicom_folder_calcifications"
      config.num_devices = 1
      initial_run(workdir, config, annotations)
    config_name = args.config
  first = json.load(open(os.path.join(workdir, "results.json")))["config"]
  image_shape = None
  with open(annotations) as f:
    entry = json.load(f)["images"][0]
    image_shape = [entry["rows"], entry["columns"]]
  result = {
      "benchmark": "predict",
      "config": config_name or "(trained run)",
      "workdir": workdir,
      "model": {k: first["model"].get(k) for k in ("hidden_size", "num_layers")},
      "batch_size": first["batch_size"],
      "image_shape_example": image_shape,
      "breast_scale": args.breast_scale,
      "synthesis_seconds": synth_seconds,
      "detector": _pass(workdir, os.path.join(tmp, "out_detector"), data,
                        None),
      "annotations": _pass(workdir, os.path.join(tmp, "out_annotations"),
                           data, annotations),
      "device": str(jax.devices()[0].device_kind),
      "platform": jax.devices()[0].platform,
      "cpu_count": os.cpu_count(),
      "machine": platform.machine(),
  }
  print(json.dumps(result, indent=2))
  return 0


if __name__ == "__main__":
  sys.exit(main())

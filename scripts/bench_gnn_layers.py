"""Graph layer benchmark: mammojax vs PyG, forward + backward (one JSON).

  python scripts/benchmark.py --layers [--steps 20 --warmup 3]
  python scripts/bench_gnn_layers.py --num_nodes 4000 --num_edges 40000

Standard random workload (fixed seed): N = 4000 nodes, E = 40 000 random
directed edges (duplicates and self-loops as drawn, ~0.1 % isolated nodes),
64 input and 64 output channels, float32. Layers (the same hyper-parameters
on both sides; weights copied through ``params_from_torch_state_dict``):
``GCNConv(64, 64)``, ``GATConv(64, 16, heads=4)`` (concat -> 64),
``GCN2Conv(64, alpha=0.1, theta=0.5, layer=1)``, ``NNConv(64, 64,
Sequential(Linear(4, 16), ReLU, Linear(16, 64 * 64)), aggr='mean')`` on
4-d edge features (its per-edge 64 x 64 weight makes it the heavy one) and
``AttentionalAggregation(Sequential(Linear(64, 32), ReLU, Linear(32, 1)))``
over 64 graphs. One step = forward + backward of ``sum(out * cot)`` w.r.t.
the parameters and the node features: ``jax.jit(value_and_grad)`` on the
mammojax side (compile reported apart), eager torch (``set_num_threads``)
on the PyG side. Median step time over ``steps`` after ``warmup``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np


def _workload(num_nodes, num_edges, channels, seed):
  rng = np.random.default_rng(seed)
  s = rng.integers(0, num_nodes, num_edges).astype(np.int32)
  r = rng.integers(0, num_nodes, num_edges).astype(np.int32)
  x = rng.normal(size=(num_nodes, channels)).astype(np.float32)
  x0 = rng.normal(size=(num_nodes, channels)).astype(np.float32)
  ea = rng.normal(size=(num_edges, 4)).astype(np.float32)
  cot = rng.normal(size=(num_nodes, channels)).astype(np.float32)
  graph_ids = np.sort(rng.integers(0, 64, num_nodes)).astype(np.int32)
  cot_pool = rng.normal(size=(64, channels)).astype(np.float32)
  return dict(s=s, r=r, x=x, x0=x0, ea=ea, cot=cot, graph_ids=graph_ids,
              cot_pool=cot_pool)


def _median_ms(fn, steps, warmup):
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(steps):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  return 1000 * statistics.median(times)


def _layers(channels):
  """name -> (torch module factory, mammojax module, converter name, call)."""
  import torch  # pylint: disable=g-import-not-at-top
  import torch_geometric.nn as pyg  # pylint: disable=g-import-not-at-top

  from mammojax.models import gnn  # pylint: disable=g-import-not-at-top

  c = channels
  return {
      "gcn": (lambda: pyg.GCNConv(c, c), gnn.GCNConv(c), "gcn_conv",
              lambda m, w: m(w["x"], w["ei"]),
              lambda m, v, w: m.apply(v, w["x"], w["s"], w["r"])),
      "gat": (lambda: pyg.GATConv(c, c // 4, heads=4),
              gnn.GATConv(c // 4, heads=4), "gat_conv",
              lambda m, w: m(w["x"], w["ei"]),
              lambda m, v, w: m.apply(v, w["x"], w["s"], w["r"])),
      "gcnii": (lambda: pyg.GCN2Conv(c, alpha=0.1, theta=0.5, layer=1),
                gnn.GCN2Conv(c, alpha=0.1, theta=0.5, layer=1), "gcn2_conv",
                lambda m, w: m(w["x"], w["x0"], w["ei"]),
                lambda m, v, w: m.apply(v, w["x"], w["x0"], w["s"], w["r"])),
      "nnconv": (lambda: pyg.NNConv(c, c, torch.nn.Sequential(
          torch.nn.Linear(4, 16), torch.nn.ReLU(),
          torch.nn.Linear(16, c * c)), aggr="mean"),
                 gnn.NNConv(c, edge_hidden=(16,), aggr="mean"), "nn_conv",
                 lambda m, w: m(w["x"], w["ei"], w["ea"]),
                 lambda m, v, w: m.apply(v, w["x"], w["s"], w["r"],
                                         w["ea"])),
      "attention_pool": (lambda: pyg.AttentionalAggregation(
          torch.nn.Sequential(torch.nn.Linear(c, 32), torch.nn.ReLU(),
                              torch.nn.Linear(32, 1))),
                         gnn.AttentionalAggregation(gate_features=(32, 1)),
                         "attentional_aggregation",
                         lambda m, w: m(w["x"], w["gid"], dim_size=64),
                         lambda m, v, w: m.apply(v, w["x"], w["gid"], 64)),
  }


def run_layer_benchmark(
    *, num_nodes: int = 4000, num_edges: int = 40000, channels: int = 64,
    steps: int = 20, warmup: int = 3, pyg_threads: int = 2, seed: int = 0,
    layers: Optional[Sequence[str]] = None,
) -> dict[str, Any]:
  """Times every layer on both sides; returns the JSON-able result."""
  import torch  # pylint: disable=g-import-not-at-top

  from mammojax.models import gnn  # pylint: disable=g-import-not-at-top

  torch.set_num_threads(pyg_threads)
  torch.manual_seed(seed)
  w = _workload(num_nodes, num_edges, channels, seed)
  tw = {"x": torch.from_numpy(w["x"]).requires_grad_(True),
        "x0": torch.from_numpy(w["x0"]).requires_grad_(True),
        "ei": torch.from_numpy(np.stack([w["s"], w["r"]]).astype(np.int64)),
        "ea": torch.from_numpy(w["ea"]),
        "gid": torch.from_numpy(w["graph_ids"].astype(np.int64))}
  out = {"workload": {"num_nodes": num_nodes, "num_edges": num_edges,
                      "channels": channels, "steps": steps,
                      "warmup": warmup, "pyg_threads": pyg_threads,
                      "jax_devices": [str(d) for d in jax.devices()]},
         "layers": {}}
  specs = _layers(channels)
  for name in layers or specs:
    make_t, mod, conv_name, call_t, call_j = specs[name]
    tmod = make_t()
    variables = gnn.params_from_torch_state_dict(
        {k: v.detach().numpy() for k, v in tmod.state_dict().items()},
        module=conv_name)
    cot = w["cot_pool"] if name == "attention_pool" else w["cot"]
    cot_t = torch.from_numpy(cot)

    def torch_step():
      for p in list(tmod.parameters()) + [tw["x"], tw["x0"]]:
        p.grad = None
      (call_t(tmod, tw) * cot_t).sum().backward()

    jw = {k: jnp.asarray(w[k]) for k in ("s", "r", "x", "x0", "ea")}
    jw["gid"] = jnp.asarray(w["graph_ids"])

    def loss(params, x, x0):
      return jnp.sum(call_j(mod, {"params": params}, {**jw, "x": x,
                                                      "x0": x0}) * cot)

    step = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))

    def jax_step():
      jax.block_until_ready(step(variables["params"], jw["x"], jw["x0"]))

    t = time.perf_counter()
    jax_step()
    compile_s = time.perf_counter() - t
    # Interleave the two sides (alternating blocks) against machine drift.
    jax_ms, torch_ms = [], []
    for _ in range(2):
      jax_ms.append(_median_ms(jax_step, steps // 2 or 1, warmup))
      torch_ms.append(_median_ms(torch_step, steps // 2 or 1, warmup))
    j, p = statistics.median(jax_ms), statistics.median(torch_ms)
    out["layers"][name] = {"mammojax_ms": round(j, 3),
                           "pyg_ms": round(p, 3),
                           "speedup_vs_pyg": round(p / j, 3),
                           "mammojax_compile_s": round(compile_s, 2)}
  out["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
  return out


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--num_nodes", type=int, default=4000)
  parser.add_argument("--num_edges", type=int, default=40000)
  parser.add_argument("--channels", type=int, default=64)
  parser.add_argument("--steps", type=int, default=20)
  parser.add_argument("--warmup", type=int, default=3)
  parser.add_argument("--pyg_threads", type=int, default=2)
  parser.add_argument("--indent", type=int, default=None)
  args = parser.parse_args(argv)
  print(json.dumps(run_layer_benchmark(
      num_nodes=args.num_nodes, num_edges=args.num_edges,
      channels=args.channels, steps=args.steps, warmup=args.warmup,
      pyg_threads=args.pyg_threads), indent=args.indent))


if __name__ == "__main__":
  main()

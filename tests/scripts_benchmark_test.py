"""Fast checks of scripts/benchmark.py (tiny workload) and its PyG reference."""

import importlib.util
import json
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mammojax.models import mtgcn as mtgcn_lib

_SCRIPTS = pathlib.Path(__file__).resolve().parent.parent / "scripts"


def _load(name):
  if str(_SCRIPTS) not in sys.path:
    sys.path.insert(0, str(_SCRIPTS))
  spec = importlib.util.spec_from_file_location(
      f"_bench_{name}", _SCRIPTS / f"{name}.py"
  )
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module  # dataclasses look their module up.
  spec.loader.exec_module(module)
  return module


benchmark = _load("benchmark")


def _tiny_spec(**kw):
  return benchmark.WorkloadSpec(
      batch_size=4, num_batches=2, min_nodes=4, max_nodes=9, feature_dim=8,
      hidden=8, num_layers=3, **kw,
  )


def _has_pyg():
  return (
      importlib.util.find_spec("torch") is not None
      and importlib.util.find_spec("torch_geometric") is not None
  )


def test_workload_is_deterministic_and_padded_to_one_budget():
  spec = _tiny_spec()
  a = benchmark.build_workload(spec, seed=3)
  b = benchmark.build_workload(spec, seed=3)
  assert len(a["batches"]) == 2
  budget = a["budget"]
  for x, y in zip(a["batches"], b["batches"]):
    for t in benchmark.GRAPH_TYPES:
      np.testing.assert_array_equal(x[t].senders, y[t].senders)
      np.testing.assert_array_equal(x[t].edges, y[t].edges)
      assert x[t].senders.shape == (budget.n_edge[t],)
      assert x[t].nodes["features"].shape == (budget.n_node, 8)
      assert x[t].nodes["coords"].shape == (budget.n_node, 2)
      assert int(np.asarray(x[t].globals["mask"]).sum()) == 4
    n_real = int(np.asarray(x["knn"].n_node[:4]).sum())
    assert 4 * 4 <= n_real <= 4 * 9
    # Radius edges exist (coords lie in a small disc per graph).
    assert int(np.asarray(x["radius"].n_edge[:4]).sum()) > 0
  assert 0 < a["stats"]["node_fill"] <= 1


def test_run_benchmark_json():
  reference = "pyg" if _has_pyg() else "none"
  result = benchmark.run_benchmark(
      config=None, reference=reference, steps=2, warmup=1, gradnorm="both",
      seed=0, spec=_tiny_spec(), commit_state=True,
  )
  text = json.dumps(result)  # JSON-serialisable.
  assert json.loads(text)["benchmark"] == "mtgcn_standard_workload"
  for key in (
      "train_graphs_per_s", "inference_graphs_per_s", "step_time_ms",
      "compile_s", "num_compilations", "peak_memory", "device", "versions",
      "matmul_gflops", "gradnorm_overhead_pct", "mammojax", "targets",
  ):
    assert key in result, key
  assert result["train_graphs_per_s"] > 0
  assert result["inference_graphs_per_s"] > 0
  st = result["step_time_ms"]
  assert 0 < st["min"] <= st["median"] <= st["max"]
  assert result["compile_s"] >= 0
  assert result["device"]["kind"] == jax.devices()[0].device_kind
  assert result["device"]["count"] >= 1
  assert result["versions"]["jax"] == jax.__version__
  assert result["matmul_gflops"]["jax"] > 0
  assert result["matmul_gflops"]["numpy"] > 0
  assert result["peak_memory"]["bytes"] > 0
  assert isinstance(result["gradnorm_overhead_pct"], float)
  for mode in ("gradnorm", "plain"):
    run = result["mammojax"][mode]
    assert run["loss_is_finite"]
    # With a committed int32-step state: one train and one eval compilation.
    assert run["compilations"]["train_step"] == 1
    assert run["compilations"]["eval_step"] == 1
  weights = result["mammojax"]["gradnorm"]["gradnorm_weights"]
  assert abs(sum(weights) - 2.0) < 1e-4
  if reference == "pyg":
    assert set(result["ratio_mammojax_over_pyg"]) == {"gradnorm", "plain"}
    for mode in ("gradnorm", "plain"):
      assert result["pyg"][mode]["loss_is_finite"]
      assert (
          result["pyg"][mode]["num_params"]
          == result["mammojax"][mode]["num_params"]
      )
      assert result["ratio_mammojax_over_pyg"][mode]["train"] > 0


def test_uncommitted_state_is_counted_as_a_second_compilation():
  result = benchmark.run_benchmark(
      config=None, steps=2, warmup=1, gradnorm="off", seed=0,
      spec=_tiny_spec(), commit_state=False,
  )
  # Python-int step, uncommitted state vs committed batches (make_state).
  assert result["mammojax"]["plain"]["compilations"]["train_step"] == 2
  assert result["targets"]["one_compile_per_budget"] is False


@pytest.mark.skipif(not _has_pyg(), reason="torch_geometric not installed")
@pytest.mark.parametrize("scan", [False, True])
def test_pyg_reference_matches_mammojax_forward(scan):
  """Same weights => same eval logits: the PyG model is the same network."""
  import torch  # pylint: disable=g-import-not-at-top
  from mammojax.models import gnn  # pylint: disable=g-import-not-at-top

  pyg_reference = _load("pyg_reference")
  spec = _tiny_spec(scan=scan)
  work = benchmark.build_workload(spec, seed=1)
  batch = work["batches"][0]
  torch.manual_seed(0)
  tmodel = pyg_reference.PygMTGCN(
      in_features=10, hidden=8, num_layers=3, num_node_classes=4,
      num_graph_classes=5,
  )
  with torch.no_grad():  # Non-trivial t and scale.
    for layer in tmodel.gcn.layers:
      layer.conv.aggr_module.t.fill_(1.3)
      layer.conv.msg_norm.scale.fill_(0.7)
  sd = {k: v.detach().numpy() for k, v in tmodel.state_dict().items()}
  model = benchmark.make_model(spec)
  gcn_vars = gnn.params_from_torch_state_dict(
      {k: v for k, v in sd.items() if k.startswith("gcn.")},
      module="deepgcn", prefix="gcn.", learn_msg_scale=True, scan=model.scan,
  )
  lin = lambda p: {"kernel": sd[p + ".weight"].T, "bias": sd[p + ".bias"]}
  params = {
      "node_encoder": lin("node_encoder"),
      "edge_encoder": lin("edge_encoder"),
      "gcn": gcn_vars["params"],
      "fusion": {"proj": lin("proj")},
      "node_head_0": lin("node_head.0"),
      "node_head_1": lin("node_head.2"),
      "graph_head_0": lin("graph_head.0"),
      "graph_head_1": lin("graph_head.2"),
  }
  init = model.init(jax.random.key(0), batch, train=False)["params"]
  assert jax.tree.structure(init) == jax.tree.structure(params)
  for a, b in zip(jax.tree.leaves(init), jax.tree.leaves(params)):
    assert np.shape(a) == np.shape(b)
  out = model.apply({"params": params}, batch, train=False)
  data = pyg_reference.batch_to_pyg(batch)
  tmodel.eval()
  with torch.no_grad():
    ref = tmodel(data)
  n = data.num_nodes
  np.testing.assert_allclose(
      np.asarray(out["node_logits"])[:n], ref["node_logits"].numpy(),
      rtol=1e-4, atol=1e-5,
  )
  np.testing.assert_allclose(
      np.asarray(out["graph_logits"])[: data.num_graphs],
      ref["graph_logits"].numpy(), rtol=1e-4, atol=1e-5,
  )


@pytest.mark.parametrize("scan", [False, True])
def test_fused_graph_types_match_per_type_gcn(scan):
  """One GCN call over [G * N] nodes == one call per graph type (same
  params, outputs and gradients); the small-K edge encoder is a Dense."""
  spec = _tiny_spec(scan=scan)
  batch = benchmark.build_workload(spec, seed=2)["batches"][0]
  fused = benchmark.make_model(spec).clone(fuse_graph_types=True)
  per_type = fused.clone(fuse_graph_types=False)
  params = fused.init(jax.random.key(0), batch, train=False)["params"]
  assert jax.tree.structure(params) == jax.tree.structure(
      per_type.init(jax.random.key(0), batch, train=False)["params"])

  def loss(model, p):
    out = model.apply({"params": p}, batch, train=False)
    return (jnp.sum(jnp.sin(out["node_logits"]))
            + jnp.sum(jnp.cos(out["graph_logits"]))), out

  grad = jax.jit(jax.value_and_grad(loss, argnums=1, has_aux=True),
                 static_argnums=0)
  (_, out_f), g_f = grad(fused, params)
  (_, out_p), g_p = grad(per_type, params)
  for key in ("node_logits", "graph_logits", "node_embeddings"):
    np.testing.assert_allclose(out_f[key], out_p[key], rtol=1e-5, atol=1e-6)
  for a, b in zip(jax.tree.leaves(g_f), jax.tree.leaves(g_p)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
  # Edge encoder: the factored encoding multiplied out equals a Dense.
  enc = params["edge_encoder"]
  edges = np.asarray(batch["radius"].edges)
  factored = mtgcn_lib.AffineEdgeEncoder(enc["kernel"].shape[1]).apply(
      {"params": enc}, batch["radius"].edges)
  np.testing.assert_allclose(
      factored.materialize(),
      edges @ np.asarray(enc["kernel"]) + np.asarray(enc["bias"]),
      rtol=1e-5, atol=1e-6)


def test_sweep_point_row_and_parse_errors():
  assert benchmark.parse_sweep("8-64:8, 64-256:32") == [(8, 64, 8),
                                                         (64, 256, 32)]
  for bad in ("8-64", "64-8:4", "a-b:3", "8-64:0"):
    with pytest.raises(ValueError, match="--sweep item"):
      benchmark.parse_sweep(bad)
  reference = "pyg" if _has_pyg() else "none"
  hparams = benchmark.hparams_from_config(None)
  hparams["num_classes"] = (4, 5)
  row = benchmark.run_point(
      _tiny_spec(), seed=0, steps=2, warmup=1, hparams=hparams,
      reference=reference, pyg_threads=1,
  )
  json.dumps(row)
  assert (row["min_nodes"], row["max_nodes"], row["batch_size"]) == (4, 9, 4)
  mj = row["mammojax"]
  assert mj["train_graphs_per_s"] > 0 and mj["inference_graphs_per_s"] > 0
  assert mj["compilations"] == 2  # One train + one eval compilation.
  assert mj["peak_bytes"] > 0
  if reference == "pyg":
    inter = row["interleaved_train"]
    assert inter["mammojax_step_ms"] > 0 and inter["pyg_step_ms"] > 0
    ratio = row["ratio_mammojax_over_pyg"]
    assert ratio["train_interleaved"] == pytest.approx(
        inter["pyg_step_ms"] / inter["mammojax_step_ms"], rel=1e-2)

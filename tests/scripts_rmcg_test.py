"""Fast checks of scripts/rmcg_table1.py and the graph layer benchmark."""

import importlib.util
import pathlib
import sys

from mammojax.experiments import rmcg as rmcg_protocol
from mammojax.reporting import rmcg as rmcg_report

_SCRIPTS = pathlib.Path(__file__).resolve().parent.parent / "scripts"


def _load(name):
  if str(_SCRIPTS) not in sys.path:
    sys.path.insert(0, str(_SCRIPTS))
  spec = importlib.util.spec_from_file_location(f"_rmcg_{name}",
                                                _SCRIPTS / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module
  spec.loader.exec_module(module)
  return module


def test_table1_config_and_outputs(tmp_path):
  table1 = _load("rmcg_table1")
  config = table1.make_config("table1", num_epochs=2, folds=["0", "2"],
                              models=["resnet18", "rmcg"])
  assert config.num_epochs == 2
  assert tuple(config.protocol.folds) == (0, 2)
  run = rmcg_protocol.run_config(config, "rmcg", 2)
  assert "protocol" not in run and run.model.name == "rmcg"
  assert run.dataset.fold == 2
  full = table1.make_config("table1")
  assert tuple(full.protocol.models) == table1.rmcg_configs.MODELS
  # The table and the chart from a known summary.
  summary = {m: {k: {"mean": v, "std": 0.01, "values": [v]}
                 for k, v in zip(rmcg_report.METRICS, (0.8, 0.7, 0.6, 0.5))}
             for m in ("resnet18", "rmcg")}
  table = rmcg_report.table_markdown(summary, ("resnet18", "rmcg"))
  assert table.splitlines()[0] == (
      "| Method | Acc. | F1-score | Precision | Recall |")
  assert "| rmcg | 80.00 ± 1.00 | 70.00 ± 1.00 | 60.00 ± 1.00 | 50.00 ± 1.00 |" \
      in table
  png = rmcg_report.plot_table(str(tmp_path / "t1.png"), summary,
                               ("resnet18", "rmcg"))
  assert pathlib.Path(png).read_bytes()[:4] == b"\x89PNG"


def test_layer_benchmark_tiny():
  bench = _load("bench_gnn_layers")
  out = bench.run_layer_benchmark(num_nodes=40, num_edges=120, channels=8,
                                  steps=2, warmup=1, pyg_threads=1)
  assert set(out["layers"]) == {"gcn", "gat", "gcnii", "nnconv",
                                "attention_pool"}
  for row in out["layers"].values():
    assert row["mammojax_ms"] > 0 and row["pyg_ms"] > 0

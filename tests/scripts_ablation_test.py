"""scripts/ablation.py, the command line: flags -> table (no training)."""

import json
import pathlib
import subprocess
import sys

from tests.experiments.ablation_test import _write_fold

_ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_report_only_tabulates_existing_folds(tmp_path):
  _write_fold(tmp_path, "proposed", 0, graph=0.6, node=0.5)
  _write_fold(tmp_path, "proposed", 1, graph=0.8, node=0.7)
  _write_fold(tmp_path, "task_node", 0, node=0.9)  # fold 1 never ran
  run = subprocess.run(
      [sys.executable, str(_ROOT / "scripts" / "ablation.py"),
       f"--workdir={tmp_path}", "--folds=2", "--report_only",
       "--rows=proposed,task_node,knn_only,distill"],
      capture_output=True, text=True, cwd=_ROOT, timeout=600, check=False,
  )
  assert run.returncode == 0, run.stderr[-3000:]
  assert "task_node fold 1: no" in run.stdout
  assert not (tmp_path / "task_node" / "fold1").exists()  # nothing trained
  rows = {
      line.split(" | ")[0].lstrip("| "): line.split(" | ")[2:6]
      for line in (tmp_path / "ablation.md").read_text().splitlines()
      if line.startswith("| ") and "AUC" not in line
  }
  schedules = {
      line.split(" | ")[0].lstrip("| "): line.split(" | ")[1]
      for line in (tmp_path / "ablation.md").read_text().splitlines()
      if line.startswith("| ") and "AUC" not in line
  }
  assert schedules["proposed (multi-task, multi-graph, 8 layers, GradNorm)"
                  ].startswith("default: 30")
  assert rows["proposed (multi-task, multi-graph, 8 layers, GradNorm)"] == [
      "0.700 ± 0.141", "0.710 ± 0.141", "0.600 ± 0.141", "0.610 ± 0.141"]
  # One fold has no sample std (ddof = 1).
  assert rows["task-specific morphology"] == [
      "—", "—", "0.900 (1 fold)", "0.910 (1 fold)"]
  assert rows["single KNN graph"] == ["—"] * 4
  assert rows["knowledge distillation (student of the task-specific rows)"] == [
      "—"] * 4
  assert not (tmp_path / "task_graph").exists()  # no teacher trained
  table = json.loads((tmp_path / "ablation.json").read_text())
  assert table["task_node"]["summary"]["node_auc_ovo"]["folds"] == 1
  assert [f["fold"] for f in table["proposed"]["folds"]] == [0, 1]


def test_unknown_row_is_a_usage_error(tmp_path):
  run = subprocess.run(
      [sys.executable, str(_ROOT / "scripts" / "ablation.py"),
       f"--workdir={tmp_path}", "--rows=proposed,layers_3", "--report_only"],
      capture_output=True, text=True, cwd=_ROOT, timeout=600, check=False,
  )
  assert run.returncode != 0
  assert "--rows: unknown ['layers_3']" in run.stderr

"""Tests for mammojax.experiments.ablation (no real training)."""

import json
import os

from absl.testing import absltest
import numpy as np

from configs import ablation as ablation_config
from configs import mtgcn
from mammojax.experiments import ablation


def _write_fold(workdir, row, fold, graph=None, node=None):
  test = {}
  if graph is not None:
    test["graph"] = {"auc_ovo": graph, "auc_ovr": graph + 0.01}
  if node is not None:
    test["node"] = {"auc_ovo": node, "auc_ovr": node + 0.01}
  path = ablation.fold_workdir(workdir, row, fold)
  os.makedirs(path)
  with open(os.path.join(path, "results.json"), "w") as f:
    json.dump({"test": test}, f)


class FakeTrainer:
  """Records the runs and writes results whose AUCs encode row and fold."""

  AUC = {"task_node": 0.8, "task_graph": 0.7, "distill": 0.6}

  def __init__(self):
    self.calls = []

  def __call__(self, config, workdir):
    self.calls.append((config, workdir))
    fold = config.dataset.fold
    row = os.path.basename(os.path.dirname(workdir))
    auc = self.AUC[row] + 0.01 * fold
    test = {t: {"auc_ovo": auc, "auc_ovr": auc + 0.005} for t in config.tasks}
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "results.json"), "w") as f:
      json.dump({"test": test}, f)
    return {"test": test}


def _config(**protocol):
  config = ablation_config.get_config("test")
  config.protocol.update(protocol)
  return config


class AblationTest(absltest.TestCase):

  def test_mean_std_is_the_sample_std(self):
    mean, std, n = ablation.mean_std([0.6, None, 0.8, float("nan"), 0.7])
    self.assertEqual(n, 3)
    self.assertAlmostEqual(mean, 0.7)
    self.assertAlmostEqual(std, 0.1)  # ddof = 1 (ddof = 0: 0.0816).
    self.assertAlmostEqual(std, np.std([0.6, 0.8, 0.7], ddof=1))
    self.assertEqual(ablation.mean_std([0.9]), (0.9, None, 1))
    self.assertEqual(ablation.mean_std([None]), (None, None, 0))
    self.assertEqual(ablation.format_cell(0.9, None, 1, 2), "0.900 (1 fold)")
    self.assertEqual(ablation.format_cell(0.7, 0.1414, 2, 2), "0.700 ± 0.141")
    self.assertEqual(ablation.format_cell(None, None, 0, 2), "—")

  def test_report_only_tabulates_existing_folds_with_ddof_1(self):
    workdir = self.create_tempdir().full_path
    _write_fold(workdir, "proposed", 0, graph=0.6, node=0.5)
    _write_fold(workdir, "proposed", 1, graph=0.8, node=0.7)
    _write_fold(workdir, "task_node", 0, node=0.9)  # Fold 1 never ran.

    def never(*args, **kwargs):
      raise AssertionError(f"trained {args} {kwargs} under report_only")

    table = ablation.run_protocol(
        _config(rows=("proposed", "task_node", "knn_only"), num_folds=2,
                report_only=True),
        workdir, train_fn=never,
    )
    self.assertEqual(list(table), ["proposed", "task_node", "knn_only"])
    s = table["proposed"]["summary"]
    self.assertAlmostEqual(s["graph_auc_ovo"]["mean"], 0.7)
    self.assertAlmostEqual(s["graph_auc_ovo"]["std"], 0.1 * np.sqrt(2))
    self.assertAlmostEqual(s["node_auc_ovr"]["mean"], 0.61)
    self.assertEqual(s["node_auc_ovo"]["folds"], 2)
    self.assertEqual(table["task_node"]["missing_folds"], [1])
    self.assertEqual(table["task_node"]["summary"]["node_auc_ovo"],
                     {"mean": 0.9, "std": None, "folds": 1})
    self.assertEqual(table["knn_only"]["missing_folds"], [0, 1])
    self.assertEqual(table["proposed"]["paper_auc"],
                     {"distribution": 0.815, "morphology": 0.631})
    with open(os.path.join(workdir, "ablation.json")) as f:
      self.assertEqual(json.load(f), json.loads(json.dumps(table)))
    text = open(os.path.join(workdir, "ablation.md")).read()
    self.assertIn("sample std over folds (ddof = 1)", text)
    sched = "default: 2 epochs, lr 1e-03, early stop 10, hidden 16"
    self.assertIn(f"| task-specific morphology | {sched} | — | — | "
                  "0.900 (1 fold) | 0.910 (1 fold) | — / 0.608 |", text)
    self.assertIn(f"| single KNN graph | {sched} | — | — | — | — | "
                  "0.742 / 0.580 |", text)

  def test_distill_trains_missing_teachers_then_the_student(self):
    workdir = self.create_tempdir().full_path
    train = FakeTrainer()
    config = _config(rows=("distill",), num_folds=3, folds=(0, 2))
    table = ablation.run_protocol(config, workdir, train_fn=train)
    runs = [os.path.relpath(w, workdir) for _, w in train.calls]
    self.assertEqual(runs, [
        "task_node/fold0", "task_graph/fold0", "distill/fold0",
        "task_node/fold2", "task_graph/fold2", "distill/fold2",
    ])
    for c, w in train.calls:
      self.assertEqual(c.dataset.num_folds, 3)
      self.assertEqual(c.dataset.fold, int(w[-1]))
    node, graph, student = (train.calls[i][0] for i in range(3))
    self.assertEqual(node.tasks, ("node",))
    self.assertFalse(node.gradnorm.enabled)
    self.assertEqual(graph.tasks, ("graph",))
    self.assertEqual(node.distill.teachers, ())
    self.assertEqual(student.tasks, ("node", "graph"))
    self.assertEqual(student.distill.teachers, (
        os.path.join(workdir, "task_node", "fold0"),
        os.path.join(workdir, "task_graph", "fold0"),
    ))
    # The row reads like the others: the student's own test AUCs.
    row = table["distill"]
    self.assertEqual([f["fold"] for f in row["folds"]], [0, 2])
    self.assertAlmostEqual(row["summary"]["node_auc_ovo"]["mean"], 0.61)
    self.assertAlmostEqual(row["summary"]["graph_auc_ovr"]["mean"], 0.615)
    self.assertAlmostEqual(row["summary"]["graph_auc_ovo"]["std"],
                           np.std([0.6, 0.62], ddof=1))
    self.assertIn("task_node and task_graph", row["config"])
    text = open(os.path.join(workdir, "ablation.md")).read()
    self.assertIn("| knowledge distillation (student of the task-specific "
                  "rows) | default: 2 epochs, lr 1e-03, early stop 10, "
                  "hidden 16 | 0.610 ± 0.014 | 0.615 ± 0.014 | "
                  "0.610 ± 0.014 | 0.615 ± 0.014 | — / — |", text)
    # Resumable: teachers (now rows of their own) and student are reused.
    again = ablation.run_protocol(
        _config(rows=("task_node", "task_graph", "distill"), num_folds=3,
                folds=(0, 2)),
        workdir, train_fn=train,
    )
    self.assertLen(train.calls, 6)
    self.assertAlmostEqual(
        again["task_node"]["summary"]["node_auc_ovo"]["mean"], 0.81
    )
    self.assertEqual(again["distill"]["summary"], row["summary"])

  def test_distill_under_report_only_trains_no_teacher(self):
    workdir = self.create_tempdir().full_path
    train = FakeTrainer()
    table = ablation.run_protocol(
        _config(rows=("distill",), num_folds=2, report_only=True), workdir,
        train_fn=train,
    )
    self.assertEmpty(train.calls)
    self.assertEqual(table["distill"]["missing_folds"], [0, 1])

  def test_rows_are_the_configs_variants(self):
    config = ablation_config.get_config("default")
    config.protocol.num_folds = 3
    workdir = "/runs/ablation"
    student = ablation.row_config(config, "distill", 1, workdir)
    expected = mtgcn.get_config("student")
    expected.distill.teachers = ("/runs/ablation/task_node/fold1",
                                 "/runs/ablation/task_graph/fold1")
    expected.dataset.num_folds = 3
    expected.dataset.fold = 1
    self.assertEqual(student.to_dict(), expected.to_dict())
    for row, variant in (("task_node", "teacher_node"),
                         ("task_graph", "teacher_graph")):
      teacher = mtgcn.get_config(variant)
      teacher.dataset.num_folds = 3
      teacher.dataset.fold = 1
      self.assertEqual(
          ablation.row_config(config, row, 1, workdir).to_dict(),
          teacher.to_dict(), row,
      )
    baseline = ablation.row_config(config, "resnet18_patch", 0, workdir)
    self.assertEqual(baseline.method, "cnn_baseline")
    self.assertEqual(baseline.baseline.level, "patch")
    self.assertEqual(config.mtgcn.model.num_layers, 8)  # Not changed.

  def test_protocol_overrides_epochs_and_dataset(self):
    config = _config(num_folds=2, num_epochs=5,
                     dataset_builder_config="paper")
    c = ablation.row_config(config, "layers_2", 1, "/w")
    self.assertEqual((c.num_epochs, c.dataset.builder_config,
                      c.model.num_layers), (5, "paper", 2))

  def test_schedule(self):
    config = _config(num_folds=2, schedule="paper")
    c = ablation.row_config(config, "layers_2", 0, "/w")
    self.assertEqual((c.num_epochs, c.learning_rate, c.model.hidden_size,
                      c.early_stopping_patience, c.model.num_layers),
                     (100, 3e-4, 128, 0, 2))
    b = ablation.row_config(config, "resnet18_image", 0, "/w")
    self.assertEqual((b.num_epochs, b.early_stopping_patience), (100, 0))
    self.assertEqual(ablation.schedule_of(config, "proposed"),
                     "paper: 100 epochs, lr 3e-04, hidden 128")
    # --num_epochs still wins over the schedule's epochs.
    config.protocol.num_epochs = 7
    self.assertEqual(ablation.row_config(config, "proposed", 0, "/w")
                     .num_epochs, 7)
    default = _config(num_folds=2)
    self.assertEqual(ablation.row_config(default, "proposed", 0, "/w")
                     .num_epochs, default.mtgcn.num_epochs)
    table = ablation.render_table(
        {"proposed": {"description": "proposed", "schedule": "paper: x",
                      "summary": ablation.summarize([]),
                      "paper_auc": {"distribution": None,
                                    "morphology": None}}}, config)
    self.assertIn("schedule `paper`", table)
    self.assertIn("| proposed | paper: x |", table)
    with self.assertRaisesRegex(ValueError, "config.protocol.schedule='x'"):
      ablation.row_config(_config(schedule="x"), "proposed", 0, "/w")

  def test_rows_groups_and_unknown_names(self):
    self.assertEqual(ablation.expand_rows([]), list(ablation.ROWS))
    self.assertIn("distill", ablation.expand_rows([]))
    self.assertEqual(
        ablation.expand_rows(["proposed", "baselines", "resnet18_image"]),
        ["proposed"] + list(ablation.BASELINE_ROWS),
    )
    self.assertEqual(ablation.expand_rows(["task_node,distill", "proposed"]),
                     ["task_node", "distill", "proposed"])
    self.assertLen(ablation.expand_rows(["all", "proposed"]),
                   len(ablation.ROWS) + len(ablation.BASELINE_ROWS))
    with self.assertRaisesRegex(
        ValueError, r"config.protocol.rows: unknown \['layers_3'\]"
    ):
      ablation.run_protocol(_config(rows=("proposed", "layers_3")),
                            self.create_tempdir().full_path)


if __name__ == "__main__":
  absltest.main()

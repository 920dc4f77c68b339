"""Tests of the config validation run once at the start of every run."""

from absl.testing import absltest
from absl.testing import parameterized
import ml_collections

from configs import cnn_baseline
from configs import luminal
from configs import mtgcn
from mammojax import methods
from mammojax.training import loop
from mammojax.training import validation
from tests.training import fake_data


class ValidationTest(parameterized.TestCase):

  @parameterized.parameters(
      ("graph.knn_k", 0, r"config\.graph\.knn_k=0: expected a value >= 1"),
      ("graph.radius", 0.0, r"config\.graph\.radius=0\.0: expected a value > 0"),
      ("model.dropout", 1.0, r"config\.model\.dropout=1\.0: expected a value "
       r">= 0\.0 and < 1\.0"),
      ("learning_rate", -1e-3, r"config\.learning_rate=-0\.001"),
      ("batch_size", 0, r"config\.batch_size=0"),
      ("optimizer", "lion", r"config\.optimizer='lion': expected one of adam"),
      ("graph.budget", "min", r"config\.graph\.budget='min'"),
      ("selection_metric", "test/mean_auc", r"expected a validation metric"),
  )
  def test_out_of_range_values_stop_the_run_before_any_work(
      self, key, value, message
  ):
    config = mtgcn.get_config("test")
    *path, last = key.split(".")
    target = config
    for p in path:
      target = target[p]
    target[last] = value
    with self.assertRaisesRegex(ValueError, message):
      loop.train_and_evaluate(
          config, self.create_tempdir().full_path,
          examples_and_info=fake_data.make_examples(8),
      )

  def test_fold_must_be_below_num_folds(self):
    config = mtgcn.get_config("test")
    config.dataset.num_folds = 3
    config.dataset.fold = 3
    with self.assertRaisesRegex(
        ValueError, r"config\.dataset\.fold=3: expected a value >= 0 and < 3"
    ):
      validation.validate_config(config, methods.get_method(config))

  def test_types_are_checked(self):
    config = ml_collections.ConfigDict(
        {"graph": {"knn_k": "4", "flag": True, "radius": 1}}
    )
    with self.assertRaisesRegex(
        ValueError, r"config\.graph\.knn_k='4': expected type int"
    ):
      validation.check(config, "graph.knn_k", int, minimum=1)
    with self.assertRaisesRegex(ValueError, r"graph\.flag=True: expected type"):
      validation.check(config, "graph.flag", int)
    self.assertEqual(validation.check(config, "graph.radius", float), 1)
    with self.assertRaisesRegex(ValueError, r"config\.graph\.k is missing"):
      validation.check(config, "graph.k", int)
    self.assertIsNone(validation.check(config, "graph.k", int, required=False))

  def test_every_shipped_config_is_valid(self):
    configs = [mtgcn.get_config(v) for v in
               ("default", "paper", "teacher_node", "teacher_graph",
                "student", "test")]
    configs += [cnn_baseline.get_config(v) for v in
                ("default", "test", "densenet121_patch")]
    protocol = luminal.get_config("protocol")
    configs += [protocol[s] for s in ("pretrain", "transfer", "baseline")]
    self.assertLen(configs, 12)
    for config in configs:
      method = methods.get_method(config)
      self.assertIsNone(validation.validate_config(config, method))
      # The same config with one shared key out of range fails, so the
      # checks really ran on it.
      broken = ml_collections.ConfigDict(config.to_dict())
      broken.batch_size = 0
      with self.assertRaisesRegex(ValueError, r"config\.batch_size=0"):
        validation.validate_config(broken, method)


if __name__ == "__main__":
  absltest.main()

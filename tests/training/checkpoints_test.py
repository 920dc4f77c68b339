"""Tests of the latest / best checkpoints and restoring another run."""

import os

from absl.testing import absltest
import jax.numpy as jnp
import numpy as np

from mammojax.training import checkpoints


def _state(value):
  return {
      "params": {"w": jnp.full((2, 3), value, jnp.float32)},
      "model_state": {"batch_stats": {"mean": jnp.full((3,), value + 1.0)}},
  }


def damage_step(step_dir):
  """Truncates the array data files of a step's state; returns how many."""
  count = 0
  for root, _, files in os.walk(os.path.join(step_dir, "state")):
    if os.path.basename(root) != "d":  # OCDBT data files live in .../d/.
      continue
    for name in files:
      path = os.path.join(root, name)
      with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
      count += 1
  return count


class CheckpointsTest(absltest.TestCase):

  def test_latest_and_best_are_kept_apart_and_restored(self):
    workdir = self.create_tempdir().full_path
    ckpt = checkpoints.Checkpointer(workdir)
    self.assertIsNone(ckpt.restore_latest(checkpoints.abstract_like(_state(0))))
    ckpt.save_best(1, _state(1.0), {"epoch": 0, "best_metric": 0.7})
    ckpt.save_latest(1, _state(1.0), {"epoch": 0})
    ckpt.save_latest(2, _state(2.0), {"epoch": 1})
    ckpt.wait_until_finished()
    latest, meta = ckpt.restore_latest(checkpoints.abstract_like(_state(0)))
    best, best_meta = ckpt.restore_best(checkpoints.abstract_like(_state(0)))
    ckpt.close()
    np.testing.assert_array_equal(latest["params"]["w"], 2.0)
    self.assertEqual(meta["epoch"], 1)
    np.testing.assert_array_equal(best["params"]["w"], 1.0)
    self.assertEqual(best_meta, {"epoch": 0, "best_metric": 0.7})
    # max_to_keep=2: the newest latest step and the one before it.
    ckpt = checkpoints.Checkpointer(workdir)
    ckpt.save_latest(3, _state(3.0), {"epoch": 2})
    ckpt.close()
    self.assertEqual(
        sorted(os.listdir(os.path.join(workdir, "checkpoints", "latest"))),
        ["2", "3"],
    )

  def test_damaged_newest_step_falls_back_and_is_kept(self):
    workdir = self.create_tempdir().full_path
    ckpt = checkpoints.Checkpointer(workdir)
    ckpt.save_latest(1, _state(1.0), {"epoch": 0})
    ckpt.save_latest(2, _state(2.0), {"epoch": 1})
    ckpt.close()
    root = os.path.join(workdir, "checkpoints")
    truncated = damage_step(os.path.join(root, "latest", "2"))
    self.assertGreater(truncated, 0)
    ckpt = checkpoints.Checkpointer(workdir)
    with self.assertLogs(level="WARNING") as logs:
      state, meta = ckpt.restore_latest(checkpoints.abstract_like(_state(0)))
    np.testing.assert_array_equal(state["params"]["w"], 1.0)
    self.assertEqual(meta, {"epoch": 0})
    self.assertEqual(ckpt.restored_latest_step, 1)
    self.assertRegex(
        "\n".join(logs.output),
        r"checkpoint .*checkpoints/latest/2 cannot be restored \(.*\); "
        r"moved it to .*checkpoints/damaged/latest-2",
    )
    # The damaged step is kept, out of the manager (and its clean-up).
    self.assertTrue(os.path.isdir(os.path.join(root, "damaged", "latest-2")))
    # The re-trained step 2 and a step 3 save normally; 1 is collected.
    ckpt.save_latest(2, _state(2.0), {"epoch": 1})
    ckpt.save_latest(3, _state(3.0), {"epoch": 2})
    ckpt.close()
    self.assertEqual(sorted(os.listdir(os.path.join(root, "latest"))),
                     ["2", "3"])
    self.assertTrue(os.path.isdir(os.path.join(root, "damaged", "latest-2")))

  def test_no_readable_step_starts_afresh_with_a_warning(self):
    workdir = self.create_tempdir().full_path
    ckpt = checkpoints.Checkpointer(workdir)
    ckpt.save_latest(1, _state(1.0), {"epoch": 0})
    ckpt.close()
    damage_step(os.path.join(workdir, "checkpoints", "latest", "1"))
    ckpt = checkpoints.Checkpointer(workdir)
    with self.assertLogs(level="WARNING") as logs:
      self.assertIsNone(
          ckpt.restore_latest(checkpoints.abstract_like(_state(0)))
      )
    ckpt.close()
    self.assertIn("TRAINING STARTS FROM SCRATCH", "\n".join(logs.output))

  def test_restore_best_variables_of_another_run(self):
    workdir = self.create_tempdir().full_path
    ckpt = checkpoints.Checkpointer(workdir)
    ckpt.save_best(5, _state(3.0), {"epoch": 4})
    ckpt.close()
    variables = checkpoints.restore_best_variables(
        workdir, config_key="config.init_from"
    )
    self.assertEqual(set(variables), {"params", "batch_stats"})
    np.testing.assert_array_equal(variables["params"]["w"], 3.0)
    np.testing.assert_array_equal(variables["batch_stats"]["mean"], 4.0)

  def test_missing_run_names_the_config_key(self):
    missing = os.path.join(self.create_tempdir().full_path, "nope")
    with self.assertRaisesRegex(
        FileNotFoundError, r"config\.distill\.teachers='.*nope': no best"
    ):
      checkpoints.restore_best_variables(
          missing, config_key="config.distill.teachers"
      )
    os.makedirs(os.path.join(missing, "checkpoints", "best"))
    with self.assertRaisesRegex(FileNotFoundError, "holds no checkpoint"):
      checkpoints.restore_best_variables(missing, config_key="config.x")


if __name__ == "__main__":
  absltest.main()

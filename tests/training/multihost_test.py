"""Two processes through the real command reproduce one process, 2 devices.

Two ``python -m mammojax.main --config.multihost=True`` processes with one
CPU device each (``JAX_COORDINATOR_ADDRESS`` / ``JAX_NUM_PROCESSES`` /
``JAX_PROCESS_ID``, gloo collectives) train on their halves of every global
step; the final parameters must equal those of one process that pmaps the
same global batch over 2 host devices, also after one process is killed and
the same command is run again (both processes restore the checkpoint).
"""

import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from absl.testing import absltest
import jax
import numpy as np
import orbax.checkpoint as ocp

from configs import mtgcn
from mammojax.training import loop

_ROOT = pathlib.Path(__file__).resolve().parents[2]
# Parameters of two processes vs one (2 epochs x 2 steps of the test config).
_ATOL = 1e-5


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _latest_params(workdir: str):
  """Step and params of the newest latest checkpoint of ``workdir``."""
  path = os.path.join(workdir, "checkpoints", "latest")
  with ocp.CheckpointManager(path) as manager:
    step = manager.latest_step()
    restored = manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore())
    )
  return step, jax.tree_util.tree_map(np.asarray, restored.state["params"])


def _launch(workdir: str, port: int, process_id: int, log_path: str,
            flags: tuple[str, ...]):
  # The reference run of setUpClass built the dataset next to the workdirs.
  data_dir = os.path.join(os.path.dirname(workdir), "data")
  env = dict(os.environ)
  env.update(
      JAX_PLATFORMS="cpu",
      XLA_FLAGS="",  # One CPU device per process.
      JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
      JAX_NUM_PROCESSES="2",
      JAX_PROCESS_ID=str(process_id),
      PYTHONPATH=os.pathsep.join(
          [str(_ROOT)] + [p for p in [env.get("PYTHONPATH")] if p]
      ),
  )
  command = [
      sys.executable, "-m", "mammojax.main",
      "--config=configs/mtgcn.py:test", f"--workdir={workdir}",
      "--config.multihost=True", "--config.num_devices=1",
      f"--config.dataset.data_dir={data_dir}",
      *flags,
  ]
  log = open(log_path, "w")
  return subprocess.Popen(
      command, cwd=_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
  ), log


def _max_param_diff(workdir_a: str, workdir_b: str) -> tuple[int, float]:
  step_a, params_a = _latest_params(workdir_a)
  step_b, params_b = _latest_params(workdir_b)
  if step_a != step_b:
    raise AssertionError(f"latest steps differ: {step_a} vs {step_b}")
  diffs = jax.tree_util.tree_leaves(
      jax.tree_util.tree_map(
          lambda a, b: np.max(np.abs(a - b)), params_a, params_b
      )
  )
  return step_a, float(max(diffs))


class MultihostTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.root = pathlib.Path(tempfile.mkdtemp(prefix="multihost_test_"))
    # Reference: one process, the same global batch over 2 host devices
    # (also builds the TFDS dataset that the processes then read).
    config = mtgcn.get_config("test")
    config.num_devices = 2
    config.dataset.data_dir = str(cls.root / "data")
    cls.reference = loop.train_and_evaluate(config, str(cls.root / "one"))

  @classmethod
  def tearDownClass(cls):
    shutil.rmtree(cls.root, ignore_errors=True)
    super().tearDownClass()

  def _run_two(self, name: str, *flags: str) -> tuple[str, list[str], float]:
    """Runs the two processes; returns the workdir, their logs, seconds."""
    workdir = str(self.root / name)
    start = time.time()
    port = _free_port()
    logs = [str(self.root / f"{name}_{len(flags)}_{i}.log") for i in range(2)]
    launched = [_launch(workdir, port, i, logs[i], flags) for i in range(2)]
    codes = []
    for process, log in launched:
      try:
        codes.append(process.wait(timeout=600))
      finally:
        log.close()
    seconds = time.time() - start
    texts = [pathlib.Path(p).read_text() for p in logs]
    for i, code in enumerate(codes):
      self.assertEqual(code, 0, f"process {i}:\n{texts[i][-3000:]}")
    return workdir, texts, seconds

  def test_two_processes_match_one_process_with_two_devices(self):
    self.assertGreaterEqual(jax.local_device_count(), 2)
    workdir, logs, seconds = self._run_two("two")
    print(f"two-process run: {seconds:.1f} s")
    # One results.json, written by process 0, over the whole splits.
    self.assertIn("results written to", logs[0])
    self.assertNotIn("results written to", logs[1])
    two = json.loads(pathlib.Path(workdir, "results.json").read_text())
    reference = self.reference
    self.assertEqual(two["timing"]["processes"], 2)
    self.assertEqual(two["timing"]["devices"], 2)
    self.assertEqual(two["splits"], reference["splits"])
    self.assertEqual(two["meta"], reference["meta"])
    for split in ("val", "test"):
      for task in ("node", "graph"):
        self.assertEqual(two[split][task]["num_samples"],
                         reference[split][task]["num_samples"])
      np.testing.assert_allclose(
          two[split]["loss"], reference[split]["loss"], rtol=1e-5
      )
    step, max_diff = _max_param_diff(str(self.root / "one"), workdir)
    print(f"max |params 2 processes - 1 process x 2 devices|: {max_diff:.3g}")
    self.assertEqual(step, 4)  # 2 epochs x 2 global steps.
    self.assertLess(max_diff, _ATOL)

  def test_killed_process_then_resume(self):
    # Kill process 1 (SIGKILL) once the epoch-0 checkpoint is on disk;
    # process 0 then cannot finish its collectives and is killed too. The
    # same command then resumes both from that checkpoint.
    workdir = str(self.root / "killed")
    port = _free_port()
    logs = [str(self.root / f"killed_{i}.log") for i in range(2)]
    launched = [_launch(workdir, port, i, logs[i], ()) for i in range(2)]
    saved = pathlib.Path(workdir, "checkpoints", "latest", "2")
    deadline = time.time() + 600
    try:
      while not saved.is_dir() and time.time() < deadline:
        if any(p.poll() is not None for p, _ in launched):
          break
        time.sleep(0.05)
      self.assertTrue(saved.is_dir(), "no epoch-0 checkpoint before the kill")
      launched[1][0].kill()
      launched[1][0].wait(timeout=60)
      time.sleep(1.0)
      launched[0][0].kill()
      launched[0][0].wait(timeout=60)
    finally:
      for process, log in launched:
        if process.poll() is None:
          process.kill()
          process.wait(timeout=60)
        log.close()
    self.assertFalse(pathlib.Path(workdir, "results.json").exists())
    workdir, texts, _ = self._run_two("killed")
    for i in range(2):
      self.assertIn("resumed from epoch 0 (step 2)", texts[i], f"process {i}")
    step, max_diff = _max_param_diff(str(self.root / "one"), workdir)
    print(f"killed + resumed: max |params - 1 process x 2 devices|: "
          f"{max_diff:.3g}")
    self.assertEqual(step, 4)
    self.assertLess(max_diff, _ATOL)
    resumed = json.loads(pathlib.Path(workdir, "results.json").read_text())
    self.assertEqual(resumed["meta"], self.reference["meta"])
    for split in ("val", "test"):
      np.testing.assert_allclose(
          resumed[split]["loss"], self.reference[split]["loss"], rtol=1e-5
      )


if __name__ == "__main__":
  absltest.main()

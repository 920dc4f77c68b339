"""Two processes through the real command reproduce one process, 2 devices.

Two ``python -m mammojax.main --config.multihost=True`` processes with one
CPU device each (``JAX_COORDINATOR_ADDRESS`` / ``JAX_NUM_PROCESSES`` /
``JAX_PROCESS_ID``, gloo collectives) train on their halves of every global
step; the final parameters must equal those of one process that pmaps the
same global batch over 2 host devices.
"""

import json
import os
import pathlib
import socket
import subprocess
import sys
import time

from absl.testing import absltest
import jax
import numpy as np
import orbax.checkpoint as ocp

from configs import mtgcn
from mammojax.training import loop

_ROOT = pathlib.Path(__file__).resolve().parents[2]
# Two processes and one reference, 2 epochs x 2 steps of the test config.
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


def _launch(workdir: str, port: int, process_id: int, log_path: str):
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
  ]
  log = open(log_path, "w")
  return subprocess.Popen(
      command, cwd=_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
  ), log


class MultihostTest(absltest.TestCase):

  def test_two_processes_match_one_process_with_two_devices(self):
    self.assertGreaterEqual(jax.local_device_count(), 2)
    root = pathlib.Path(self.create_tempdir().full_path)
    # Reference (also builds the TFDS dataset the processes then read).
    config = mtgcn.get_config("test")
    config.num_devices = 2
    reference = loop.train_and_evaluate(config, str(root / "one"))

    start = time.time()
    port = _free_port()
    launched = [
        _launch(str(root / "two"), port, i, str(root / f"process_{i}.log"))
        for i in range(2)
    ]
    codes = []
    for process, log in launched:
      try:
        codes.append(process.wait(timeout=600))
      finally:
        log.close()
    print(f"two-process run: {time.time() - start:.1f} s")
    for i, code in enumerate(codes):
      self.assertEqual(
          code, 0, (root / f"process_{i}.log").read_text()[-3000:]
      )

    # One results.json, written by process 0, over the whole splits.
    self.assertIn("results written to",
                  (root / "process_0.log").read_text())
    self.assertNotIn("results written to",
                     (root / "process_1.log").read_text())
    two = json.loads((root / "two" / "results.json").read_text())
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

    step1, params1 = _latest_params(str(root / "one"))
    step2, params2 = _latest_params(str(root / "two"))
    self.assertEqual(step1, step2)
    self.assertGreater(step1, 1)
    diffs = jax.tree_util.tree_leaves(
        jax.tree_util.tree_map(lambda a, b: np.max(np.abs(a - b)),
                               params1, params2)
    )
    max_diff = float(max(diffs))
    print(f"max |params 2 processes - 1 process x 2 devices|: {max_diff:.3g}")
    self.assertLess(max_diff, _ATOL)
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(a, b, atol=_ATOL),
        params1, params2,
    )


if __name__ == "__main__":
  absltest.main()

"""Multi-run experiment protocols built on ``training.loop.train_and_evaluate``.

``config.protocol.name`` picks one of ``PROTOCOLS``; each module exposes
``run_protocol(config, workdir) -> dict``. ``mammojax.main`` calls ``run``
for every config with a ``protocol`` block.
"""

import importlib
from typing import Any

import ml_collections

# config.protocol.name -> the module implementing it.
PROTOCOLS = {
    "luminal_cv": "mammojax.experiments.luminal",
    "ablation": "mammojax.experiments.ablation",
    "gradnorm_toy": "mammojax.experiments.gradnorm_toy",
    "rmcg_cv": "mammojax.experiments.rmcg",
    "diagnet_repeats": "mammojax.experiments.diagnet",
}


def get_protocol(config: ml_collections.ConfigDict) -> Any:
  """The module of ``config.protocol.name``.

  Raises:
    ValueError: the config has no ``protocol.name`` or an unknown one.
  """
  protocol = config.get("protocol") or {}
  name = protocol.get("name") if protocol else None
  if name not in PROTOCOLS:
    raise ValueError(
        f"config.protocol.name={name!r}: expected one of {sorted(PROTOCOLS)}"
    )
  return importlib.import_module(PROTOCOLS[name])


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Runs the protocol of ``config.protocol.name`` in ``workdir``."""
  return get_protocol(config).run_protocol(config, workdir)

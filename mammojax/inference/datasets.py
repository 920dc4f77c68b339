"""The TFDS builder config a run's dataset was built with (sizes, detector)."""

import importlib
from typing import Any, Optional


def builder_config(dataset_config: Any, attribute: str) -> Optional[Any]:
  """The builder config of ``config.dataset`` that has ``attribute``.

  Looks the dataset name up in ``data.builders.BUILDER_MODULES`` and returns
  the ``BUILDER_CONFIGS`` entry named ``config.dataset.builder_config``
  (default ``default``) whose builder config has ``attribute`` (e.g.
  ``patch_size`` for calcification graphs, ``image_size`` for whole
  images), or None for an unknown dataset.
  """
  from mammojax.data import builders  # pylint: disable=g-import-not-at-top
  module_name = builders.BUILDER_MODULES.get(str(dataset_config.name))
  if module_name is None:
    return None
  module = importlib.import_module(module_name)
  wanted = str(dataset_config.get("builder_config", "default") or "default")
  for value in vars(module).values():
    for cfg in getattr(value, "BUILDER_CONFIGS", None) or ():
      if cfg.name == wanted and hasattr(cfg, attribute):
        return cfg
  return None

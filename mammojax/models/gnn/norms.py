"""Norm layers over node features ``[N, C]`` with torch's defaults.

``'batch'`` (BatchNorm1d, statistics over real nodes only), ``'layer'``
(LayerNorm) and ``'instance'`` (torch InstanceNorm1d on a 2-D input), used by
GENConv's MLP and by the DeepGCN layers; ``_apply_norm`` creates and applies
one inside an ``@nn.compact`` method.
"""

from __future__ import annotations

import flax.linen as nn
import jax

Array = jax.Array

# torch norm-layer defaults.
_TORCH_NORM_EPS = 1e-5
_TORCH_BN_MOMENTUM = 0.9  # torch momentum 0.1 == flax decay 0.9.

_NORMS = ('batch', 'layer', 'instance', None)


def _norm_module(kind: str | None, name: str | None = None):
  """Norm module over node features ``[N, C]`` with torch's defaults.

  ``'batch'`` is BatchNorm1d (statistics over real nodes only, see
  ``_run_norm``); ``'layer'`` a per-node affine LayerNorm; ``'instance'`` is
  what torch's InstanceNorm1d(affine=False) does to a 2-D ``[N, C]`` input:
  it is taken as one unbatched sample, so each node is normalised over its
  channels without affine params. ``None`` gives no module.
  """
  if kind is None:
    return None
  if kind == 'batch':
    return nn.BatchNorm(
        momentum=_TORCH_BN_MOMENTUM,
        epsilon=_TORCH_NORM_EPS,
        use_fast_variance=False,
        name=name,
    )
  if kind == 'layer':
    return nn.LayerNorm(
        epsilon=_TORCH_NORM_EPS, use_fast_variance=False, name=name
    )
  if kind == 'instance':
    return nn.LayerNorm(
        epsilon=_TORCH_NORM_EPS,
        use_scale=False,
        use_bias=False,
        use_fast_variance=False,
        name=name,
    )
  raise ValueError(f'norm: expected one of {_NORMS}, got {kind!r}')


def _run_norm(
    module: nn.Module | None,
    h: Array,
    *,
    node_mask: Array | None,
    train: bool,
) -> Array:
  """Applies a ``_norm_module``; padding nodes never enter BatchNorm stats."""
  if module is None:
    return h
  if isinstance(module, nn.BatchNorm):
    mask = None if node_mask is None else node_mask.astype(bool)[:, None]
    return module(h, use_running_average=not train, mask=mask)
  return module(h)


def _apply_norm(
    kind: str | None,
    h: Array,
    *,
    name: str,
    node_mask: Array | None,
    train: bool,
) -> Array:
  """Creates and applies a norm (inside an ``@nn.compact`` method)."""
  return _run_norm(
      _norm_module(kind, name), h, node_mask=node_mask, train=train
  )

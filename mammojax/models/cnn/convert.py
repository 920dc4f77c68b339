"""torchvision ``state_dict`` files -> Flax ``params`` / ``batch_stats``.

ImageNet weights cannot be downloaded from inside mammojax: the user gives a
file. ``.npz`` files (one array per torchvision key, as written by
``scripts/torch_to_npz.py``) always work; ``.pth`` / ``.pt`` files need torch,
which is imported lazily in that branch only (``pip install mammojax[bench]``).

Key mapping: a Flax leaf ``a_b/c/kernel`` is torchvision ``a.b.c.weight``
(module names: ``_`` -> ``.``). Conv kernels ``[O, I/g, kh, kw]`` become
``[kh, kw, I/g, O]``, linear weights are transposed, BatchNorm
``weight/bias/running_mean/running_var`` become ``scale/bias`` (params) and
``mean/var`` (batch_stats); ``num_batches_tracked`` is ignored.

Input channels (``adapt_stem``): torchvision stems take RGB. For
``in_channels=1`` the three RGB filters of the first conv are **summed**, so a
grey image gives exactly the activations the RGB model gives on the same grey
replicated to three channels. For ``C = 3k`` the RGB filters are repeated
``k`` times and divided by ``k`` (stacked RGB inputs keep their colour
filters); for any other ``C`` every channel gets the summed filter divided by
``C`` (an average of the grey filter). Both rules keep the response to a grey
image replicated over the ``C`` channels equal to the RGB model's.

Head: when the model's head shape differs from the file's (``num_classes !=
1000``) the head is re-initialised with the Flax ``nn.Dense`` defaults from
``head_rng``; the report lists the re-initialised keys.
"""

import dataclasses
import os
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Array = Any
StateDict = dict[str, np.ndarray]

# torchvision prefixes of the first conv (weights to adapt) and the classifier.
STEM_AND_HEAD = {
    'resnet18': ('conv1', 'fc'),
    'resnet34': ('conv1', 'fc'),
    'densenet121': ('features.conv0', 'classifier'),
    'mobilenet_v2': ('features.0.0', 'classifier.1'),
    'shufflenet_v2_x1_0': ('conv1.0', 'fc'),
}

_IGNORED_SUFFIXES = ('num_batches_tracked',)
_MAX_LISTED = 20


class ConversionError(ValueError):
  """The file does not match the model (keys or shapes)."""


@dataclasses.dataclass
class ConversionReport:
  """What the conversion did besides copying tensors."""

  loaded: list[str]
  reinitialized: list[str]
  stem: str | None  # e.g. 'conv1.weight: 3 -> 1 channels (sum)'
  ignored: list[str]

  def summary(self) -> str:
    """One human-readable line."""
    parts = [f'{len(self.loaded)} tensors loaded']
    if self.stem:
      parts.append(f'stem adapted ({self.stem})')
    if self.reinitialized:
      parts.append(f'head re-initialised: {", ".join(self.reinitialized)}')
    if self.ignored:
      parts.append(f'{len(self.ignored)} buffers ignored')
    return '; '.join(parts)


def load_state_dict(path: str | os.PathLike[str]) -> StateDict:
  """Reads a torchvision state_dict from ``.npz`` or ``.pth``/``.pt``.

  Args:
    path: file path. ``.npz``: arrays keyed by torchvision names. ``.pth``/
      ``.pt``: a ``torch.save``-d state_dict (or a dict holding one under
      ``'state_dict'`` / ``'model'``); needs torch.

  Returns:
    ``{torch key: float32 / int numpy array}``, ``module.`` prefixes removed.
  """
  path = os.fspath(path)
  ext = os.path.splitext(path)[1].lower()
  if ext == '.npz':
    with np.load(path, allow_pickle=False) as f:
      sd = {k: np.asarray(f[k]) for k in f.files}
  elif ext in ('.pth', '.pt'):
    try:
      import torch  # pylint: disable=g-import-not-at-top
    except ImportError as e:
      raise ImportError(
          f'Reading {path!r} needs PyTorch: `pip install mammojax[bench]`, or '
          'convert it to .npz on a machine with torch: '
          '`python scripts/torch_to_npz.py WEIGHTS.pth WEIGHTS.npz`.'
      ) from e
    obj = torch.load(path, map_location='cpu', weights_only=True)
    for wrapper in ('state_dict', 'model'):
      if isinstance(obj, Mapping) and isinstance(obj.get(wrapper), Mapping):
        obj = obj[wrapper]
    if not isinstance(obj, Mapping):
      raise ConversionError(f'{path!r} holds a {type(obj)}, not a state_dict')
    sd = {k: v.detach().cpu().numpy() for k, v in obj.items()}
  else:
    raise ValueError(f'unsupported weights file {path!r} (.npz, .pth, .pt)')
  return {k.removeprefix('module.'): v for k, v in sd.items()}


def adapt_stem(weight: np.ndarray, in_channels: int) -> tuple[np.ndarray, str]:
  """Adapts an RGB conv weight ``[O, 3, kh, kw]`` to ``in_channels``."""
  c = weight.shape[1]
  if in_channels == c:
    return weight, ''
  if c != 3:
    raise ConversionError(
        f'stem has {c} input channels; only RGB stems can be adapted'
    )
  grey = weight.sum(axis=1, keepdims=True)
  if in_channels == 1:
    return grey, '3 -> 1 channels (sum)'
  if in_channels % 3 == 0:
    reps = in_channels // 3
    w = np.tile(weight, (1, reps, 1, 1)) / reps
    return w, f'3 -> {in_channels} channels (RGB repeated, / {reps})'
  w = np.repeat(grey, in_channels, axis=1) / in_channels
  return w, f'3 -> {in_channels} channels (RGB sum / {in_channels})'


def _torch_key(path: tuple[str, ...], collection: str, ndim: int) -> str:
  """Flax leaf path -> torchvision key."""
  *modules, leaf = path
  prefix = '.'.join(m.replace('_', '.') for m in modules)
  if collection == 'batch_stats':
    name = {'mean': 'running_mean', 'var': 'running_var'}[leaf]
  elif leaf == 'kernel' or (leaf == 'scale' and ndim == 1):
    name = 'weight'
  else:
    name = leaf
  return f'{prefix}.{name}'


def _to_flax(value: np.ndarray, leaf: str) -> np.ndarray:
  """torch tensor layout -> Flax layout."""
  if leaf == 'kernel' and value.ndim == 4:
    return value.transpose(2, 3, 1, 0)
  if leaf == 'kernel' and value.ndim == 2:
    return value.T
  return value


def _flatten(tree: Mapping[str, Any], prefix=()):
  for k, v in tree.items():
    if isinstance(v, Mapping):
      yield from _flatten(v, prefix + (k,))
    else:
      yield prefix + (k,), v


def _set(tree: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
  for k in path[:-1]:
    tree = tree.setdefault(k, {})
  tree[path[-1]] = value


def _listing(title: str, items: list[str]) -> str:
  shown = ', '.join(items[:_MAX_LISTED])
  more = f' (+{len(items) - _MAX_LISTED} more)' if len(items) > _MAX_LISTED else ''
  return f'{title} ({len(items)}): {shown}{more}'


def convert_state_dict(
    state_dict: Mapping[str, np.ndarray],
    abstract_variables: Mapping[str, Any],
    *,
    stem: str,
    head: str,
    head_rng: jax.Array | None = None,
) -> tuple[dict[str, Any], ConversionReport]:
  """Maps a torchvision state_dict onto a Flax variable structure.

  Args:
    state_dict: ``{torch key: array}`` (see ``load_state_dict``).
    abstract_variables: the model's variables (arrays or
      ``jax.ShapeDtypeStruct`` from ``jax.eval_shape(model.init, ...)``) with
      ``'params'`` and ``'batch_stats'``.
    stem: torchvision prefix of the first conv (its weight is channel-adapted).
    head: torchvision prefix of the classifier ``Linear``.
    head_rng: key for re-initialising the head when its shape differs.

  Returns:
    ``({'params': ..., 'batch_stats': ...}, report)`` with jnp float32 arrays.

  Raises:
    ConversionError: listing missing keys, unexpected keys and shape
      mismatches.
  """
  sd = dict(state_dict)
  ignored = sorted(k for k in sd if k.endswith(_IGNORED_SUFFIXES))
  stem_key = f'{stem}.weight'
  stem_note = None
  expected = {}  # torch key -> (collection, flax path, flax shape)
  for collection in ('params', 'batch_stats'):
    for path, leaf in _flatten(abstract_variables.get(collection, {})):
      key = _torch_key(path, collection, len(leaf.shape))
      expected[key] = (collection, path, tuple(leaf.shape))

  head_keys = [k for k in expected if k.startswith(f'{head}.')]
  reinit_head = any(
      k in sd
      and _to_flax(sd[k], expected[k][1][-1]).shape != expected[k][2]
      for k in head_keys
  )
  missing = [k for k in expected if k not in sd]
  if reinit_head:
    missing = [k for k in missing if k not in head_keys]
  unexpected = sorted(
      k for k in sd if k not in expected and k not in ignored
  )
  out: dict[str, Any] = {'params': {}, 'batch_stats': {}}
  mismatched, loaded = [], []
  for key, (collection, path, shape) in expected.items():
    if key not in sd or (reinit_head and key in head_keys):
      continue
    value = np.asarray(sd[key])
    if key == stem_key and value.ndim == 4:
      value, note = adapt_stem(value, shape[2])
      stem_note = f'{key}: {note}' if note else None
    value = _to_flax(value, path[-1])
    if value.shape != shape:
      mismatched.append(f'{key}: file {sd[key].shape} -> {value.shape}, '
                        f'model expects {shape}')
      continue
    _set(out[collection], path, jnp.asarray(value, jnp.float32))
    loaded.append(key)
  if missing or unexpected or mismatched:
    msg = ['state_dict does not match the model.']
    if missing:
      msg.append(_listing('missing keys (model has, file lacks)', missing))
    if unexpected:
      msg.append(_listing('unexpected keys (file has, model lacks)', unexpected))
    if mismatched:
      msg.append(_listing('shape mismatches', mismatched))
    raise ConversionError('\n'.join(msg))

  reinitialized = []
  if reinit_head:
    if head_rng is None:
      raise ValueError('the head must be re-initialised: pass head_rng')
    kernel_path = expected[f'{head}.weight'][1]
    in_features, num_classes = expected[f'{head}.weight'][2]
    fresh = nn.Dense(num_classes).init(
        head_rng, jnp.zeros((1, in_features), jnp.float32)
    )['params']
    for leaf, value in fresh.items():
      _set(out['params'], kernel_path[:-1] + (leaf,), value)
      reinitialized.append(f'{head}.{"weight" if leaf == "kernel" else leaf}')
  report = ConversionReport(
      loaded=loaded, reinitialized=reinitialized, stem=stem_note,
      ignored=ignored,
  )
  return out, report


def load_pretrained(
    name: str,
    path: str | os.PathLike[str],
    *,
    num_classes: int = 1000,
    in_channels: int = 3,
    rng: jax.Array | None = None,
    **model_kwargs,
) -> tuple[nn.Module, dict[str, Any], ConversionReport]:
  """Builds registry model ``name`` and loads torchvision weights into it.

  Args:
    name: a key of ``mammojax.models.cnn.MODELS`` (e.g. ``'resnet18'``).
    path: torchvision state_dict file (``.npz``, ``.pth``, ``.pt``).
    num_classes: model head size; != file's head size re-initialises the head.
    in_channels: image channels (1 for mammograms); see ``adapt_stem``.
    rng: key for the re-initialised head (default ``jax.random.key(0)``).
    **model_kwargs: other constructor fields (e.g. ``dropout=0.3``).

  Returns:
    ``(model, {'params', 'batch_stats'}, report)``.
  """
  from mammojax.models import cnn  # pylint: disable=g-import-not-at-top

  model = cnn.MODELS[name](num_classes=num_classes, **model_kwargs)
  rng = jax.random.key(0) if rng is None else rng
  abstract = jax.eval_shape(
      lambda: model.init(
          rng, jnp.zeros((1, 64, 64, in_channels), jnp.float32), train=False
      )
  )
  stem, head = STEM_AND_HEAD[name]
  variables, report = convert_state_dict(
      load_state_dict(path), abstract, stem=stem, head=head, head_rng=rng
  )
  return model, variables, report

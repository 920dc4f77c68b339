"""Tests for the torchvision-layout CNNs and the state_dict converter."""

import ast
import functools
import pathlib
import sys
import tempfile

from absl.testing import absltest
from absl.testing import parameterized
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mammojax.models import cnn
from mammojax.models.cnn import convert
from mammojax.models.cnn import resnet

_TOL = 1e-4


def _torchvision():
  return pytest.importorskip('torchvision')


@functools.cache
def _torch_model(name):
  """A torchvision model with random weights and non-trivial BN statistics."""
  torchvision = _torchvision()
  import torch  # pylint: disable=g-import-not-at-top

  torch.set_num_threads(1)
  torch.manual_seed(0)
  model = getattr(torchvision.models, name)(weights=None).eval()
  with torch.no_grad():
    for m in model.modules():
      if isinstance(m, torch.nn.BatchNorm2d):
        m.running_mean.uniform_(-0.5, 0.5)
        m.running_var.uniform_(0.5, 2.0)
        m.weight.uniform_(0.5, 1.5)
        m.bias.uniform_(-0.2, 0.2)
  return model


@functools.cache
def _weight_files(name):
  """Saves the torch model's state_dict as .pth and .npz; returns the paths."""
  import torch  # pylint: disable=g-import-not-at-top

  model = _torch_model(name)
  folder = pathlib.Path(tempfile.mkdtemp())
  pth, npz = folder / f'{name}.pth', folder / f'{name}.npz'
  torch.save(model.state_dict(), pth)
  np.savez(npz, **{k: v.numpy() for k, v in model.state_dict().items()})
  return pth, npz


def _torch_logits(name, x_nchw):
  import torch  # pylint: disable=g-import-not-at-top

  with torch.no_grad():
    return _torch_model(name)(torch.from_numpy(x_nchw)).numpy()


@functools.partial(jax.jit, static_argnums=0)
def _apply(model, variables, x):
  return model.apply(variables, x, train=False, return_features=True)


def _images(channels=3, seed=0):
  return np.random.RandomState(seed).rand(2, channels, 64, 64).astype(
      np.float32
  )


class ParityTest(parameterized.TestCase):

  @parameterized.parameters(
      ('resnet18', 'pth'),
      ('resnet18', 'npz'),
      ('mobilenet_v2', 'npz'),
      ('shufflenet_v2_x1_0', 'pth'),
      ('densenet121', 'npz'),
  )
  def test_logits_match_torchvision(self, name, fmt):
    pth, npz = _weight_files(name)
    model, variables, report = convert.load_pretrained(
        name, pth if fmt == 'pth' else npz
    )
    self.assertEmpty(report.reinitialized)
    self.assertIsNone(report.stem)
    x = _images()
    logits, _ = _apply(model, variables, jnp.asarray(x.transpose(0, 2, 3, 1)))
    np.testing.assert_allclose(
        logits, _torch_logits(name, x), atol=_TOL, rtol=0
    )

  def test_grayscale_equals_rgb_on_replicated_grey(self):
    _, npz = _weight_files('resnet18')
    model, variables, report = convert.load_pretrained(
        'resnet18', npz, in_channels=1
    )
    self.assertIn('3 -> 1', report.stem)
    grey = _images(channels=1)
    logits, _ = _apply(model, variables, jnp.asarray(grey.transpose(0, 2, 3, 1)))
    expected = _torch_logits('resnet18', np.repeat(grey, 3, axis=1))
    np.testing.assert_allclose(logits, expected, atol=_TOL, rtol=0)

  def test_head_reinitialised_for_new_classes(self):
    import torch  # pylint: disable=g-import-not-at-top

    _, npz = _weight_files('resnet18')
    model, variables, report = convert.load_pretrained(
        'resnet18', npz, num_classes=2, dropout=0.3, rng=jax.random.key(1)
    )
    self.assertCountEqual(report.reinitialized, ['fc.weight', 'fc.bias'])
    self.assertIn('head re-initialised', report.summary())
    x = _images()
    logits, feats = _apply(
        model, variables, jnp.asarray(x.transpose(0, 2, 3, 1))
    )
    self.assertEqual(logits.shape, (2, 2))
    torch_model = _torch_model('resnet18')
    with torch.no_grad():
      trunk = torch.nn.Sequential(*list(torch_model.children())[:-1])
      pooled = trunk(torch.from_numpy(x)).flatten(1).numpy()
    np.testing.assert_allclose(feats['pooled'], pooled, atol=_TOL, rtol=0)
    self.assertEqual(feats['layer4'].shape, (2, 2, 2, 512))


class ConverterTest(parameterized.TestCase):
  """Error reporting and channel adaptation, no torch needed."""

  def setUp(self):
    super().setUp()
    model = resnet.ResNet18()
    self.abstract = jax.eval_shape(
        lambda: model.init(
            jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False
        )
    )
    self.sd = {}
    for collection in ('params', 'batch_stats'):
      for path, leaf in convert._flatten(self.abstract[collection]):
        key = convert._torch_key(path, collection, len(leaf.shape))
        shape = leaf.shape
        if len(shape) == 4:
          shape = (shape[3], shape[2], shape[0], shape[1])
        elif len(shape) == 2:
          shape = shape[::-1]
        self.sd[key] = np.zeros(shape, np.float32)
    self.sd['bn1.num_batches_tracked'] = np.zeros((), np.int64)

  def _convert(self, sd):
    return convert.convert_state_dict(sd, self.abstract, stem='conv1', head='fc')

  def test_complete_state_dict_converts(self):
    variables, report = self._convert(self.sd)
    self.assertEqual(report.ignored, ['bn1.num_batches_tracked'])
    self.assertEqual(variables['params']['conv1']['kernel'].shape, (7, 7, 3, 64))
    self.assertIn('layer2_0', variables['batch_stats'])

  def test_missing_unexpected_and_shape_errors_are_named(self):
    sd = dict(self.sd)
    del sd['layer3.1.bn2.running_var']
    sd['layer5.0.conv1.weight'] = np.zeros((1,))
    sd['layer1.0.conv2.weight'] = np.zeros((64, 64, 5, 5), np.float32)
    with self.assertRaises(convert.ConversionError) as ctx:
      self._convert(sd)
    msg = str(ctx.exception)
    self.assertIn('missing keys (model has, file lacks) (1): '
                  'layer3.1.bn2.running_var', msg)
    self.assertIn('unexpected keys (file has, model lacks) (1): '
                  'layer5.0.conv1.weight', msg)
    self.assertIn('layer1.0.conv2.weight: file (64, 64, 5, 5)', msg)

  @parameterized.parameters(1, 2, 4, 6)
  def test_adapted_stem_preserves_grey_response(self, channels):
    w = np.random.RandomState(0).randn(64, 3, 7, 7).astype(np.float32)
    adapted, note = convert.adapt_stem(w, channels)
    self.assertEqual(adapted.shape, (64, channels, 7, 7))
    self.assertIn(f'3 -> {channels}', note)
    np.testing.assert_allclose(adapted.sum(1), w.sum(1), rtol=1e-5, atol=1e-5)

  def test_npz_and_unknown_extension(self):
    with tempfile.TemporaryDirectory() as d:
      path = pathlib.Path(d) / 'w.npz'
      np.savez(path, **{'module.' + k: v for k, v in self.sd.items()})
      self.assertSameElements(convert.load_state_dict(path), self.sd)
      with self.assertRaisesRegex(ValueError, 'unsupported'):
        convert.load_state_dict(pathlib.Path(d) / 'w.bin')

  def test_pth_without_torch_explains(self):
    with pytest.MonkeyPatch.context() as mp:
      mp.setitem(sys.modules, 'torch', None)
      with self.assertRaisesRegex(ImportError, r'mammojax\[bench\].*torch_to_npz'):
        convert.load_state_dict('weights.pth')


class ModelTest(parameterized.TestCase):

  def test_registry(self):
    self.assertSameElements(
        cnn.MODELS,
        ['resnet18', 'resnet34', 'densenet121', 'mobilenet_v2',
         'shufflenet_v2_x1_0'],
    )
    self.assertSameElements(cnn.GRADCAM_LAYERS, cnn.MODELS)
    self.assertEqual(cnn.create_model('resnet34', num_classes=3).num_classes, 3)

  def test_train_step_updates_batch_stats(self):
    model = resnet._ResNetTiny(num_classes=2, dropout=0.3)
    x = jnp.ones((2, 32, 32, 1))
    variables = jax.jit(functools.partial(model.init, train=False))(
        jax.random.key(0), x
    )
    logits, updates = jax.jit(
        functools.partial(model.apply, train=True, mutable=['batch_stats'])
    )(variables, x, rngs={'dropout': jax.random.key(1)})
    self.assertEqual(logits.shape, (2, 2))
    self.assertTrue(np.isfinite(logits).all())
    self.assertFalse(np.allclose(
        updates['batch_stats']['bn1']['mean'],
        variables['batch_stats']['bn1']['mean'],
    ))

  def test_library_never_imports_torch_at_module_level(self):
    root = pathlib.Path(cnn.__file__).resolve().parents[2]
    for path in root.rglob('*.py'):
      tree = ast.parse(path.read_text())
      for node in tree.body:
        names = []
        if isinstance(node, ast.Import):
          names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
          names = [node.module or '']
        for n in names:
          self.assertFalse(n.split('.')[0] == 'torch', f'{path}: {n}')


if __name__ == '__main__':
  absltest.main()

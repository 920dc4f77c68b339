"""ResNet-18 / -34 train-step throughput: mammojax (jit + Adam) vs torch.

Usage:
  python scripts/bench_resnet.py                       # 16 x 128 x 80
  python scripts/bench_resnet.py --height 256 --width 160 --model resnet34
  python scripts/bench_resnet.py --xla_preset onednn   # an XLA CPU lever

Both run a one-channel ResNet (2 classes, dropout 0.3 as in the luminal
paper), Adam, cross-entropy, in training mode (batch norm updates), on the
SAME random inputs, in one process. After warm-up the two are timed
interleaved (jax step, torch step, jax step, ...; ``--rounds``), which
cancels most of the drift of a shared machine; medians are reported. torch
is limited to ``--threads`` intra-op threads; XLA's CPU client sizes its
thread pool to the machine's cores (it has no intra-op thread-count flag),
so keep ``--threads`` at the core count (2 on the development machine) or
``taskset`` the process to compare at fewer cores.
``--xla_preset`` appends one of the XLA CPU flag sets measured in
docs/performance.md; ``--dtype bfloat16`` runs the jax convolutions in
bfloat16 (params and the optimiser stay float32). Prints one JSON object
(images/s, seconds/step, the ratio).
"""

import argparse
import json
import os
import statistics
import time

XLA_PRESETS = {
    'default': '',
    'onednn': '--xla_cpu_use_onednn=true',
    'no_ynn': '--xla_cpu_experimental_ynn_fusion_type=',
    'fast_math': '--xla_cpu_enable_fast_math=true',
    'no_thunks': '--xla_cpu_use_thunk_runtime=false',
}


def _parse():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--model', default='resnet18', choices=('resnet18',
                                                         'resnet34'))
  p.add_argument('--height', type=int, default=128)
  p.add_argument('--width', type=int, default=80)
  p.add_argument('--batch', type=int, default=16)
  p.add_argument('--rounds', type=int, default=6,
                 help='interleaved timed steps per framework')
  p.add_argument('--warmup', type=int, default=2)
  p.add_argument('--threads', type=int, default=2)
  p.add_argument('--frameworks', default='jax,torch')
  p.add_argument('--xla_preset', default='default',
                 choices=sorted(XLA_PRESETS))
  p.add_argument('--dtype', default='float32',
                 choices=('float32', 'bfloat16'))
  return p.parse_args()


def make_jax_step(args):
  """A blocking jitted train step on fixed inputs, and its compile time."""
  import functools  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top

  from mammojax.models.cnn import resnet  # pylint: disable=g-import-not-at-top

  cls = {'resnet18': resnet.ResNet18, 'resnet34': resnet.ResNet34}[args.model]
  model = cls(num_classes=2, dropout=0.3)
  x = jax.random.uniform(
      jax.random.key(0), (args.batch, args.height, args.width, 1)
  )
  y = jnp.arange(args.batch) % 2
  variables = jax.jit(functools.partial(model.init, train=False))(
      jax.random.key(1), x
  )
  tx = optax.adam(1e-5)
  box = {'state': (variables['params'], variables['batch_stats'],
                   tx.init(variables['params'])), 'i': 0}
  dtype = jnp.bfloat16 if args.dtype == 'bfloat16' else jnp.float32

  @functools.partial(jax.jit, donate_argnums=0)
  def step(state, x, y, rng):
    params, batch_stats, opt_state = state

    def loss_fn(params):
      cast = jax.tree_util.tree_map(lambda p: p.astype(dtype), params)
      logits, updates = model.apply(
          {'params': cast, 'batch_stats': batch_stats}, x.astype(dtype),
          train=True, mutable=['batch_stats'], rngs={'dropout': rng},
      )
      loss = optax.softmax_cross_entropy_with_integer_labels(
          logits.astype(jnp.float32), y)
      stats = jax.tree_util.tree_map(
          lambda s: s.astype(jnp.float32), updates['batch_stats'])
      return loss.mean(), stats

    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        params
    )
    updates, opt_state = tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), batch_stats, opt_state), loss

  def run():
    box['i'] += 1
    box['state'], loss = step(box['state'], x, y, jax.random.key(box['i']))
    loss.block_until_ready()
    return float(loss)

  t0 = time.perf_counter()
  run()
  return run, time.perf_counter() - t0


def make_torch_step(args):
  """A torch train step (eager) on the same-shaped inputs."""
  import torch  # pylint: disable=g-import-not-at-top
  import torchvision  # pylint: disable=g-import-not-at-top

  torch.set_num_threads(args.threads)
  torch.manual_seed(0)
  fn = {'resnet18': torchvision.models.resnet18,
        'resnet34': torchvision.models.resnet34}[args.model]
  model = fn(num_classes=2)
  model.conv1 = torch.nn.Conv2d(1, 64, 7, 2, 3, bias=False)
  model.fc = torch.nn.Sequential(torch.nn.Dropout(0.3), model.fc)
  model.train()
  opt = torch.optim.Adam(model.parameters(), lr=1e-5)
  x = torch.rand(args.batch, 1, args.height, args.width)
  y = torch.arange(args.batch) % 2

  def run():
    opt.zero_grad(set_to_none=True)
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    return loss.item()

  return run


def main():
  args = _parse()
  os.environ.setdefault('JAX_PLATFORMS', 'cpu')
  os.environ['XLA_FLAGS'] = ' '.join(filter(None, [
      os.environ.get('XLA_FLAGS', ''), '--xla_cpu_multi_thread_eigen=true',
      XLA_PRESETS[args.xla_preset],
  ]))
  result = {
      'model': args.model, 'input': [args.batch, args.height, args.width, 1],
      'rounds': args.rounds, 'threads': args.threads, 'dtype': args.dtype,
      'xla_preset': args.xla_preset, 'xla_flags': os.environ['XLA_FLAGS'],
      'cpu_count': os.cpu_count(),
      'load_avg_at_start': [round(v, 2) for v in os.getloadavg()],
  }
  frameworks = args.frameworks.split(',')
  steps = {}
  if 'jax' in frameworks:
    steps['jax'], compile_s = make_jax_step(args)
    result['jax_first_step_incl_compile_s'] = round(compile_s, 2)
  if 'torch' in frameworks:
    steps['torch'] = make_torch_step(args)
  for run in steps.values():
    for _ in range(args.warmup):
      run()
  times = {k: [] for k in steps}
  for _ in range(args.rounds):
    for k, run in steps.items():
      t0 = time.perf_counter()
      run()
      times[k].append(time.perf_counter() - t0)
  for k, ts in times.items():
    med = statistics.median(ts)
    result[k] = {'s_per_step_median': round(med, 4),
                 's_per_step_min': round(min(ts), 4),
                 'images_per_s': round(args.batch / med, 2)}
  if 'jax' in result and 'torch' in result:
    result['jax_over_torch'] = round(
        result['jax']['images_per_s'] / result['torch']['images_per_s'], 3
    )
  result['load_avg_at_end'] = [round(v, 2) for v in os.getloadavg()]
  print(json.dumps(result))


if __name__ == '__main__':
  main()

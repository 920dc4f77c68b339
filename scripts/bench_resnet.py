"""ResNet-18 train-step throughput: mammojax (jit + Adam) vs torch, same CPU.

Usage:
  python scripts/bench_resnet.py                       # 256x160, batch 4
  python scripts/bench_resnet.py --height 1326 --width 512 --batch 2

Both run a one-channel ResNet-18 (2 classes, dropout 0.3 as in the luminal
paper), Adam, cross-entropy, in training mode (batch norm updates), on random
inputs; torch is limited to ``--threads`` intra-op threads and XLA to the same
number of Eigen threads. Prints one JSON object (images/s, seconds/step).
"""

import argparse
import json
import os
import time


def _parse():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--height', type=int, default=256)
  p.add_argument('--width', type=int, default=160)
  p.add_argument('--batch', type=int, default=4)
  p.add_argument('--steps', type=int, default=5)
  p.add_argument('--warmup', type=int, default=2)
  p.add_argument('--threads', type=int, default=2)
  p.add_argument('--frameworks', default='jax,torch')
  return p.parse_args()


def bench_jax(args):
  """Seconds per jitted train step (after warm-up) and compile time."""
  import functools  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top

  from mammojax.models.cnn import resnet  # pylint: disable=g-import-not-at-top

  model = resnet.ResNet18(num_classes=2, dropout=0.3)
  x = jax.random.uniform(
      jax.random.key(0), (args.batch, args.height, args.width, 1)
  )
  y = jnp.arange(args.batch) % 2
  variables = jax.jit(functools.partial(model.init, train=False))(
      jax.random.key(1), x
  )
  tx = optax.adam(1e-5)
  state = (variables['params'], variables['batch_stats'],
           tx.init(variables['params']))

  @functools.partial(jax.jit, donate_argnums=0)
  def step(state, x, y, rng):
    params, batch_stats, opt_state = state

    def loss_fn(params):
      logits, updates = model.apply(
          {'params': params, 'batch_stats': batch_stats}, x, train=True,
          mutable=['batch_stats'], rngs={'dropout': rng},
      )
      loss = optax.softmax_cross_entropy_with_integer_labels(logits, y)
      return loss.mean(), updates['batch_stats']

    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        params
    )
    updates, opt_state = tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), batch_stats, opt_state), loss

  t0 = time.perf_counter()
  state, loss = step(state, x, y, jax.random.key(2))
  loss.block_until_ready()
  compile_s = time.perf_counter() - t0
  for i in range(args.warmup - 1):
    state, loss = step(state, x, y, jax.random.key(3 + i))
  loss.block_until_ready()
  t0 = time.perf_counter()
  for i in range(args.steps):
    state, loss = step(state, x, y, jax.random.key(100 + i))
  loss.block_until_ready()
  return (time.perf_counter() - t0) / args.steps, compile_s


def bench_torch(args):
  """Seconds per eager torch train step (after warm-up)."""
  import torch  # pylint: disable=g-import-not-at-top
  import torchvision  # pylint: disable=g-import-not-at-top

  torch.set_num_threads(args.threads)
  torch.manual_seed(0)
  model = torchvision.models.resnet18(num_classes=2)
  model.conv1 = torch.nn.Conv2d(1, 64, 7, 2, 3, bias=False)
  model.fc = torch.nn.Sequential(torch.nn.Dropout(0.3), model.fc)
  model.train()
  opt = torch.optim.Adam(model.parameters(), lr=1e-5)
  x = torch.rand(args.batch, 1, args.height, args.width)
  y = torch.arange(args.batch) % 2

  def step():
    opt.zero_grad(set_to_none=True)
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    return loss.item()

  for _ in range(args.warmup):
    step()
  t0 = time.perf_counter()
  for _ in range(args.steps):
    step()
  return (time.perf_counter() - t0) / args.steps


def main():
  args = _parse()
  os.environ.setdefault('JAX_PLATFORMS', 'cpu')
  os.environ['XLA_FLAGS'] = (
      os.environ.get('XLA_FLAGS', '')
      + f' --xla_cpu_multi_thread_eigen=true'
      f' intra_op_parallelism_threads={args.threads}'
  )
  result = {
      'model': 'resnet18', 'input': [args.batch, args.height, args.width, 1],
      'steps': args.steps, 'threads': args.threads,
      'cpu_count': os.cpu_count(),
  }
  frameworks = args.frameworks.split(',')
  if 'jax' in frameworks:
    sec, compile_s = bench_jax(args)
    result['jax'] = {'s_per_step': round(sec, 4),
                     'images_per_s': round(args.batch / sec, 2),
                     'first_step_incl_compile_s': round(compile_s, 2)}
  if 'torch' in frameworks:
    sec = bench_torch(args)
    result['torch'] = {'s_per_step': round(sec, 4),
                       'images_per_s': round(args.batch / sec, 2)}
  if 'jax' in result and 'torch' in result:
    result['jax_over_torch'] = round(
        result['jax']['images_per_s'] / result['torch']['images_per_s'], 3
    )
  print(json.dumps(result))


if __name__ == '__main__':
  main()

"""Converts a torchvision state_dict file (.pth/.pt) to .npz for mammojax.

Usage: python scripts/torch_to_npz.py resnet18-f37072fd.pth resnet18.npz

Needs torch (``pip install mammojax[bench]``); the .npz then loads anywhere
with ``mammojax.models.cnn.convert.load_pretrained(name, 'resnet18.npz')``.
"""

import sys

import numpy as np

from mammojax.models.cnn import convert


def main(argv: list[str]) -> None:
  """Reads argv[1] (torch) and writes argv[2] (npz)."""
  if len(argv) != 3:
    raise SystemExit(__doc__)
  state_dict = convert.load_state_dict(argv[1])
  np.savez(argv[2], **state_dict)
  print(f'wrote {len(state_dict)} arrays to {argv[2]}')


if __name__ == '__main__':
  main(sys.argv)

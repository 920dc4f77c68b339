"""Grad-CAM overlays: a jet heat map blended on the grayscale mammogram (PNG).

Uses matplotlib's object API with the Agg canvas (no pyplot global state, no
display needed).
"""

import os
from typing import Any

import matplotlib
from matplotlib.backends import backend_agg
from matplotlib import figure as mpl_figure
import numpy as np

Array = Any


def overlay_rgb(
    image: Array, cam: Array, *, alpha: float = 0.4, cmap: str = 'jet'
) -> np.ndarray:
  """Blends ``cmap(cam)`` onto a grey image.

  Args:
    image: ``[H, W]`` float in [0, 1] (bright = dense).
    cam: ``[H, W]`` in [0, 1] (e.g. ``GradCam.cam[i]``).
    alpha: heat-map weight.
    cmap: matplotlib colormap name.

  Returns:
    ``[H, W, 3]`` uint8 RGB.
  """
  image = np.clip(np.asarray(image, np.float32), 0.0, 1.0)
  cam = np.clip(np.asarray(cam, np.float32), 0.0, 1.0)
  if image.shape != cam.shape:
    raise ValueError(f'image {image.shape} and cam {cam.shape} differ')
  heat = matplotlib.colormaps[cmap](cam)[..., :3]
  rgb = (1.0 - alpha) * image[..., None] + alpha * heat
  return np.round(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8)


def save_gradcam_overlay(
    path: str | os.PathLike[str],
    image: Array,
    cam: Array,
    *,
    alpha: float = 0.4,
    title: str | None = None,
    side_by_side: bool = True,
    dpi: int = 100,
) -> str:
  """Writes a PNG of the overlay (next to the plain image if requested).

  Args:
    path: output ``.png`` path (folders are created).
    image: ``[H, W]`` float in [0, 1].
    cam: ``[H, W]`` in [0, 1].
    alpha: heat-map weight.
    title: optional figure title.
    side_by_side: also show the plain image on the left.
    dpi: output resolution; a panel is ``W x H`` pixels at this dpi.

  Returns:
    The path written.
  """
  path = os.fspath(path)
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  over = overlay_rgb(image, cam, alpha=alpha)
  h, w = over.shape[:2]
  panels = [np.asarray(image)] if side_by_side else []
  panels.append(over)
  fig = mpl_figure.Figure(
      figsize=(len(panels) * w / dpi, h / dpi + (0.3 if title else 0.0)),
      dpi=dpi,
  )
  backend_agg.FigureCanvasAgg(fig)
  for i, panel in enumerate(panels):
    ax = fig.add_subplot(1, len(panels), i + 1)
    ax.imshow(panel, cmap='gray' if panel.ndim == 2 else None, vmin=0, vmax=1)
    ax.set_axis_off()
  if title:
    fig.suptitle(title)
  fig.subplots_adjust(left=0, right=1, bottom=0, top=0.9 if title else 1,
                      wspace=0.01)
  fig.savefig(path, format='png')
  return path

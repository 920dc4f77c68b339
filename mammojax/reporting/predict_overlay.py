"""The overlay PNG of a calcification prediction, readable at a glance.

Left: the whole mammogram in its stored orientation (as a viewer shows the
file), with a Grad-CAM map where the method gives one, each cluster outlined in the colour of its predicted distribution and
labelled with it and its probability. Right: a zoom on each of the first
``max_zoom`` clusters, every calcification marked by its predicted
morphology (marker shape *and* colour, so it reads in grey too). Colours
are the Okabe-Ito palette (colour-blind safe); a legend names every class
of the run's vocabularies. matplotlib object API with the Agg canvas.
"""

import os
from typing import Any, Sequence

from matplotlib import figure as mpl_figure
from matplotlib import lines as mpl_lines
from matplotlib import patches as mpl_patches
from matplotlib.backends import backend_agg
import numpy as np

# Okabe & Ito (2008), "Color Universal Design".
OKABE_ITO = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2",
             "#D55E00", "#CC79A7", "#000000")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def _style(names: Sequence[str], name: Any, table: Sequence[str]) -> str:
  if name is None or name not in names:
    return "#FFFFFF" if table is OKABE_ITO else "x"
  return table[list(names).index(name) % len(table)]


def _text_colour(hex_colour: str) -> str:
  """Black or white, whichever reads on ``hex_colour`` (relative luminance)."""
  r, g, b = (int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5))
  return "black" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.4 else "white"


def save_calcification_overlay(
    path: str,
    image: np.ndarray,
    calcifications: Sequence[dict[str, Any]],
    clusters: Sequence[dict[str, Any]],
    vocabularies: dict[str, Sequence[str]],
    *,
    title: str = "",
    heatmap: Any = None,
    max_zoom: int = 2,
    dpi: int = 100,
) -> str:
  """Writes the overlay PNG.

  Args:
    path: output ``.png``.
    image: float ``[rows, columns]`` in [0, 1], bright = dense, stored grid.
    calcifications: dicts with ``center_xy``, ``bbox_xy``,
      ``predicted_morphology`` (stored grid).
    clusters: dicts with ``cluster_id``, ``calcification_ids``,
      ``predicted_distribution`` and ``distribution`` (probabilities).
    vocabularies: ``morphology`` and ``distribution`` class names.
    title: figure title.
    heatmap: optional float ``[rows, columns]`` map in [0, 1] (e.g. a
      cluster crop's Grad-CAM in the stored grid), drawn translucent
      (``inferno``) where positive.
    max_zoom: zoom panels (the first clusters).
    dpi: resolution.

  Returns:
    ``path``.
  """
  morph = list(vocabularies.get("morphology", ()))
  dist = list(vocabularies.get("distribution", ()))
  zooms = list(clusters)[:max_zoom]
  ncols = 1 + len(zooms)
  fig = mpl_figure.Figure(figsize=(4.5 * ncols, 6.2), dpi=dpi)
  backend_agg.FigureCanvasAgg(fig)
  height, width = image.shape
  boxes = {}
  for cl in clusters:
    pts = np.asarray([calcifications[i]["bbox_xy"]
                      for i in cl["calcification_ids"]], np.float64)
    pad = max(8.0, 0.02 * max(height, width))
    boxes[cl["cluster_id"]] = (pts[:, 0].min() - pad, pts[:, 1].min() - pad,
                               pts[:, 2].max() + pad, pts[:, 3].max() + pad)
  ax = fig.add_subplot(1, ncols, 1)
  ax.imshow(image, cmap="gray", vmin=0, vmax=1, interpolation="antialiased")
  if heatmap is not None:
    heat = np.ma.masked_less_equal(np.asarray(heatmap, np.float32), 0.05)
    ax.imshow(heat, cmap="inferno", vmin=0, vmax=1, alpha=0.45,
              interpolation="antialiased")
  for cl in clusters:
    x0, y0, x1, y1 = boxes[cl["cluster_id"]]
    name = cl.get("predicted_distribution")
    colour = _style(dist, name, OKABE_ITO)
    ax.add_patch(mpl_patches.Rectangle(
        (x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=colour,
        linewidth=2.0))
    p = (cl.get("distribution") or {}).get(name)
    label = f"c{cl['cluster_id']}: {name or '?'}"
    if p is not None:
      label += f" {p:.2f}"
    ax.text(x0, y0 - 4, label, color=_text_colour(colour), fontsize=8,
            va="bottom",
            bbox=dict(facecolor=colour, alpha=0.9, pad=1, linewidth=0))
  ax.set_xlim(-0.5, width - 0.5)
  ax.set_ylim(height - 0.5, -0.5)
  ax.set_axis_off()
  ax.set_title("clusters (predicted distribution)", fontsize=9)
  for j, cl in enumerate(zooms):
    zx = fig.add_subplot(1, ncols, 2 + j)
    x0, y0, x1, y1 = boxes[cl["cluster_id"]]
    side = max(x1 - x0, y1 - y0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    zx.imshow(image, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    for i in cl["calcification_ids"]:
      c = calcifications[i]
      name = c.get("predicted_morphology")
      zx.plot(c["center_xy"][0], c["center_xy"][1],
              marker=_style(morph, name, MARKERS), markersize=7,
              markerfacecolor="none", linestyle="none",
              markeredgecolor=_style(morph, name, OKABE_ITO),
              markeredgewidth=1.5)
    zx.set_xlim(cx - side / 2, cx + side / 2)
    zx.set_ylim(cy + side / 2, cy - side / 2)
    zx.set_axis_off()
    zx.set_title(
        f"c{cl['cluster_id']}: {len(cl['calcification_ids'])} "
        f"calcifications (predicted morphology)", fontsize=9)
  handles = [
      mpl_lines.Line2D([], [], marker=MARKERS[k % len(MARKERS)],
                       color=OKABE_ITO[k % len(OKABE_ITO)], linestyle="none",
                       markerfacecolor="none", markeredgewidth=1.5,
                       label=f"morphology: {m}")
      for k, m in enumerate(morph)
  ] + [
      mpl_patches.Patch(facecolor="none",
                        edgecolor=OKABE_ITO[k % len(OKABE_ITO)],
                        linewidth=2, label=f"distribution: {d}")
      for k, d in enumerate(dist)
  ]
  if any(c.get("predicted_morphology") is None for c in calcifications):
    handles.append(mpl_lines.Line2D(
        [], [], marker="x", color="#FFFFFF", markeredgecolor="#777777",
        linestyle="none", label="morphology: not predicted"))
  if handles:
    fig.legend(handles=handles, loc="lower center",
               ncol=min(4, len(handles)), fontsize=7, frameon=False)
  if title:
    fig.suptitle(title, fontsize=10)
  fig.subplots_adjust(left=0.01, right=0.99, top=0.9, bottom=0.16,
                      wspace=0.05)
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  fig.savefig(path, format="png")
  return path

"""Figures for run reports (matplotlib, Agg canvas, no pyplot state).

Every function draws on its own ``matplotlib.figure.Figure`` (rendered by the
Agg backend when saved), writes one PNG and returns its path, so plotting is
safe in headless jobs and threads and never touches the global pyplot
backend. A PNG of ``figsize = (w, h)`` inches at ``dpi`` is ``h·dpi × w·dpi``
pixels (no tight bounding box, so sizes are predictable).
"""

import os
import pathlib
from typing import Literal, Sequence

from matplotlib import collections as mcollections
from matplotlib import figure as mfigure
from matplotlib import lines as mlines
from matplotlib import patches as mpatches
import numpy as np


PathLike = str | os.PathLike[str]

_DPI = 100


def _class_colors(num_classes: int) -> np.ndarray:
  """`[C, 4]` RGBA colours, distinct for up to 20 classes."""
  from matplotlib import colormaps  # pylint: disable=g-import-not-at-top

  cmap = colormaps["tab10" if num_classes <= 10 else "tab20"]
  return np.asarray([cmap(i % cmap.N) for i in range(num_classes)])


def _save(fig: mfigure.Figure, path: PathLike, dpi: int) -> pathlib.Path:
  """Writes `fig` as PNG to `path` (creating folders) and returns the path."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, dpi=dpi, format="png")
  return path


def roc_curve(
    is_positive: np.ndarray, scores: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
  """ROC points `(fpr [k], tpr [k])`, one per distinct threshold, from (0, 0).

  Tied scores form one point (the curve cuts diagonally through ties), so
  the trapezoidal area equals the mid-rank AUC.
  """
  is_positive = np.asarray(is_positive, bool)
  scores = np.asarray(scores, np.float64)
  order = np.argsort(-scores, kind="mergesort")
  s, pos = scores[order], is_positive[order]
  last_of_tie = np.r_[s[1:] != s[:-1], True]
  tp = np.cumsum(pos)[last_of_tie]
  fp = np.cumsum(~pos)[last_of_tie]
  tpr = np.r_[0.0, tp / max(pos.sum(), 1)]
  fpr = np.r_[0.0, fp / max((~pos).sum(), 1)]
  return fpr, tpr


def plot_roc_curves(
    y_true: np.ndarray,
    probs: np.ndarray,
    class_names: Sequence[str],
    path: PathLike,
    title: str = "ROC (one-vs-rest)",
    *,
    figsize: tuple[float, float] = (6.0, 6.0),
    dpi: int = _DPI,
) -> pathlib.Path:
  """One-vs-rest ROC curve per class, AUC in the legend.

  Args:
    y_true: int `[n]` class indices (filter padding / unknown first).
    probs: `[n, C]` class probabilities.
    class_names: `[C]` names.
    path: output PNG.
    title: axes title.
    figsize: inches.
    dpi: dots per inch.

  Returns:
    The PNG path. Classes without positives or negatives are listed in the
    legend as ``n/a`` and not drawn.
  """
  y = np.asarray(y_true)
  probs = np.asarray(probs, np.float64)
  colors = _class_colors(len(class_names))
  fig = mfigure.Figure(figsize=figsize, dpi=dpi)
  ax = fig.subplots()
  ax.plot([0, 1], [0, 1], ls="--", lw=0.8, color="0.6")
  for c, name in enumerate(class_names):
    is_pos = y == c
    if is_pos.all() or not is_pos.any():
      ax.plot([], [], color=colors[c], label=f"{name}: n/a")
      continue
    fpr, tpr = roc_curve(is_pos, probs[:, c])
    # The area of the drawn curve: the mid-rank (Mann-Whitney) AUC.
    auc = float(np.trapezoid(tpr, fpr))
    ax.plot(fpr, tpr, color=colors[c], lw=1.5, label=f"{name}: {auc:.3f}")
  ax.set(
      xlim=(0, 1),
      ylim=(0, 1.01),
      xlabel="false positive rate",
      ylabel="true positive rate",
      title=title,
      aspect="equal",
  )
  ax.legend(loc="lower right", fontsize="small", title="AUC")
  fig.tight_layout()
  return _save(fig, path, dpi)


def plot_confusion_matrix(
    cm: np.ndarray,
    class_names: Sequence[str],
    path: PathLike,
    normalize: Literal["true", "pred", "all"] | None = "true",
    *,
    title: str = "Confusion matrix",
    figsize: tuple[float, float] = (6.0, 5.0),
    dpi: int = _DPI,
) -> pathlib.Path:
  """Heat map of `cm` `[C, C]` (rows true, columns predicted).

  Args:
    cm: `[C, C]` counts.
    class_names: `[C]` names.
    path: output PNG.
    normalize: colour by row (``'true'``, = recall), column (``'pred'``),
      total (``'all'``) fractions, or raw counts (None). Cells show the count
      and, when normalised, the fraction.
    title: axes title.
    figsize: inches.
    dpi: dots per inch.

  Returns:
    The PNG path.
  """
  cm = np.asarray(cm, np.float64)
  if normalize == "true":
    den = cm.sum(1, keepdims=True)
  elif normalize == "pred":
    den = cm.sum(0, keepdims=True)
  elif normalize == "all":
    den = np.full((1, 1), cm.sum())
  elif normalize is None:
    den = np.ones((1, 1))
  else:
    raise ValueError(
        f"normalize must be 'true', 'pred', 'all' or None, got {normalize!r}."
    )
  values = np.divide(cm, den, out=np.zeros_like(cm), where=den > 0)
  fig = mfigure.Figure(figsize=figsize, dpi=dpi)
  ax = fig.subplots()
  vmax = 1.0 if normalize else max(values.max(), 1.0)
  im = ax.imshow(values, cmap="Blues", vmin=0.0, vmax=vmax)
  fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
  ticks = np.arange(len(class_names))
  ax.set_xticks(ticks, class_names, rotation=45, ha="right", fontsize="small")
  ax.set_yticks(ticks, class_names, fontsize="small")
  ax.set(xlabel="predicted", ylabel="true", title=title)
  for i in range(cm.shape[0]):
    for j in range(cm.shape[1]):
      text = f"{int(cm[i, j])}"
      if normalize:
        text += f"\n{values[i, j]:.2f}"
      ax.text(
          j, i, text, ha="center", va="center", fontsize="x-small",
          color="white" if values[i, j] > 0.5 * vmax else "black",
      )
  fig.tight_layout()
  return _save(fig, path, dpi)


def plot_task_weights(
    steps: np.ndarray,
    weights: np.ndarray,
    task_names: Sequence[str],
    path: PathLike,
    *,
    title: str = "GradNorm task weights",
    figsize: tuple[float, float] = (7.0, 4.0),
    dpi: int = _DPI,
) -> pathlib.Path:
  """GradNorm weight trajectory.

  Args:
    steps: `[S]` training steps.
    weights: `[S, T]` task weights at those steps.
    task_names: `[T]` names.
    path: output PNG.
    title: axes title.
    figsize: inches.
    dpi: dots per inch.

  Returns:
    The PNG path.
  """
  steps = np.asarray(steps)
  weights = np.asarray(weights, np.float64)
  if weights.shape != (steps.shape[0], len(task_names)):
    raise ValueError(
        f"weights must be [steps={steps.shape[0]}, tasks={len(task_names)}], "
        f"got {weights.shape}."
    )
  fig = mfigure.Figure(figsize=figsize, dpi=dpi)
  ax = fig.subplots()
  colors = _class_colors(len(task_names))
  for t, name in enumerate(task_names):
    ax.plot(steps, weights[:, t], color=colors[t], label=name)
  ax.axhline(1.0, ls=":", lw=0.8, color="0.5")
  ax.set(xlabel="step", ylabel="task weight w_i", title=title)
  ax.set_ylim(bottom=0.0)
  ax.legend(fontsize="small")
  fig.tight_layout()
  return _save(fig, path, dpi)


def draw_graph_on_image(
    image01: np.ndarray,
    coords_xy_px: np.ndarray,
    senders: np.ndarray,
    receivers: np.ndarray,
    node_true: np.ndarray,
    node_pred: np.ndarray,
    class_names: Sequence[str],
    path: PathLike,
    title: str = "",
    *,
    width_inches: float = 6.0,
    dpi: int = _DPI,
) -> pathlib.Path:
  """Calcification graph over its mammogram crop.

  Edges are pale yellow lines; each node is a dot filled with its predicted
  class colour (grey for ``-1``) inside a ring of its true class colour (no
  ring for unknown, ``-1``, true labels). The figure is ``width_inches``
  wide and as tall as the image aspect requires (the axes fill the figure).

  Args:
    image01: float `[H, W]` in `[0, 1]`, bright = dense.
    coords_xy_px: `[n, 2]` node centres in pixels of `image01` (x = column).
    senders: int `[E]`.
    receivers: int `[E]`.
    node_true: int `[n]` true classes, `-1` = unknown.
    node_pred: int `[n]` predicted classes.
    class_names: `[C]` names.
    path: output PNG.
    title: drawn in the top-left corner.
    width_inches: figure width.
    dpi: dots per inch.

  Returns:
    The PNG path.
  """
  image = np.asarray(image01, np.float64)
  if image.ndim != 2:
    raise ValueError(f"image01 must be [H, W], got {image.shape}.")
  xy = np.asarray(coords_xy_px, np.float64).reshape(-1, 2)
  senders, receivers = np.asarray(senders), np.asarray(receivers)
  node_true, node_pred = np.asarray(node_true), np.asarray(node_pred)
  h, w = image.shape
  colors = _class_colors(len(class_names))
  fig = mfigure.Figure(figsize=(width_inches, width_inches * h / w), dpi=dpi)
  ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
  ax.imshow(image, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
  if senders.size:
    segments = np.stack([xy[senders], xy[receivers]], axis=1)
    ax.add_collection(
        mcollections.LineCollection(
            segments, colors=[(1.0, 1.0, 0.6, 0.6)], linewidths=0.8
        )
    )
  size = max(12.0, 40.0 * width_inches / 6.0)
  known = node_true >= 0
  ax.scatter(
      xy[known, 0], xy[known, 1], s=size * 3.0, facecolors="none",
      edgecolors=colors[node_true[known]], linewidths=1.5,
  )
  fill = np.where(
      (node_pred >= 0)[:, None],
      colors[np.clip(node_pred, 0, len(class_names) - 1)],
      (0.6, 0.6, 0.6, 1.0),  # no prediction
  )
  ax.scatter(
      xy[:, 0], xy[:, 1], s=size, c=fill, edgecolors="black", linewidths=0.3
  )
  ax.set_xlim(-0.5, w - 0.5)
  ax.set_ylim(h - 0.5, -0.5)
  ax.set_axis_off()
  if title:
    ax.text(
        0.01, 0.99, title, transform=ax.transAxes, va="top", ha="left",
        color="white", fontsize="small",
    )
  handles = [
      mpatches.Patch(color=colors[c], label=name)
      for c, name in enumerate(class_names)
  ]
  handles += [
      mlines.Line2D([], [], ls="", marker="o", color="0.7", label="fill: pred"),
      mlines.Line2D(
          [], [], ls="", marker="o", mfc="none", mec="0.7", label="ring: true"
      ),
  ]
  ax.legend(handles=handles, loc="lower right", fontsize="x-small",
            framealpha=0.6)
  return _save(fig, path, dpi)

"""CLI: predict with a trained run on DICOM files.

  python -m mammojax.predict --workdir=RUN_DIR --out=OUT_DIR INPUT [INPUT ...]

INPUT is a DICOM file or a folder (searched recursively). The run's config
and best checkpoint are restored (``inference.run``) and every image goes
through the method's ``predict_images`` hook (``mammojax.methods``) in
chunks of ``--chunk`` images (clusters of a chunk are batched). Per image
OUT_DIR gets ``<name>.findings.json``, ``<name>.overlay.png`` and
``<name>.sr.dcm`` (a DICOM Comprehensive SR, TID 1500 Measurement Report;
``reporting.structured_report``; for images with at least one cluster); the folder gets ``predictions.csv`` (one
row per input), ``skipped.log`` (inputs that could not be predicted, and
files of input folders that are not DICOM) and ``summary.json`` (counts
per status, stage, restore and output timings, images/s).

Exit status: 0 when at least one image was analysed (status ``ok`` or
``no_calcification``), 1 when every input failed (or none was found), 2 for
a workdir that cannot be used (no results.json or checkpoint, another
version's parameter tree, a method without the hook), naming the path.
"""

import argparse
import json
import logging as py_logging
import os
import sys
import time
import traceback
from typing import Any, Optional, Sequence

from absl import logging

from mammojax.inference import calcifications as calc_inference
from mammojax.inference import inputs as inputs_lib
from mammojax.inference import outputs
from mammojax.inference import results as results_lib
from mammojax.inference import run as run_lib


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
  """Parses the command line."""
  parser = argparse.ArgumentParser(
      prog="python -m mammojax.predict", description=__doc__,
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("inputs", nargs="+", metavar="INPUT",
                      help="DICOM files or folders (recursive)")
  parser.add_argument("--workdir", required=True,
                      help="workdir of a finished training run")
  parser.add_argument("--out", required=True, help="output folder")
  parser.add_argument("--annotations", default=None,
                      help="annotations.json (training format) giving the "
                      "calcifications instead of the detector")
  parser.add_argument("--chunk", type=int, default=32,
                      help="images per model pass (default 32)")
  parser.add_argument("--detector-method", default=None,
                      choices=("multiscale", "mad", "authors"),
                      help="override the run's detector")
  parser.add_argument("--detector-threshold", type=float, default=None)
  parser.add_argument("--cluster-link-mm", type=float, default=None,
                      help="single-linkage distance of detections (10 mm)")
  parser.add_argument("--min-cluster-size", type=int, default=None,
                      help="smallest cluster of detections (3)")
  parser.add_argument("--no-sr", action="store_true",
                      help="do not write DICOM Structured Reports")
  parser.add_argument("--no-overlay", action="store_true",
                      help="do not write overlay PNGs")
  parser.add_argument("--no-progress", action="store_true")
  return parser.parse_args(argv)


def _predict_chunk(run, chunk, **kwargs) -> list[results_lib.ImagePrediction]:
  """The hook on ``chunk``; on an unexpected error, image by image."""
  try:
    return list(run.method.predict_images(run, chunk, **kwargs))
  except run_lib.RunError:
    raise
  except Exception:  # pylint: disable=broad-except
    if len(chunk) == 1:
      logging.error("predict failed on %s:\n%s", chunk[0],
                    traceback.format_exc())
      return [results_lib.failed(chunk[0], results_lib.PredictError(
          results_lib.ERROR, traceback.format_exc().strip().splitlines()[-1]))]
    out = []
    for source in chunk:
      out.extend(_predict_chunk(run, [source], **kwargs))
    return out


def _write_image_outputs(run, pred, out_dir, used, *, overlay, sr,
                         seconds):
  """findings.json (+ overlay PNG, SR) of one prediction; returns findings.

  ``seconds`` accumulates the wall time per output kind.
  """
  from mammojax.reporting import gradcam_overlay  # pylint: disable=g-import-not-at-top
  from mammojax.reporting import predict_overlay  # pylint: disable=g-import-not-at-top
  from mammojax.reporting import structured_report  # pylint: disable=g-import-not-at-top
  stem = outputs.output_stem(pred.source, pred.meta, used)
  files = {"findings_json": os.path.join(out_dir, f"{stem}.findings.json")}
  facts = run.model_facts()
  tick = time.perf_counter()
  if overlay and pred.image is not None and pred.analysed:
    path = os.path.join(out_dir, f"{stem}.overlay.png")
    try:
      title = (f"{os.path.basename(pred.source)}  {pred.meta.laterality or ''}"
               f" {pred.meta.view or ''}  ({run.config.method}, step "
               f"{run.step})")
      if pred.kind == results_lib.KIND_IMAGE and pred.heatmap is not None:
        probs = "; ".join(
            f"{t}: " + ", ".join(f"{c} {p:.2f}" for c, p in v.items())
            for t, v in pred.image_probabilities.items())
        gradcam_overlay.save_gradcam_overlay(
            path, pred.image, pred.heatmap, title=f"{title}\n{probs}")
      else:
        predict_overlay.save_calcification_overlay(
            path, pred.image, pred.calcifications, pred.clusters,
            run.vocabularies, title=title, heatmap=pred.heatmap)
      files["overlay_png"] = path
    except Exception as e:  # pylint: disable=broad-except
      logging.exception("overlay of %s failed: %s", pred.source, e)
  now = time.perf_counter()
  seconds["overlay_png"] += now - tick
  tick = now
  if sr and pred.clusters and pred.meta is not None:
    path = os.path.join(out_dir, f"{stem}.sr.dcm")
    try:
      findings = outputs.findings_dict(pred, facts)
      structured_report.write_structured_report(
          path, pred.source, findings, run.vocabularies)
      files["structured_report"] = path
    except Exception as e:  # pylint: disable=broad-except
      logging.exception("structured report of %s failed: %s", pred.source, e)
  now = time.perf_counter()
  seconds["structured_report"] += now - tick
  tick = now
  findings = outputs.findings_dict(pred, facts, files)
  outputs.write_json(files["findings_json"], findings)
  seconds["findings_json"] += time.perf_counter() - tick
  pred.image = None  # Free the pixels once written.
  pred.heatmap = None
  return findings


def run_predict(
    workdir: str,
    out_dir: str,
    inputs: Sequence[str],
    *,
    annotations: Optional[str] = None,
    chunk: int = 32,
    detector_overrides: Optional[dict[str, Any]] = None,
    structured_report: bool = True,
    overlay: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
  """Predicts on ``inputs`` with the run in ``workdir``; writes ``out_dir``.

  Returns:
    The summary (also ``out_dir/summary.json``): counts per status, stage
    seconds, images/s, the output paths.

  Raises:
    run_lib.RunError: the workdir cannot be used (names the path).
  """
  if chunk < 1:
    raise ValueError(f"--chunk={chunk}: expected >= 1")
  start = time.perf_counter()
  run = run_lib.load_run(workdir)
  restore_seconds = time.perf_counter() - start
  index = (calc_inference.AnnotationIndex(annotations)
           if annotations else None)
  candidates, ignored = inputs_lib.discover(inputs)
  os.makedirs(out_dir, exist_ok=True)
  timer = results_lib.Timer()
  rows, skipped, used = [], [], set()
  counts = {s: 0 for s in results_lib.STATUSES}
  output_seconds = {"findings_json": 0.0, "overlay_png": 0.0,
                    "structured_report": 0.0}
  kwargs = dict(timer=timer, annotations=index,
                detector_overrides=detector_overrides, progress=progress)
  for i in range(0, len(candidates), chunk):
    for pred in _predict_chunk(run, candidates[i:i + chunk], **kwargs):
      findings = _write_image_outputs(
          run, pred, out_dir, used, overlay=overlay, sr=structured_report,
          seconds=output_seconds)
      rows.append(outputs.csv_row(findings))
      counts[pred.status] += 1
      if not pred.analysed:
        skipped.append((pred.status, pred.source, pred.reason or ""))
  for path, reason in ignored:
    skipped.append(("ignored", path, reason))
  csv_path = outputs.write_csv(os.path.join(out_dir, "predictions.csv"), rows)
  log_path = outputs.write_skipped(os.path.join(out_dir, "skipped.log"),
                                   skipped)
  seconds = time.perf_counter() - start
  analysed = sum(counts[s] for s in results_lib.ANALYSED)
  summary = {
      "inputs": len(candidates),
      "ignored": len(ignored),
      "analysed": analysed,
      "statuses": {k: v for k, v in counts.items() if v},
      "stage_seconds": {k: round(v, 4) for k, v in timer.seconds.items()},
      "restore_seconds": round(restore_seconds, 4),
      "output_seconds": {k: round(v, 4) for k, v in output_seconds.items()},
      "seconds_total": round(seconds, 4),
      "images_per_second": (len(candidates) / seconds) if seconds else None,
      "model": run.model_facts(),
      "predictions_csv": csv_path,
      "skipped_log": log_path,
  }
  outputs.write_json(os.path.join(out_dir, "summary.json"), summary)
  return summary


def main(argv: Optional[Sequence[str]] = None) -> int:
  """Runs the CLI; returns the exit status."""
  args = parse_args(argv)
  py_logging.basicConfig(level=py_logging.WARNING)
  overrides = {
      "method": args.detector_method, "threshold": args.detector_threshold,
      "link_mm": args.cluster_link_mm, "min_size": args.min_cluster_size,
  }
  try:
    summary = run_predict(
        args.workdir, args.out, args.inputs, annotations=args.annotations,
        chunk=args.chunk,
        detector_overrides={k: v for k, v in overrides.items()
                            if v is not None},
        structured_report=not args.no_sr, overlay=not args.no_overlay,
        progress=not args.no_progress)
  except (run_lib.RunError, ValueError, FileNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(json.dumps(
      {k: summary[k] for k in ("inputs", "ignored", "analysed", "statuses",
                               "stage_seconds", "images_per_second")},
      indent=2))
  if not summary["analysed"]:
    print(f"error: no input could be analysed (see "
          f"{summary['skipped_log']})", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())

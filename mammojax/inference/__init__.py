"""Prediction on a user's DICOM files: what every method's predict shares.

``python -m mammojax.predict`` (``mammojax/predict.py``) restores a run
(``run``), finds the input files (``inputs``), and hands them to the
method's ``predict_images`` hook (``mammojax.methods``), which reads each
image through the training ingestion path (``ingest``, with the sizes of
the run's builder config, ``datasets``), finds the calcifications
(``calcifications``: the detector, or an annotations file, then clusters)
and applies the model, timing each stage (``results.Timer``); the per-image ``results.ImagePrediction`` are then
written as ``findings.json``, an overlay PNG, a DICOM Structured Report
(``mammojax.reporting.structured_report``) and a folder summary
(``outputs``).
"""

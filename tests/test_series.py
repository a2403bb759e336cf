"Series through the command line: slice runs on every fold, a series run on their out-of-fold predictions, a submission from both; its refusals one line each."
import shutil

import pandas as pd
import pytest

from kitcli import kit, ok

TINY = ['--epochs', 1, '--bs', 16, '--n-folds', 3, '--workers', 0]


@pytest.fixture(scope='module')
def series(tmp_path_factory):
    "A small shifted head-CT competition, its caches, slice runs on its three folds and a series run on them."
    root = tmp_path_factory.mktemp('series')
    comp = root / 'comp'
    ok(kit('-q', 'synth', comp, '--patients', 12, '--slices', 6, '--size', 64, '--bleeds', '3d', '--shift', 'hospital'))
    for split in ('train', 'test'): ok(kit('-q', 'preprocess', comp / f'{split}_images', root / f'cache_{split}', '--size', 32))
    ok(kit('-q', 'train', '--labels', comp / 'train.csv', '--cache', root / 'cache_train', '--out', root / 'slices', '--folds', *TINY))
    ok(kit('-q', 'train', '--labels', comp / 'train.csv', '--cache', root / 'cache_train', '--task', 'series', '--slice-runs', root / 'slices',
           '--out', root / 'series', '--epochs', 3, '--n-folds', 3, '--workers', 0))
    return root, comp


def _predict(root, comp, run, out, *how):
    return kit('-q', 'predict', '--model', run, *how, '--sample', comp / 'sample_submission.csv', '-o', out)


def _broken_test_copy(comp, tmp_path):
    "A copy of the test DICOMs with the first truncated to 300 bytes: the folder and that file."
    test = tmp_path / 'test'
    shutil.copytree(comp / 'test_images', test)
    bad = sorted(test.glob('*.dcm'))[0]
    bad.write_bytes(bad.read_bytes()[:300])
    return test, bad


def test_a_series_run_predicts_every_slice_from_the_dicoms_or_the_cache(series, tmp_path):
    root, comp = series
    oof, folds = pd.read_csv(root / 'series' / 'oof.csv'), pd.read_csv(root / 'series' / 'folds.csv')
    assert set(oof.image) == set(folds.image[folds.fold == 0]) and oof.filter(like='pred_').notna().all(axis=None)
    ok(_predict(root, comp, root / 'series', tmp_path / 'a.csv', '--cache', root / 'cache_test'))
    ok(_predict(root, comp, root / 'series', tmp_path / 'b.csv', '--data', comp / 'test_images'))
    a, b, sample = (pd.read_csv(p) for p in (tmp_path / 'a.csv', tmp_path / 'b.csv', comp / 'sample_submission.csv'))
    assert list(a.ID) == list(sample.ID) and a.Label.between(0, 1).all() and a.Label.nunique() > 4
    assert (a.Label - b.Label).abs().max() < 1e-5  # the same images, read from the DICOMs or from their cache
    ok(kit('-q', 'validate', tmp_path / 'a.csv', '--sample', comp / 'sample_submission.csv'))


def test_series_and_slice_runs_moved_together_still_predict(series, tmp_path):
    root, comp = series
    for name in ('slices', 'series'): shutil.copytree(root / name, tmp_path / 'moved' / name)
    shutil.move(root / 'slices', root / 'slices.away')  # where the series run's config says its slice runs are
    try: r = ok(_predict(root, comp, tmp_path / 'moved' / 'series', tmp_path / 's.csv', '--cache', root / 'cache_test'))
    finally: shutil.move(root / 'slices.away', root / 'slices')
    assert pd.read_csv(tmp_path / 's.csv').Label.between(0, 1).all()


def test_an_unreadable_test_slice_gets_the_label_mean_and_its_series_is_still_predicted(series, tmp_path):
    root, comp = series
    test, bad = _broken_test_copy(comp, tmp_path)
    r = ok(_predict(root, comp, root / 'series', tmp_path / 's.csv', '--data', test))
    assert f'1 of {len(list(test.glob("*.dcm")))} test images cannot be read' in r.stderr and bad.name in r.stderr
    assert pd.read_csv(tmp_path / 's.csv').Label.between(0, 1).all()


def test_the_series_runs_refusals_are_one_line(series, tmp_path):
    root, comp = series
    common = ['-q', 'train', '--labels', comp / 'train.csv', '--cache', root / 'cache_train', '--task', 'series', '--workers', 0, '--n-folds', 3]
    cases = {'no slice runs': ([], 'give its folder (--slice-runs RUN)'),
             'one fold only': (['--slice-runs', root / 'slices' / 'fold_0'], 'have no out-of-fold prediction'),
             'not a run': (['--slice-runs', comp], 'neither a kit train run')}
    for name, (extra, said) in cases.items():
        r = kit(*common, *extra, '--out', tmp_path / name.replace(' ', '_'))
        lines = r.stderr.strip().splitlines()
        assert r.returncode != 0 and len(lines) == 1 and said in lines[0], (name, r.stderr[-2000:])


def test_slice_runs_are_found_beside_a_moved_folds_series_run_and_a_series_run_is_not_one(series, tmp_path):
    from kit.tasks.series import slice_run_folders
    root, _ = series
    shutil.copytree(root / 'slices', tmp_path / 'slices')
    found = slice_run_folders([tmp_path / 'gone' / 'slices'], base=tmp_path / 'series' / 'fold_1')  # a --folds series run's fold
    assert found == [[tmp_path / 'slices' / f'fold_{k}' for k in range(3)]]
    with pytest.raises(ValueError, match='a series run, not a slice run'): slice_run_folders([root / 'series'])


def test_tta_leaves_the_slice_stage_as_the_series_model_learnt_it_and_mixed_runs_are_refused(series, tmp_path):
    root, comp = series
    ok(_predict(root, comp, root / 'series', tmp_path / 'a.csv', '--cache', root / 'cache_test'))
    r = ok(_predict(root, comp, root / 'series', tmp_path / 't.csv', '--cache', root / 'cache_test', '--tta'))
    assert 'not applied to the slice stage' in r.stderr
    assert (pd.read_csv(tmp_path / 'a.csv').Label - pd.read_csv(tmp_path / 't.csv').Label).abs().max() < 1e-6
    r = kit('-q', 'predict', '--model', root / 'series', root / 'slices' / 'fold_0', '--cache', root / 'cache_test', '--sample', comp / 'sample_submission.csv', '-o', tmp_path / 'm.csv')
    lines = r.stderr.strip().splitlines()
    assert r.returncode != 0 and len(lines) == 1 and 'cannot be averaged' in lines[0], r.stderr[-2000:]


def test_a_test_slice_the_cache_could_not_read_still_gets_its_rows(series, tmp_path):
    root, comp = series
    test, bad = _broken_test_copy(comp, tmp_path)
    kit('-q', 'preprocess', test, tmp_path / 'cache', '--size', 32)
    ok(_predict(root, comp, root / 'series', tmp_path / 's.csv', '--cache', tmp_path / 'cache'))
    sub = pd.read_csv(tmp_path / 's.csv')
    assert sub.Label.between(0, 1).all() and sub.ID.str.startswith(bad.stem + '_').sum() == 4


def test_study_labels_train_a_pooled_series_run_that_submits_one_row_per_study_and_label(tmp_path):
    "RSNA cervical spine's shape: <study>/<n>.dcm files (the same names in every study), labels per study, a row_id,fractured sample."
    comp = tmp_path / 'comp'
    ok(kit('-q', 'synth', comp, '--patients', 12, '--slices', 6, '--size', 64, '--bleeds', '3d', '--studies'))
    common = ['--labels', comp / 'train.csv', '--match', 'StudyInstanceUID']
    ok(kit('-q', 'train', comp / 'train_images', *common, '--out', tmp_path / 'slices', '--folds', '--size', 32, *TINY))
    folds = pd.read_csv(tmp_path / 'slices' / 'fold_0' / 'folds.csv')
    assert folds.image.is_unique and len(folds) == 9 * 6, 'every slice its own row, though file names repeat across studies'
    ok(kit('-q', 'train', comp / 'train_images', *common, '--task', 'series', '--slice-runs', tmp_path / 'slices', '--out', tmp_path / 'series',
           '--epochs', 3, '--n-folds', 3, '--workers', 0))
    oof = pd.read_csv(tmp_path / 'series' / 'oof.csv')
    assert oof.groupby(oof.image.str.split('/').str[0]).pred_patient_overall.nunique().eq(1).all(), 'one prediction per study, on each of its slices'
    out = tmp_path / 'submission.csv'
    ok(kit('-q', 'predict', '--model', tmp_path / 'series', '--data', comp / 'test_images', '--sample', comp / 'sample_submission.csv',
           '--format', 'rsna-cervical-spine', '-o', out))
    sub, sample = pd.read_csv(out), pd.read_csv(comp / 'sample_submission.csv')
    assert list(sub.columns) == ['row_id', 'fractured'] and list(sub.row_id) == list(sample.row_id)
    assert sub.fractured.between(0, 1).all() and sub.fractured.nunique() > 3
    ok(kit('-q', 'validate', out, '--sample', comp / 'sample_submission.csv', '--format', 'rsna-cervical-spine'))

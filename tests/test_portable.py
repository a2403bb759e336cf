"Caches and runs as Kaggle users move them: uploaded as datasets, read-only, far from their DICOMs or without them."
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from kit.synth import make_competition

KIT = str(Path(sys.executable).with_name('kit'))
LABELS = ['any', 'epidural', 'intraparenchymal', 'intraventricular', 'subarachnoid', 'subdural']


def kit(*args, wrap=(), **kw) -> subprocess.CompletedProcess:
    "Run the installed `kit` console script (under the `wrap` command, if any)."
    return subprocess.run([*wrap, KIT, *map(str, args)], capture_output=True, text=True, timeout=600, **kw)


def read_only(*folders) -> list[str]:
    "Make `folders` read-only; return the command that runs kit without root's power to write there anyway."
    for folder in folders:
        for p in [Path(folder), *Path(folder).rglob('*')]: p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    if os.getuid() != 0: return []
    if not shutil.which('setpriv'): pytest.skip('root without setpriv (util-linux) cannot be kept from writing')
    return ['setpriv', '--bounding-set', '-dac_override', '--inh-caps', '-dac_override']


def writable(*folders):
    "Give the owner write access back, so that pytest can clean up."
    for folder in folders:
        for p in [Path(folder), *Path(folder).rglob('*')]: p.chmod(p.stat().st_mode | stat.S_IWUSR)


@pytest.fixture(scope='module')
def built(tmp_path_factory):
    "A competition, caches of its train and test images, and a run trained on the train cache, all under `here/`."
    root = tmp_path_factory.mktemp('portable')
    here = root / 'here'
    comp = make_competition(here / 'comp', n_patients=8, slices=3, size=64, seed=5)
    for split in ('train', 'test'):
        r = kit('-q', 'preprocess', comp[f'{split}_images'], here / f'cache_{split}', '--windows', 'brain', '--size', 32, '--workers', 0)
        assert r.returncode == 0, r.stderr
    r = kit('-q', 'train', comp['train_images'], '--labels', comp['train'], '--cache', here / 'cache_train', '--out', here / 'run',
            '--size', 32, '--epochs', 1, '--bs', 8, '--n-folds', 3, '--workers', 0)
    assert r.returncode == 0, r.stderr
    r = kit('-q', 'predict', '--model', here / 'run', '--data', comp['test_images'], '--cache', here / 'cache_test',
            '--sample', comp['sample'], '-o', root / 'before.csv', '--workers', 0)
    assert r.returncode == 0, r.stderr
    return root


def moved(built, tmp_path) -> Path:
    "A copy of the built folders laid out as in a Kaggle kernel: the competition and three datasets under `input/`, read-only."
    kaggle = tmp_path / 'kaggle'
    shutil.copytree(built / 'here' / 'comp', kaggle / 'input' / 'comp')
    for name in ('cache_train', 'cache_test', 'run'): shutil.copytree(built / 'here' / name, kaggle / 'input' / f'my-{name}')
    (kaggle / 'working').mkdir()
    return kaggle


def test_manifest_holds_relative_paths_and_header_ids(built):
    m = pd.read_parquet(built / 'here' / 'cache_train' / 'manifest.parquet')
    assert not m.source.map(os.path.isabs).any() and not m.output.map(os.path.isabs).any()
    assert m.source.str.endswith('.dcm').all() and m.output.str.endswith('.png').all()
    assert m.PatientID.notna().all() and m.SOPInstanceUID.notna().all() and m.StudyInstanceUID.notna().all()


def test_moved_read_only_cache_and_run_predict_the_same(built, tmp_path):
    "Everything moved elsewhere and read-only: predict from the DICOMs with the cache, then from the cache alone."
    kaggle = moved(built, tmp_path)
    inp = kaggle / 'input'
    wrap = read_only(inp)
    try:
        for data in (['--data', inp / 'comp' / 'test_images'], []):
            out = kaggle / 'working' / f'submission{len(data)}.csv'
            r = kit('-q', 'predict', '--model', inp / 'my-run', *data, '--cache', inp / 'my-cache_test', '--sample', inp / 'comp' / 'sample_submission.csv',
                    '-o', out, '--workers', 0, wrap=wrap)
            assert r.returncode == 0, r.stderr
            pd.testing.assert_frame_equal(pd.read_csv(out), pd.read_csv(built / 'before.csv'))
        r = kit('-q', 'train', inp / 'comp' / 'train_images', '--labels', inp / 'comp' / 'train.csv', '--cache', inp / 'my-cache_train',
                '--out', kaggle / 'working' / 'run', '--size', 32, '--epochs', 1, '--bs', 8, '--n-folds', 3, '--workers', 0, wrap=wrap)
        assert r.returncode == 0, r.stderr
    finally: writable(inp)
    assert (kaggle / 'working' / 'run' / 'model.pkl').is_file()


def test_cache_without_dicoms_trains_and_predicts(built, tmp_path):
    "Only the caches and the csvs are attached: folds come from the manifest's PatientID, the test ids from its sources."
    kaggle = moved(built, tmp_path)
    inp, work = kaggle / 'input', kaggle / 'working'
    for split in ('train', 'test'): shutil.rmtree(inp / 'comp' / f'{split}_images')
    wrap = read_only(inp)
    try:
        r = kit('-q', 'train', '--labels', inp / 'comp' / 'train.csv', '--cache', inp / 'my-cache_train', '--out', work / 'run',
                '--size', 32, '--epochs', 1, '--bs', 8, '--n-folds', 3, '--workers', 0, wrap=wrap)
        assert r.returncode == 0, r.stderr
        r = kit('-q', 'predict', '--model', work / 'run', '--cache', inp / 'my-cache_test', '--sample', inp / 'comp' / 'sample_submission.csv',
                '-o', work / 'submission.csv', '--workers', 0, wrap=wrap)
        assert r.returncode == 0, r.stderr
    finally: writable(inp)
    folds = pd.read_csv(work / 'run' / 'folds.csv')
    train_ids = set(pd.read_csv(inp / 'comp' / 'train.csv').ID.str.rsplit('_', n=1).str[0])
    assert set(folds.image) == train_ids and folds.PatientID.notna().all() and folds.groupby('PatientID').fold.nunique().eq(1).all()
    assert folds.fold.nunique() == 3
    sub, sample = pd.read_csv(work / 'submission.csv'), pd.read_csv(inp / 'comp' / 'sample_submission.csv')
    assert sub.ID.tolist() == sample.ID.tolist() and sub.Label.between(0, 1).all() and sub.Label.nunique() > 1


def test_nothing_to_train_on_or_predict_is_one_line(built, tmp_path):
    comp = built / 'here' / 'comp'
    r = kit('train', '--labels', comp / 'train.csv', '--out', tmp_path / 'run')
    assert r.returncode == 1 and 'nothing to train on' in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = kit('predict', '--model', built / 'here' / 'run', '--sample', comp / 'sample_submission.csv', '-o', tmp_path / 's.csv')
    assert r.returncode == 1 and 'nothing to predict' in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / 's.csv').exists() and not (tmp_path / 'run').exists()


def test_failed_train_leaves_no_run_folder(built, tmp_path):
    "Labels that match no image: one line, and no OUT holding a lone folds.csv."
    comp = built / 'here' / 'comp'
    r = kit('-q', 'train', comp / 'train_images', '--labels', comp / 'sample_submission.csv', '--out', tmp_path / 'run', '--workers', 0)
    assert r.returncode == 1 and 'no label id matches' in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / 'run').exists()


def test_cache_of_the_whole_competition_serves_its_subfolders(built, tmp_path):
    "A cache made of `comp/` (train_images/... in the manifest) finds `train_images/x.dcm` by the tail of the path."
    comp = built / 'here' / 'comp'
    r = kit('-q', 'preprocess', comp, tmp_path / 'cache', '--windows', 'brain', '--size', 32, '--workers', 0)
    assert r.returncode == 0, r.stderr
    r = kit('-q', 'predict', '--model', built / 'here' / 'run', '--data', comp / 'test_images', '--cache', tmp_path / 'cache',
            '--sample', comp / 'sample_submission.csv', '-o', tmp_path / 's.csv', '--workers', 0)
    assert r.returncode == 0, r.stderr
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / 's.csv'), pd.read_csv(built / 'before.csv'))


def test_cache_of_other_settings_is_refused_or_replaced(built, tmp_path):
    "A test cache made at another size: from the cache alone an error naming both settings; with the DICOMs, images made anew."
    comp = built / 'here' / 'comp'
    r = kit('-q', 'preprocess', comp / 'test_images', tmp_path / 'cache48', '--windows', 'brain', '--size', 48, '--workers', 0)
    assert r.returncode == 0, r.stderr
    args = ['predict', '--model', built / 'here' / 'run', '--cache', tmp_path / 'cache48', '--sample', comp / 'sample_submission.csv',
            '-o', tmp_path / 's.csv', '--workers', 0]
    r = kit('-q', *args)
    assert r.returncode == 1 and 'needs images made with size=32, but the cache' in r.stderr and 'holds size=48' in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = kit('-q', *args, '--data', comp / 'test_images')
    assert r.returncode == 0, r.stderr
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / 's.csv'), pd.read_csv(built / 'before.csv'))


def test_manifest_of_an_older_kit_asks_for_preprocess_which_fixes_it(built, tmp_path):
    "A manifest with absolute paths (kit before caches moved): one line saying what to run; running it keeps every image."
    cache = tmp_path / 'cache'
    shutil.copytree(built / 'here' / 'cache_test', cache)
    m = pd.read_parquet(cache / 'manifest.parquet')
    test_images = built / 'here' / 'comp' / 'test_images'
    m.assign(source=[str(test_images / s) for s in m.source], output=[str(cache / o) for o in m.output]).to_parquet(cache / 'manifest.parquet')
    args = ['predict', '--model', built / 'here' / 'run', '--cache', cache, '--sample', built / 'here' / 'comp' / 'sample_submission.csv',
            '-o', tmp_path / 's.csv', '--workers', 0]
    r = kit(*args)
    assert r.returncode == 1 and 'written by an older kit' in r.stderr and 'kit preprocess' in r.stderr, r.stderr
    r = kit('preprocess', test_images, cache, '--windows', 'brain', '--size', 32, '--workers', 0)
    assert r.returncode == 0 and '0 written' in r.stderr, r.stderr
    assert kit('-q', *args).returncode == 0
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / 's.csv'), pd.read_csv(built / 'before.csv'))

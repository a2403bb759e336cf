"One image pipeline through the CLI: every cache format trains and predicts, any image shape batches, neighbouring slices as channels."
import pandas as pd
import pytest
import torch
import yaml

from kit.infer import load_run
from kit.submit import validate_submission
from kit.synth import make_competition, make_mammography
from kitcli import kit, ok

TINY = ['--size', 32, '--epochs', 1, '--bs', 8, '--n-folds', 3, '--workers', 0]


@pytest.fixture(scope='module')
def comp(tmp_path_factory):
    "A small competition whose bleeds span neighbouring slices."
    return make_competition(tmp_path_factory.mktemp('comp'), n_patients=9, slices=4, size=48, seed=5, bleeds='3d')


def first_conv_channels(run) -> int:
    "The input channels of the run's model."
    learn, _ = load_run(run, cpu=True)
    return next(m for m in learn.model.modules() if isinstance(m, torch.nn.Conv2d)).in_channels


@pytest.mark.parametrize('fmt,windows,context,channels', [('png', 'brain,subdural,bone', 0, 3),
                                                           ('png16', None, 1, 9),
                                                           ('npy', 'brain,subdural,bone,stroke', 1, 12)])
def test_every_cache_format_trains_and_predicts_the_same_from_dicoms_or_cache(comp, tmp_path, fmt, windows, context, channels):
    win = ['--windows', windows] if windows else []
    for split in ('train', 'test'):
        ok(kit('-q', 'preprocess', comp[f'{split}_images'], tmp_path / split, '--size', 32, '--format', fmt, '--workers', 0, *win))
    run = tmp_path / 'run'
    ok(kit('-q', 'train', '--labels', comp['train'], '--cache', tmp_path / 'train', '--out', run, '--context', context, *TINY))
    assert yaml.safe_load((run / 'config.yaml').read_text())['context'] == context
    assert first_conv_channels(run) == channels  # png16: the run's three windows of each slice, made on the batch
    from_dicoms, from_cache = tmp_path / 'a.csv', tmp_path / 'b.csv'
    ok(kit('-q', 'predict', '--model', run, '--data', comp['test_images'], '--sample', comp['sample'], '-o', from_dicoms, '--workers', 0))
    ok(kit('-q', 'predict', '--model', run, '--cache', tmp_path / 'test', '--sample', comp['sample'], '-o', from_cache, '--workers', 0))
    assert validate_submission(from_dicoms, comp['sample']) == []
    pd.testing.assert_frame_equal(pd.read_csv(from_dicoms), pd.read_csv(from_cache))


def test_cropped_cache_of_mixed_sizes_trains(comp, tmp_path):
    ok(kit('-q', 'preprocess', comp['train_images'], tmp_path / 'cache', '--size', 32, '--crop', '--workers', 0))
    manifest = pd.read_parquet(tmp_path / 'cache' / 'manifest.parquet')
    assert manifest[['height', 'width']].drop_duplicates().shape[0] > 1  # each body box its own shape
    ok(kit('-q', 'train', '--labels', comp['train'], '--cache', tmp_path / 'cache', '--out', tmp_path / 'run', *TINY))


def test_context_from_dicoms_trains_predicts_and_explains(comp, tmp_path):
    run = tmp_path / 'run'
    ok(kit('-q', 'train', comp['train_images'], '--labels', comp['train'], '--out', run, '--context', 2, *TINY))
    assert first_conv_channels(run) == 15
    ok(kit('-q', 'predict', '--model', run, '--data', comp['test_images'], '--sample', comp['sample'], '-o', tmp_path / 's.csv', '--workers', 0))
    assert validate_submission(tmp_path / 's.csv', comp['sample']) == []
    ok(kit('-q', 'explain', run, '--data', comp['train_images'], '--labels', comp['train'], '-o', tmp_path / 'saliency.png'))
    assert (tmp_path / 'saliency.png').stat().st_size > 1000


def test_context_needs_slice_positions_in_the_manifest(comp, tmp_path):
    ok(kit('-q', 'preprocess', comp['train_images'], tmp_path / 'cache', '--size', 32, '--workers', 0))
    path = tmp_path / 'cache' / 'manifest.parquet'
    pd.read_parquet(path).drop(columns='slice_position').to_parquet(path)  # as an older kit wrote it
    r = kit('-q', 'train', '--labels', comp['train'], '--cache', tmp_path / 'cache', '--out', tmp_path / 'run', '--context', 1, *TINY)
    assert r.returncode == 1 and 'no slice positions' in r.stderr and 'run kit preprocess into it again' in r.stderr, r.stderr


def test_tall_mammograms_train_at_their_own_shape_and_predict_the_same_from_dicoms_or_cache(tmp_path):
    mg = make_mammography(tmp_path / 'mg', n_patients=6, shape=(512, 416), seed=2)
    ok(kit('-q', 'preprocess', mg['train_images'], tmp_path / 'train', '--size', 96, '--crop', '--windows', 'header', '--workers', 0))
    run = tmp_path / 'run'
    shape = ['--size', '96,48', '--epochs', 1, '--bs', 4, '--n-folds', 3, '--workers', 0]
    ok(kit('-q', 'train', '--labels', mg['train'], '--cache', tmp_path / 'train', '--out', run, *shape))
    assert yaml.safe_load((run / 'config.yaml').read_text())['size'] == [96, 48]
    learn, _ = load_run(run, cpu=True)
    assert learn.dls.test_dl([str(p) for p in sorted((tmp_path / 'train').rglob('*.png'))[:2]]).one_batch()[0].shape[-2:] == (96, 48)
    from_dicoms, from_cache = tmp_path / 'a.csv', tmp_path / 'b.csv'
    ok(kit('-q', 'predict', '--model', run, '--data', mg['test_images'], '--sample', mg['sample'], '-o', from_dicoms, '--workers', 0))
    ok(kit('-q', 'preprocess', mg['test_images'], tmp_path / 'test', '--size', 96, '--crop', '--windows', 'header', '--workers', 0))
    ok(kit('-q', 'predict', '--model', run, '--cache', tmp_path / 'test', '--sample', mg['sample'], '-o', from_cache, '--workers', 0))
    assert validate_submission(from_dicoms, mg['sample']) == []
    pd.testing.assert_frame_equal(pd.read_csv(from_dicoms), pd.read_csv(from_cache))
    ok(kit('-q', 'train', mg['train_images'], '--labels', mg['train'], '--out', tmp_path / 'from_dicoms', '--windows', 'header', *shape))


def test_a_cache_that_cannot_honour_the_run_is_one_line_in_train_and_predict(comp, tmp_path):
    "Other windows or a larger side than the cache holds: refused in one line, never resampled, ignored or recorded."
    for split in ('train', 'test'): ok(kit('-q', 'preprocess', comp[f'{split}_images'], tmp_path / split, '--size', 32, '--workers', 0))
    for extra, words in ((['--windows', 'stroke'], 'holds the windows 80:40,254:100,2000:500 and the run asks for 8:32'),
                         (['--size', 64], 'its images are 32 px on their longest side, and the run asks for 64x64: they would be upsampled')):
        r = kit('-q', 'train', '--labels', comp['train'], '--cache', tmp_path / 'train', '--out', tmp_path / 'bad', *TINY, *extra)
        assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and words in r.stderr, r.stderr
        assert not (tmp_path / 'bad').exists()
    ok(kit('-q', 'preprocess', comp['test_images'], tmp_path / 'test24', '--size', 24, '--workers', 0))
    ok(kit('-q', 'train', '--labels', comp['train'], '--cache', tmp_path / 'train', '--out', tmp_path / 'run', *TINY))
    r = kit('-q', 'predict', '--model', tmp_path / 'run', '--cache', tmp_path / 'test24', '--sample', comp['sample'], '-o', tmp_path / 's.csv')
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and 'needs images made with size=32, but the cache' in r.stderr, r.stderr


def test_a_runs_config_trains_the_same_run_again(comp, tmp_path):
    "`kit train --config run/config.yaml`: the same spec, the same submission, on one machine."
    ok(kit('-q', 'train', comp['train_images'], '--labels', comp['train'], '--out', tmp_path / 'run', '--context', 1, '--no-augment', *TINY))
    ok(kit('-q', 'train', '--config', tmp_path / 'run' / 'config.yaml', '--out', tmp_path / 'again'))
    assert (tmp_path / 'again' / 'config.yaml').read_text() == (tmp_path / 'run' / 'config.yaml').read_text()
    spec = yaml.safe_load((tmp_path / 'run' / 'config.yaml').read_text())
    assert (spec['context'], spec['augment'], spec['windows']) == (1, False, ['80:40', '254:100', '2000:500'])
    for run in ('run', 'again'):
        ok(kit('-q', 'predict', '--model', tmp_path / run, '--data', comp['test_images'], '--sample', comp['sample'], '-o', tmp_path / f'{run}.csv',
               '--workers', 0))
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / 'run.csv'), pd.read_csv(tmp_path / 'again.csv'))

"Masks through the command line: a SIIM-shaped folder to a valid submission, and the bad inputs of a mask competition, one line each."
import json

import pandas as pd
import pytest

from kit.masks import rle_decode
from kit.meta import dicom_meta
from kit.submit import image_shapes, validate_submission
from kitcli import kit, ok

TINY = ['--size', 64, '--epochs', 1, '--bs', 8, '--n-folds', 3, '--workers', 0, '--windows', 'hist']


@pytest.fixture(scope='module')
def siim(tmp_path_factory):
    "A small SIIM-shaped competition written by `kit synth`, and a mask run trained on it from the DICOMs."
    root = tmp_path_factory.mktemp('siim')
    ok(kit('-q', 'synth', root / 'comp', '--task', 'segment', '--patients', 16, '--size', 96))
    comp = root / 'comp'
    ok(kit('-q', 'train', comp / 'dicom-images-train', '--labels', comp / 'train-rle.csv', '--out', root / 'run', *TINY))
    return comp, root / 'run'


def test_a_rle_csv_trains_a_mask_run_that_predicts_a_valid_submission(siim, tmp_path):
    comp, run = siim
    config = (run / 'config.yaml').read_text()
    assert 'task: segment' in config  # inferred from the csv's EncodedPixels column
    post = json.loads((run / 'masks.json').read_text())
    assert post['convention'] == 'relative' and set(post['triplet']) == {'top_score', 'min_area', 'pixel'}
    sub = tmp_path / 'submission.csv'
    ok(kit('-q', 'predict', '--model', run, '--data', comp / 'dicom-images-test', '--sample', comp / 'sample_submission.csv', '-o', sub, '--tta'))
    ok(kit('meta', comp / 'dicom-images-test', '-o', tmp_path / 'meta.parquet'))
    ok(kit('-q', 'validate', sub, '--sample', comp / 'sample_submission.csv', '--format', 'siim-acr', '--meta', tmp_path / 'meta.parquet'))
    got, sample = pd.read_csv(sub, dtype=str), pd.read_csv(comp / 'sample_submission.csv', dtype=str)
    assert list(got.columns) == list(sample.columns) and sorted(got.ImageId) == sorted(sample.ImageId)
    shapes = image_shapes(dicom_meta(comp / 'dicom-images-test', progress=False))
    for image, cell in zip(got.ImageId, got.EncodedPixels): rle_decode(cell, shapes[image], 'relative')  # each decodes on its image
    r = ok(kit('explain', run, '--data', comp / 'dicom-images-test', '--labels', comp / 'test_answers.csv', '-o', tmp_path / 'masks.png'))
    assert 'masks of 4 images' in r.stderr and (tmp_path / 'masks.png').stat().st_size > 5000


def test_two_folds_average_and_an_unreadable_test_image_gets_an_empty_mask(siim, tmp_path):
    comp, run = siim
    test = tmp_path / 'test'
    test.mkdir()
    files = sorted((comp / 'dicom-images-test').rglob('*.dcm'))
    for f in files: (test / f.name).write_bytes(f.read_bytes())
    (test / files[0].name).write_bytes(files[0].read_bytes()[:400])  # cut short
    r = ok(kit('predict', '--model', run, run, '--data', test, '--sample', comp / 'sample_submission.csv', '-o', tmp_path / 's.csv'))
    assert '1 of' in r.stderr and 'get an empty mask instead of a prediction' in r.stderr and files[0].name in r.stderr
    got = pd.read_csv(tmp_path / 's.csv', dtype=str).set_index('ImageId')
    assert got.EncodedPixels[files[0].stem] == '-1'


def test_the_mask_runs_refusals_are_one_line(siim, tmp_path):
    comp, run = siim
    rows = pd.read_csv(comp / 'train-rle.csv', dtype=str, keep_default_na=False)
    rows.iloc[0, 1] = '5 999999'  # runs past its image
    rows.to_csv(tmp_path / 'past.csv', index=False)
    cases = [(['train', comp / 'dicom-images-train', '--labels', tmp_path / 'past.csv', '--out', tmp_path / 'r1', *TINY], 'past.csv'),
             (['train', comp / 'dicom-images-train', '--labels', comp / 'train-rle.csv', '--out', tmp_path / 'r2', *TINY[2:], '--size', 48],
              'multiple of 32'),
             (['predict', '--model', run, '--data', comp / 'dicom-images-test', '--sample', comp / 'sample_submission.csv', '-o', tmp_path / 's.csv',
               '--format', 'rsna-ich'], 'predicts masks and format rsna-ich has none')]
    for args, says in cases:
        r = kit('-q', *args)
        assert r.returncode == 1, r.stderr[-2000:]
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and says in lines[0], r.stderr[-2000:]
    assert not (tmp_path / 's.csv').exists()


def test_baseline_recognises_a_rle_csv_and_submits_masks(siim, tmp_path):
    comp, _ = siim
    out = tmp_path / 'baseline'
    ok(kit('-q', 'baseline', comp, '--out', out, '--size', 64, '--epochs', 1, '--workers', 0))
    assert 'task: segment' in (out / 'run' / 'config.yaml').read_text()
    assert validate_submission(out / 'submission.csv', comp / 'sample_submission.csv', fmt='siim-acr') == []


def test_a_gate_trained_on_the_rle_csv_empties_the_images_it_rules_out(siim, tmp_path):
    from kit.infer import predict
    from kit.tasks.segment import GATE_EMPTY_MASK
    comp, run = siim
    ok(kit('-q', 'train', comp / 'dicom-images-train', '--labels', comp / 'train-rle.csv', '--task', 'multi', '--out', tmp_path / 'gate', *TINY))
    assert 'mask' in pd.read_csv(tmp_path / 'gate' / 'folds.csv').columns  # 0/1 per image read from the run lengths
    sub = tmp_path / 's.csv'
    ok(kit('-q', 'predict', '--model', run, '--gate', tmp_path / 'gate', '--data', comp / 'dicom-images-test', '--sample', comp / 'sample_submission.csv', '-o', sub))
    p = predict(tmp_path / 'gate', comp / 'dicom-images-test', workers=0, progress=False).set_index('image')['mask']
    ok(kit('-q', 'predict', '--model', run, '--data', comp / 'dicom-images-test', '--sample', comp / 'sample_submission.csv', '-o', tmp_path / 'plain.csv'))
    got, plain = (pd.read_csv(f, dtype=str).set_index('ImageId').EncodedPixels for f in (sub, tmp_path / 'plain.csv'))
    assert all(got[i] == ('-1' if p[i] < GATE_EMPTY_MASK else plain[i]) for i in p.index)
    assert validate_submission(sub, comp / 'sample_submission.csv', fmt='siim-acr') == []

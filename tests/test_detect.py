"Boxes through the command line: VinBigData- and RSNA-pneumonia-shaped folders to valid submissions, and the bad inputs of a box competition, one line each."
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from kit.boxes import parse_prediction_string
from kit.meta import dicom_meta
from kit.submit import image_shapes, validate_submission
from kitcli import kit, ok

TINY = ['--size', 64, '--epochs', 1, '--bs', 8, '--n-folds', 3, '--workers', 0, '--windows', 'hist']
SMALL = ['--shape', '260,240']


def _synth(root, like):
    "A small competition of `kit synth --task detect --like`, small images so that tests stay quick."
    ok(kit('-q', 'synth', root, '--task', 'detect', '--like', like, '--patients', 16, *SMALL))
    return root


@pytest.fixture(scope='module')
def vbd(tmp_path_factory):
    "A small VinBigData-shaped competition and a box run trained on it from the DICOMs."
    root = tmp_path_factory.mktemp('vbd')
    comp = _synth(root / 'comp', 'vinbigdata')
    ok(kit('-q', 'train', comp / 'train', '--labels', comp / 'train.csv', '--out', root / 'run', *TINY))
    return comp, root / 'run'


def _boxes_inside(sub, fmt, folder, id_col):
    "Every prediction string of `sub` parses in `fmt`, and each box lies in its image."
    shapes = image_shapes(dicom_meta(folder, progress=False))
    for image, cell in zip(sub[id_col], sub.PredictionString.fillna('')):
        boxes = parse_prediction_string(cell, fmt, shapes[image])  # refuses a box outside the image
        assert np.isfinite(boxes.conf).all()


def test_a_vinbigdata_csv_trains_a_box_run_that_predicts_a_valid_submission(vbd, tmp_path):
    comp, run = vbd
    assert 'task: detect' in (run / 'config.yaml').read_text()  # inferred from the csv's columns
    post = json.loads((run / 'boxes.json').read_text())
    assert post['format'] == 'vinbigdata' and 0 <= post['valid_score'] <= 1
    assert 'score' in pd.read_csv(run / 'metrics.csv').columns
    sub = tmp_path / 'submission.csv'
    ok(kit('-q', 'predict', '--model', run, '--data', comp / 'test', '--sample', comp / 'sample_submission.csv', '-o', sub, '--tta'))
    ok(kit('meta', comp / 'test', '-o', tmp_path / 'meta.parquet'))
    ok(kit('-q', 'validate', sub, '--sample', comp / 'sample_submission.csv', '--format', 'vinbigdata', '--meta', tmp_path / 'meta.parquet'))
    got, sample = pd.read_csv(sub, dtype=str, keep_default_na=False), pd.read_csv(comp / 'sample_submission.csv', dtype=str)
    assert list(got.columns) == list(sample.columns) and sorted(got.image_id) == sorted(sample.image_id)
    _boxes_inside(got, 'vinbigdata', comp / 'test', 'image_id')
    assert all(' 14 ' in f' {s} ' for s in got.PredictionString)  # every image scores 'No finding' too
    r = ok(kit('explain', run, '--data', comp / 'test', '--labels', comp / 'test_answers.csv', '-o', tmp_path / 'boxes.png'))
    assert 'boxes of 4 images' in r.stderr and (tmp_path / 'boxes.png').stat().st_size > 5000
    ok(kit('meta', comp / 'train', '-o', tmp_path / 'train_meta.parquet'))
    ok(kit('-q', 'eda', tmp_path / 'train_meta.parquet', '--labels', comp / 'train.csv', '-o', tmp_path / 'eda', '--workers', 0))
    assert (tmp_path / 'eda' / 'boxes.png').stat().st_size > 5000 and 'finding' in (tmp_path / 'eda' / 'audit.csv').read_text()


def test_two_runs_fuse_and_an_unreadable_test_image_gets_no_finding(vbd, tmp_path):
    comp, run = vbd
    test = tmp_path / 'test'
    test.mkdir()
    files = sorted((comp / 'test').glob('*.dicom'))
    for f in files: (test / f.name).write_bytes(f.read_bytes())
    (test / files[0].name).write_bytes(files[0].read_bytes()[:400])  # cut short
    moved = tmp_path / 'moved'  # a run copied elsewhere and read-only, as a Kaggle dataset is
    shutil.copytree(run, moved)
    for f in [moved, *moved.iterdir()]: f.chmod(0o555 if f.is_dir() else 0o444)
    r = ok(kit('predict', '--model', run, moved, '--data', test, '--sample', comp / 'sample_submission.csv', '-o', tmp_path / 's.csv'))
    assert '1 of' in r.stderr and 'get no box instead of a prediction' in r.stderr and files[0].name in r.stderr
    got = pd.read_csv(tmp_path / 's.csv', dtype=str, keep_default_na=False).set_index('image_id')
    assert got.PredictionString[files[0].stem] == '14 1 0 0 1 1'
    one = pd.read_csv(tmp_path / 's.csv', dtype=str, keep_default_na=False)
    assert validate_submission(one, comp / 'sample_submission.csv', fmt='vinbigdata') == []


@pytest.mark.parametrize('like, labels, train, test, per_box', [
    ('rsna-pneumonia', 'stage_2_train_labels.csv', 'stage_2_train_images', 'stage_2_test_images', 5),  # conf x y width height
    ('siim-covid-image', 'train_image_level.csv', 'train', 'test', 6)])  # opacity conf x0 y0 x1 y1, in study/series folders
def test_rsna_pneumonia_and_siim_covid_folders_train_and_submit_their_own_strings(tmp_path, like, labels, train, test, per_box):
    comp = _synth(tmp_path / 'comp', like)
    ok(kit('-q', 'train', comp / train, '--labels', comp / labels, '--out', tmp_path / 'run', *TINY))
    assert json.loads((tmp_path / 'run' / 'boxes.json').read_text())['format'] == like
    sub = tmp_path / 'submission.csv'
    ok(kit('-q', 'predict', '--model', tmp_path / 'run', '--data', comp / test, '--sample', comp / 'sample_submission.csv', '-o', sub, '--tta'))
    got = pd.read_csv(sub, dtype=str, keep_default_na=False)
    assert validate_submission(got, comp / 'sample_submission.csv', fmt=like) == []
    _boxes_inside(got.assign(image=got.iloc[:, 0].str.replace('_image', '')), like, comp / test, 'image')
    assert all(len(s.split()) % per_box == 0 for s in got.PredictionString)


def test_the_box_runs_refusals_are_one_line(vbd, tmp_path):
    comp, run = vbd
    rows = pd.read_csv(comp / 'train.csv', dtype=str, keep_default_na=False)
    i = rows.index[rows.class_id != '14'][0]
    rows.loc[i, 'x_max'] = str(float(rows.loc[i, 'x_min']) - 5)  # ends before it starts
    rows.to_csv(tmp_path / 'backwards.csv', index=False)
    cases = [(['train', comp / 'train', '--labels', tmp_path / 'backwards.csv', '--out', tmp_path / 'r1', *TINY], f'backwards.csv: line {i + 2}: x_max'),
             (['predict', '--model', run, '--data', comp / 'test', '--sample', comp / 'sample_submission.csv', '-o', tmp_path / 's.csv',
               '--format', 'siim-acr'], 'predicts boxes and format siim-acr has none'),
             (['predict', '--model', run, '--data', comp / 'test', '--sample', comp / 'sample_submission.csv', '-o', tmp_path / 's.csv',
               '--format', 'rsna-pneumonia'], 'learnt the classes of vinbigdata labels, which format rsna-pneumonia does not have')]
    for args, says in cases:
        r = kit('-q', *args)
        assert r.returncode == 1, r.stderr[-2000:]
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and says in lines[0], r.stderr[-2000:]
    assert not (tmp_path / 's.csv').exists()


def test_a_gate_trained_on_the_box_csv_scores_no_finding(vbd, tmp_path):
    from kit.infer import predict
    comp, run = vbd
    ok(kit('-q', 'train', comp / 'train', '--labels', comp / 'train.csv', '--task', 'multi', '--out', tmp_path / 'gate', *TINY))
    assert 'finding' in pd.read_csv(tmp_path / 'gate' / 'folds.csv').columns  # per-image labels read from the box csv
    sub = tmp_path / 's.csv'
    ok(kit('-q', 'predict', '--model', run, '--gate', tmp_path / 'gate', '--data', comp / 'test', '--sample', comp / 'sample_submission.csv', '-o', sub))
    finding = predict(tmp_path / 'gate', comp / 'test', workers=0, progress=False).set_index('image').finding
    got = pd.read_csv(sub, dtype=str, keep_default_na=False).set_index('image_id').PredictionString
    for image, cell in got.items():
        none = parse_prediction_string(cell, 'vinbigdata').query('class_id == 14')
        assert len(none) == 1 and abs(none.conf.iat[0] - (1 - finding[image])) < 1e-3, (cell, finding[image])
    r = kit('-q', 'predict', '--model', run, '--gate', run, '--data', comp / 'test', '--sample', comp / 'sample_submission.csv', '-o', tmp_path / 'x.csv')
    assert r.returncode == 1 and r.stderr.strip().splitlines() == [r.stderr.strip()] and 'a gate is a classification run' in r.stderr


def test_baseline_recognises_a_box_csv_and_submits_boxes(vbd, tmp_path):
    comp, _ = vbd
    out = tmp_path / 'baseline'
    ok(kit('-q', 'baseline', comp, '--out', out, '--size', 64, '--epochs', 1, '--workers', 0))
    assert 'task: detect' in (out / 'run' / 'config.yaml').read_text()
    assert 'labels train.csv (vinbigdata' in (out / 'report.md').read_text()
    assert validate_submission(out / 'submission.csv', comp / 'sample_submission.csv', fmt='vinbigdata') == []

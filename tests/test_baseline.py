"`kit baseline INPUT` on generated competitions in three layouts; a layout it cannot tell stops it with one line naming the option."
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from kit.dicom import read_dicom
from kit.submit import validate_submission
from kit.synth import LABELS, make_competition
from kitcli import kit

TINY = ['--size', '32', '--epochs', '1', '--workers', '0']  # the budget's choice left out: one epoch at 32 px


def headers(folder) -> pd.DataFrame:
    "File stem, PatientID and StudyInstanceUID of each DICOM under `folder`."
    rows = [(p, read_dicom(p, header_only=True)) for p in Path(folder).rglob('*.dc*')]
    return pd.DataFrame([dict(path=p, image=p.stem, patient=ds.PatientID, study=ds.StudyInstanceUID) for p, ds in rows])


def wide(long_csv) -> pd.DataFrame:
    "Long RSNA ICH labels (`ID_<image>_<label>`, Label) as a wide table, one row per image."
    df = pd.read_csv(long_csv)
    parts = df.ID.str.rsplit('_', n=1)
    return df.assign(image=parts.str[0], label=parts.str[1]).pivot(index='image', columns='label', values='Label')[list(LABELS)].reset_index()


def one_line_naming(r, option):
    "The run stopped with exit 2 and one line that names `option`."
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and option in lines[0], (r.returncode, r.stderr[-2000:])
    return lines[0]


def check_outputs(out, sample):
    "The submission is valid against `sample`, row for row; the report and the run are there."
    assert validate_submission(out / 'submission.csv', sample) == []
    assert pd.read_csv(out / 'submission.csv').iloc[:, 0].tolist() == pd.read_csv(sample).iloc[:, 0].tolist()
    report = (out / 'report.md').read_text()
    assert '| train |' in report and '## Leakage audit' in report and 'valid_loss' in report, report
    assert (out / 'run' / 'model.pkl').exists() and (out / 'batch.png').exists()
    return report


@pytest.fixture
def comp(tmp_path):
    "A small generated RSNA-ICH-style competition: flat folders, long labels, a long sample, and the answers (solution.csv)."
    return make_competition(tmp_path / 'comp', n_patients=8, slices=3, size=64, seed=2)


def test_rsna_ich_long_labels_and_the_budget_plan(comp, tmp_path):
    "As generated: labels by file name in the long form, one submission row per image; the budget picks side and epochs."
    r = kit('baseline', comp['train'].parent, '--out', tmp_path / 'out', '--minutes', '0.3', '--workers', '0')
    assert r.returncode == 0, r.stderr[-3000:]
    assert ('found: train images train_images (18 DICOMs), test images test_images (6 DICOMs), labels train.csv (long, 4 label(s): '
            'intraparenchymal, intraventricular, subdural, any; ids are file names), sample sample_submission.csv') in r.stderr
    report = check_outputs(tmp_path / 'out', comp['sample'])
    assert 'one row per test image' in report
    plan = yaml.safe_load((tmp_path / 'out' / 'baseline.yaml').read_text())['plan']
    config = yaml.safe_load((tmp_path / 'out' / 'run' / 'config.yaml').read_text())
    assert plan['size'] in (128, 96, 64, 32) and 1 <= plan['epochs'] <= 20 and plan['arch'] == 'resnet18', plan
    assert (config['size'], config['epochs'], config['arch']) == ([plan['size']] * 2, plan['epochs'], plan['arch'])  # the plan reached training ((H, W))
    assert plan['context'] == config['context'] == 1  # CT series of 3 slices: each image with its neighbours
    assert f"Plan: resnet18 at {plan['size']} px, {plan['epochs']} epoch(s)" in report and '1 neighbouring slice(s) on either side' in report


def test_wide_patient_labels_two_label_csvs_then_labels_settles_it(comp, tmp_path):
    "Patient-level labels in a wide csv beside the image-level long one: ambiguous until --labels; then images averaged per patient."
    root, h = comp['train'].parent, headers(comp['train'].parent)
    patient = dict(zip(h.image, h.patient))
    per_patient = lambda csv: wide(csv).assign(patient_id=lambda d: d.image.map(patient)).groupby('patient_id')[list(LABELS)].max().reset_index()
    per_patient(comp['train']).to_csv(root / 'train_patients.csv', index=False)
    sample = per_patient(comp['solution']).assign(**{l: 0.5 for l in LABELS})
    sample.to_csv(comp['sample'], index=False)
    comp['solution'].unlink()
    line = one_line_naming(kit('baseline', root, '--out', tmp_path / 'out'), '--labels')
    assert 'train.csv' in line and 'train_patients.csv' in line, line
    assert not (tmp_path / 'out').exists()  # stopped before writing anything

    r = kit('baseline', root, '--out', tmp_path / 'out', '--labels', 'train_patients.csv', '--context', 0, *TINY)
    assert r.returncode == 0, r.stderr[-3000:]
    assert yaml.safe_load((tmp_path / 'out' / 'run' / 'config.yaml').read_text())['context'] == 0  # as asked
    assert 'labels train_patients.csv (wide, 4 label(s): intraparenchymal, intraventricular, subdural, any; ids are PatientIDs)' in r.stderr
    report = check_outputs(tmp_path / 'out', comp['sample'])
    assert 'images reduced to PatientID by the mean' in report, report
    preds, sub = pd.read_csv(tmp_path / 'out' / 'predictions.csv'), pd.read_csv(tmp_path / 'out' / 'submission.csv')
    mean = preds.assign(patient_id=preds.image.map(patient)).groupby('patient_id')[list(LABELS)].mean()
    pd.testing.assert_frame_equal(sub.set_index('patient_id'), mean.loc[sub.patient_id], check_names=False)


def test_nested_dicom_folders_study_sample_and_no_sample(comp, tmp_path):
    "`train_images/<patient>/<study>/<image>.dicom`, image labels, a sample per study: the max per study; without a sample, --sample."
    root, h = comp['train'].parent, headers(comp['train'].parent)
    for row in h.itertuples():
        dest = row.path.parent / row.patient / row.study / f'{row.image}.dicom'
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(row.path, dest)
    study = dict(zip(h.image, h.study))
    test_studies = wide(comp['solution']).image.map(study).unique()
    pd.DataFrame({'ID': [f'{s}_{l}' for s in test_studies for l in LABELS], 'Label': 0.5}).to_csv(root / 'study_sample.csv', index=False)
    comp['sample'].unlink(); comp['solution'].unlink()
    one_line_naming(kit('baseline', root, '--out', tmp_path / 'out'), '--sample')

    r = kit('baseline', root, '--out', tmp_path / 'out', '--sample', root / 'study_sample.csv', *TINY)
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'found: train images train_images (18 DICOMs), test images test_images (6 DICOMs), labels train.csv (long' in r.stderr
    report = check_outputs(tmp_path / 'out', root / 'study_sample.csv')
    assert 'images reduced to StudyInstanceUID by the max' in report, report
    preds, sub = pd.read_csv(tmp_path / 'out' / 'predictions.csv'), pd.read_csv(tmp_path / 'out' / 'submission.csv')
    top = preds.assign(study=preds.image.map(study)).groupby('study')['any'].max()
    any_rows = sub[sub.ID.str.endswith('_any')]
    assert any_rows.Label.tolist() == pytest.approx(top.loc[any_rows.ID.str[:-4]].tolist())


def test_layout_errors_name_the_option(tmp_path):
    "Two test folders, no train folder, labels that are not, an --out inside the competition, a sample of other ids: one line each."
    root = tmp_path / 'comp'
    make_competition(root, n_patients=4, slices=1, size=32)
    shutil.copytree(root / 'test_images', root / 'test_images_extra')
    line = one_line_naming(kit('baseline', root), '--test')
    assert 'test_images (1)' in line and 'test_images_extra (1)' in line, line
    (root / 'train_images').rename(root / 'images')
    one_line_naming(kit('baseline', root, '--test', 'test_images'), '--train')
    one_line_naming(kit('baseline', root, '--test', 'test_images', '--train', 'images', '--labels', 'sample_submission.csv'), '--labels')
    r = kit('baseline', root, '--train', 'images', '--test', 'test_images', '--out', root / 'out')
    assert r.returncode == 1 and 'never writes into the competition folder' in r.stderr.strip().splitlines()[-1], r.stderr
    pd.DataFrame({'id': ['x', 'y'], 'any': 0.5}).to_csv(tmp_path / 'other.csv', index=False)  # another competition's sample
    r = kit('-q', 'baseline', root, '--train', 'images', '--test', 'test_images', '--sample', tmp_path / 'other.csv', '--out', tmp_path / 'o')
    assert 'its ids' in one_line_naming(r, '--sample') and not (tmp_path / 'o' / 'run').exists()  # stopped before training


def test_default_output_is_kaggle_working_in_a_kernel(monkeypatch):
    "In a kernel the baseline writes to /kaggle/working, elsewhere to ./baseline."
    from kit.baseline import default_out
    monkeypatch.delenv('KAGGLE_KERNEL_RUN_TYPE', raising=False)
    assert default_out() == Path('baseline') or Path('/kaggle/input').is_dir()
    monkeypatch.setenv('KAGGLE_KERNEL_RUN_TYPE', 'Interactive')
    assert default_out() == Path('/kaggle/working')


def test_long_ct_series_get_slice_runs_on_every_fold_then_a_series_stage(tmp_path):
    "CT series of 8 slices or more: the slice model on each of 3 folds, a series stage on their out-of-fold predictions, the submission from both."
    comp = make_competition(tmp_path / 'comp', n_patients=12, slices=8, size=64, seed=3, bleeds='3d', shift='hospital')
    r = kit('baseline', comp['train'].parent, '--out', tmp_path / 'out', *TINY)
    assert r.returncode == 0, r.stderr[-3000:]  # bleeds.csv beside train.csv: the one named like train* is the labels
    assert 'on each of 3 folds, then a series stage' in r.stderr
    report = check_outputs(tmp_path / 'out', comp['sample'])
    assert 'the series stage, fold 0 of 3' in report and 'neighbouring' not in report, report
    assert yaml.safe_load((tmp_path / 'out' / 'run' / 'config.yaml').read_text())['task'] == 'series'
    assert all((tmp_path / 'out' / 'slices' / f'fold_{k}' / 'model.pkl').exists() for k in range(3))

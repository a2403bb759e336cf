"Submission presets at competition scale, checked against a plain computation of the same table."
import numpy as np
import pandas as pd
import pytest

from kit.submit import make_submission, validate_submission

rng = np.random.default_rng(0)
VERTEBRAE = [f'C{i}' for i in range(1, 8)] + ['patient_overall']


def study_uid(i) -> str:
    return f'1.2.826.0.1.3680043.{6200 + i}'


def test_cervical_spine_takes_the_max_over_each_study_slices():
    "2,000 studies of 30 to 80 slices each: every `<study>_<label>` row is the max of that study's slices."
    n_slices = rng.integers(30, 80, 2000)
    studies = np.repeat([study_uid(i) for i in range(2000)], n_slices)
    meta = pd.DataFrame({'fname': [f'/data/{s}/{k}.dcm' for s, k in zip(studies, range(len(studies)))], 'StudyInstanceUID': studies})
    preds = pd.DataFrame(rng.random((len(studies), len(VERTEBRAE))), columns=VERTEBRAE).assign(image=[str(k) for k in range(len(studies))])
    sample = pd.DataFrame({'row_id': [f'{study_uid(i)}_{l}' for i in rng.permutation(2000) for l in VERTEBRAE], 'fractured': 0.5})
    sub = make_submission(preds, sample, 'rsna-cervical-spine', meta)
    assert validate_submission(sub, sample) == [] and sub.row_id.tolist() == sample.row_id.tolist()
    best = {}
    for s, row in zip(studies, preds[VERTEBRAE].to_numpy()): best[s] = np.maximum(best.get(s, row), row)
    split = lambda r: (r[:-len('_patient_overall')], 'patient_overall') if r.endswith('_patient_overall') else r.rsplit('_', 1)
    expected = [best[study][VERTEBRAE.index(label)] for study, label in map(split, sample.row_id)]
    np.testing.assert_array_equal(sub.fractured.to_numpy(), expected)


def test_breast_takes_the_mean_over_each_patient_side_views():
    "5,000 patients, two sides, 2 to 6 views each: every `<patient>_<side>` row is the mean of its views."
    rows = [(p, side, v) for p in range(10000, 15000) for side in 'LR' for v in range(rng.integers(2, 7))]
    meta = pd.DataFrame({'fname': [f'/train_images/{p}/{k}.dcm' for k, (p, _, _) in enumerate(rows)],
                         'PatientID': [str(p) for p, _, _ in rows], 'ImageLaterality': [s for _, s, _ in rows]})
    preds = pd.DataFrame({'image': [str(k) for k in range(len(rows))], 'cancer': rng.random(len(rows))})
    sample = pd.DataFrame({'prediction_id': [f'{p}_{s}' for p in rng.permutation(np.arange(10000, 15000)) for s in 'LR'], 'cancer': 0.})
    sub = make_submission(preds, sample, 'rsna-breast', meta)
    assert validate_submission(sub, sample) == [] and sub.prediction_id.tolist() == sample.prediction_id.tolist()
    sums, counts = {}, {}
    for (p, s, _), v in zip(rows, preds.cancer):
        sums[f'{p}_{s}'] = sums.get(f'{p}_{s}', 0.) + v
        counts[f'{p}_{s}'] = counts.get(f'{p}_{s}', 0) + 1
    np.testing.assert_allclose(sub.cancer.to_numpy(), [sums[k] / counts[k] for k in sample.prediction_id], rtol=1e-12)


def test_rsna_ich_long_rows_at_full_test_size():
    "121,232 images (RSNA ICH stage 2) into 727,392 long rows, each the prediction of its image and subtype."
    labels = ['epidural', 'intraparenchymal', 'intraventricular', 'subarachnoid', 'subdural', 'any']
    images = [f'ID_{k:09x}' for k in rng.permutation(121232)]
    preds = pd.DataFrame(rng.random((len(images), 6)), columns=labels).assign(image=images)
    order = rng.permutation(len(images) * 6)
    sample = pd.DataFrame({'ID': [f'{images[k // 6]}_{labels[k % 6]}' for k in order], 'Label': 0.5})
    sub = make_submission(preds, sample, 'rsna-ich')
    assert validate_submission(sub, sample) == []
    np.testing.assert_array_equal(sub.Label.to_numpy(), preds[labels].to_numpy()[order // 6, order % 6])


@pytest.mark.parametrize('fmt', ['rsna-breast', 'rsna-cervical-spine'])
def test_aggregating_presets_need_the_test_metadata(fmt):
    preds = pd.DataFrame({'image': ['a'], 'cancer': [0.5]})
    with pytest.raises(ValueError, match='pass the test metadata'): make_submission(preds, pd.DataFrame({'id': ['x'], 'cancer': [0.]}), fmt)


ICH = ['epidural', 'intraparenchymal', 'intraventricular', 'subarachnoid', 'subdural', 'any']


def ich_competition(n=3):
    "Predictions for `n` RSNA ICH images and their long sample, every image with all six labels."
    images = [f'ID_{k:09x}' for k in rng.integers(0, 16**9, n)]
    preds = pd.DataFrame(rng.random((n, 6)), columns=ICH).assign(image=images)
    return preds, pd.DataFrame({'ID': [f'{i}_{l}' for i in images for l in ICH], 'Label': 0.5})


@pytest.mark.parametrize('fault, message', [
    ('wide sample', 'format rsna-ich needs a long sample (<id>_<label>, value): this one has 7 columns, ID, epidural, intraparenchymal, intraventricular, ...'),
    ('four labels', "format rsna-ich needs predictions for exactly epidural, intraparenchymal, intraventricular, subarachnoid, subdural, any, not "
                    "intraparenchymal, intraventricular, subdural, any"),
    ('sample of four labels', 'format rsna-ich: the sample has no rows for epidural, subarachnoid'),
    ('other ids', "format rsna-ich: 6 sample ids do not match ID_[0-9a-f]+_(epidural|intraparenchymal|intraventricular|subarachnoid|subdural|any), "
                  "e.g. '1.2.840.1_epidural'"),
    ('a row short', 'format rsna-ich needs one row per image and label: 1 images have other counts, e.g. {image} with 5'),
    ('a row twice', 'format rsna-ich needs one row per image and label: 1 images have other counts, e.g. {image} with 7')])
def test_rsna_ich_refuses_what_is_not_rsna_ich_in_one_line(fault, message):
    "The preset holds the competition's rules: long `ID_<image>_<subtype>` rows, exactly its six labels, each image once per label."
    preds, sample = ich_competition()
    image = preds.image[0]
    if fault == 'wide sample': sample = preds.rename(columns={'image': 'ID'})[['ID', *ICH]]
    if fault == 'four labels': preds = preds.drop(columns=['epidural', 'subarachnoid'])
    if fault == 'sample of four labels': sample = sample[~sample.ID.str.endswith(('_epidural', '_subarachnoid'))]
    if fault == 'other ids': sample = sample.assign(ID=sample.ID.str.replace(image, '1.2.840.1'))
    if fault == 'a row short': sample = sample.drop(index=0)
    if fault == 'a row twice': sample = pd.concat([sample, sample.iloc[:1]])
    with pytest.raises(ValueError) as e: make_submission(preds, sample, 'rsna-ich')
    assert str(e.value) == message.format(image=image)
    if fault != 'four labels': assert validate_submission(sample, sample, fmt='rsna-ich')[0] == message.format(image=image)


def test_rsna_ich_keeps_any_below_a_subtype():
    "The competition never required `any` >= each subtype: kit writes the model's values, neither refusing nor clipping them."
    preds, sample = ich_competition()
    preds = preds.assign(epidural=0.9, any=0.2)
    sub = make_submission(preds, sample, 'rsna-ich')
    assert validate_submission(sub, sample, fmt='rsna-ich') == []
    assert sub.Label[sub.ID.str.endswith('_any')].tolist() == [0.2] * 3 and sub.Label[sub.ID.str.endswith('_epidural')].tolist() == [0.9] * 3


def test_rsna_ich_on_the_command_line(tmp_path):
    "kit validate --format rsna-ich: a wide sample is one line and exit 1; the competition's own long sample passes."
    import subprocess, sys
    from pathlib import Path
    preds, sample = ich_competition()
    sample.to_csv(tmp_path / 'sample.csv', index=False)
    sample.assign(Label=0.1).to_csv(tmp_path / 'sub.csv', index=False)
    wide = preds.rename(columns={'image': 'ID'})[['ID', *ICH]]
    wide.to_csv(tmp_path / 'wide.csv', index=False)
    kit = lambda sub, smp: subprocess.run([str(Path(sys.executable).with_name('kit')), 'validate', sub, '--sample', smp, '--format', 'rsna-ich'],
                                          capture_output=True, text=True, timeout=300)
    assert kit(tmp_path / 'sub.csv', tmp_path / 'sample.csv').returncode == 0
    r = kit(tmp_path / 'wide.csv', tmp_path / 'wide.csv')
    assert r.returncode == 1 and r.stderr.strip() == f"{tmp_path / 'wide.csv'}: format rsna-ich needs a long sample (<id>_<label>, value): this one has 7 columns, ID, epidural, intraparenchymal, intraventricular, ..."


def test_validate_catches_malformed_boxes_and_masks(tmp_path):
    "`kit validate --format vinbigdata|siim-acr --meta`: each broken box string or mask is a line naming the image, exit 1; the sample itself passes."
    from kitcli import kit, ok
    det, seg = tmp_path / 'det', tmp_path / 'seg'
    ok(kit('-q', 'synth', det, '--task', 'detect', '--patients', 16))
    ok(kit('-q', 'synth', seg, '--task', 'segment', '--patients', 16, '--size', 64))
    ok(kit('-q', 'meta', det / 'test', '-o', tmp_path / 'det_meta.parquet'))
    ok(kit('-q', 'meta', seg / 'dicom-images-test', '-o', tmp_path / 'seg_meta.parquet'))
    sample = pd.read_csv(det / 'sample_submission.csv')
    ok(kit('validate', det / 'sample_submission.csv', '--sample', det / 'sample_submission.csv', '--format', 'vinbigdata', '--meta', tmp_path / 'det_meta.parquet'))
    bad = sample.assign(PredictionString=['3 0.9 10 20', '3 0.9 10 20 5000 60', '3 nan 10 20 30 40'][:len(sample)] + list(sample.PredictionString[3:]))
    bad.to_csv(tmp_path / 'boxes.csv', index=False)
    r = kit('validate', tmp_path / 'boxes.csv', '--sample', det / 'sample_submission.csv', '--format', 'vinbigdata', '--meta', tmp_path / 'det_meta.parquet')
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 3 and 'Traceback' not in r.stderr, r.stderr
    assert all(l.startswith(f'{tmp_path / "boxes.csv"}: {i}: ') for l, i in zip(lines, sample.image_id)), lines
    assert 'outside the' in lines[1] and 'image' in lines[1], lines
    sample = pd.read_csv(seg / 'sample_submission.csv')
    shape = pd.read_parquet(tmp_path / 'seg_meta.parquet')[['Rows', 'Columns']].iloc[0].tolist()
    bad = sample.assign(EncodedPixels=['5 10 5000 3', '5 x', '-1'] + list(sample.EncodedPixels[3:]))
    bad.to_csv(tmp_path / 'masks.csv', index=False)
    r = kit('validate', tmp_path / 'masks.csv', '--sample', seg / 'sample_submission.csv', '--format', 'siim-acr', '--meta', tmp_path / 'seg_meta.parquet')
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 2 and f'past the {shape[0]}x{shape[1]} image' in lines[0], r.stderr
    bad.iloc[1:].to_csv(tmp_path / 'missing.csv', index=False)  # an image left out
    r = kit('validate', tmp_path / 'missing.csv', '--sample', seg / 'sample_submission.csv', '--format', 'siim-acr')
    assert r.returncode == 1 and 'ids of the sample are missing' in r.stderr, r.stderr

"The generated competition: real files on disk, read back through kit in correct HU."
import hashlib

import numpy as np
import pandas as pd
import pytest

from kit.dicom import get_dicom_files, has_pixrep_bug, quiet_uid_warnings, read_dicom, read_pixels, sort_slices
from kit.synth import DX_SYNTAXES, LABELS, TRANSFER_SYNTAXES, ct_dataset, head_phantom, make_competition, make_detection, make_segmentation


@pytest.mark.parametrize('ts', TRANSFER_SYNTAXES, ids=lambda ts: ts.name)
@pytest.mark.parametrize('bug', [False, True], ids=['clean', 'pixrep_bug'])
def test_files_come_back_in_correct_hu(tmp_path, ts, bug):
    "The same HU slice written in each transfer syntax, with and without the RSNA bug, reads back exactly."
    hu = head_phantom(96, seed=7, lesions=('subdural',), ring=True)
    fn = tmp_path / 'slice.dcm'
    with quiet_uid_warnings(): ct_dataset(hu, ts=ts, pixrep_bug=bug).save_as(fn, enforce_file_format=True)
    ds = read_dicom(fn)
    assert ds.file_meta.TransferSyntaxUID == ts and has_pixrep_bug(ds) == bug
    np.testing.assert_array_equal(read_pixels(fn, fix_padding=False), hu)
    fixed = read_pixels(fn)
    assert fixed.min() >= -1100 and fixed.max() == hu.max()


def test_competition_layout(competition):
    files = get_dicom_files(competition['train_images']) + get_dicom_files(competition['test_images'])
    assert len(files) == 24
    dss = [read_dicom(f) for f in files]
    assert {d.file_meta.TransferSyntaxUID for d in dss} == set(TRANSFER_SYNTAXES)
    assert any(has_pixrep_bug(d) for d in dss)
    assert all(d.SOPInstanceUID.startswith('ID_') and f.stem == d.SOPInstanceUID for d, f in zip(dss, files))
    train = pd.read_csv(competition['train'])
    assert train.ID.str.rsplit('_', n=1).str[1].isin(LABELS).all() and set(train.Label) <= {0, 1}
    sample, solution = pd.read_csv(competition['sample']), pd.read_csv(competition['solution'])
    assert sample.ID.tolist() == solution.ID.tolist() and (sample.Label == 0.5).all()
    test_ids = {f.stem for f in get_dicom_files(competition['test_images'])}
    assert set(sample.ID.str.rsplit('_', n=1).str[0]) == test_ids


def test_all_generated_slices_are_clean_heads(competition):
    "After the fixes, every generated slice is in HU: air near -1000, no ring, no wrapped values."
    for f in get_dicom_files(competition['train_images']):
        px = read_pixels(f)
        assert -1100 <= px.min() <= -990 and 800 <= px.max() <= 3000, f


def test_series_sort_by_position(competition):
    "Slices of one patient sort by ImagePositionPatient, whatever their file order."
    dss = [read_dicom(f) for f in get_dicom_files(competition['train_images'])]
    patient = dss[0].PatientID
    series = sort_slices([d for d in dss if d.PatientID == patient][::-1])
    assert [float(d.ImagePositionPatient[2]) for d in series] == sorted(float(d.ImagePositionPatient[2]) for d in series)


@pytest.fixture(scope='module')
def competition_3d(tmp_path_factory):
    "A small competition with 3D bleeds, written by two workers."
    return make_competition(tmp_path_factory.mktemp('comp3d'), n_patients=8, slices=8, size=64, seed=4, workers=2, bleeds='3d')


def _files(folder) -> dict:
    "Every file under `folder`, relative name -> bytes."
    return {str(f.relative_to(folder)): f.read_bytes() for f in sorted(folder.rglob('*')) if f.is_file()}


def test_3d_is_the_same_for_one_worker_and_two(competition_3d, tmp_path):
    "Two workers write byte for byte what one writes, and a seed always gives the same files."
    one = make_competition(tmp_path, n_patients=8, slices=8, size=64, seed=4, workers=1, bleeds='3d')
    assert _files(one['train'].parent) == _files(competition_3d['train'].parent)


def test_3d_series_must_be_sorted_by_position(competition_3d):
    "InstanceNumbers are tied or shuffled; sorting by ImagePositionPatient gives slices 5 mm apart."
    dss = [read_dicom(f) for f in get_dicom_files(competition_3d['train_images'])]
    patients = {d.PatientID for d in dss}
    assert len(patients) == 6
    for patient in patients:
        series = sort_slices([d for d in dss if d.PatientID == patient])
        assert np.diff([float(d.ImagePositionPatient[2]) for d in series]).tolist() == [5.0] * 7
        numbers = [int(d.InstanceNumber) for d in series]
        assert len(set(numbers)) == 1 or numbers not in (sorted(numbers), sorted(numbers, reverse=True)), numbers


def test_3d_labels_are_runs_of_adjacent_slices(competition_3d):
    "Along each series a bleed's label is 1 on one run of at most 5 adjacent slices, and `any` is their union."
    dss = sort_slices([read_dicom(f) for f in get_dicom_files(competition_3d['train_images'])])
    labels = pd.read_csv(competition_3d['train'])
    image, label = labels.ID.str.rsplit('_', n=1).str[0], labels.ID.str.rsplit('_', n=1).str[1]
    wide = labels.assign(image=image, label=label).pivot(index='image', columns='label', values='Label')
    assert (wide['any'] == wide[list(LABELS[:-1])].max(axis=1)).all() and wide['any'].sum() > 0
    for patient in {d.PatientID for d in dss}:
        uids = [d.SOPInstanceUID for d in dss if d.PatientID == patient]
        for kind in LABELS[:-1]:
            on = np.flatnonzero(wide.loc[uids, kind].to_numpy())
            assert len(on) <= 5 and (np.diff(on) == 1).all(), (patient, kind, on)


def test_bleeds_must_be_known(tmp_path):
    with pytest.raises(ValueError, match="bleeds must be one of 2d, 3d, not '3D'"):
        make_competition(tmp_path, bleeds='3D')
    assert not any(tmp_path.iterdir())


# The default competitions are pinned byte for byte: the hashes of every file written were taken before
# `shift`, `make_detection` and `make_segmentation` existed (they also pin pydicom's writers and encoders).
PINNED = [(dict(n_patients=4, slices=3, size=32, seed=5), '021c3ee3dfb27c3da2f87b964881d42e1a65545e98338846fefdb6ff2e3b2ddd'),
          (dict(n_patients=4, slices=3, size=32, seed=5, bleeds='3d'), 'a7f013f2aec2a8abecca0c6fc64c0e9648f913dbc9e2a74c1d564768e3d3e791'),
          (dict(n_patients=8, slices=6, size=64, seed=1, bleeds='3d'), 'ee7fc110e50b90e208ef060ed3a93e919ac2793430d78ad46af716ebea05d1d0')]


def _bytes_digest(folder) -> str:
    "SHA-256 of the names and bytes of every file under `folder`."
    h = hashlib.sha256()
    for name, data in _files(folder).items(): h.update(name.encode()); h.update(data)
    return h.hexdigest()


@pytest.mark.parametrize('kwargs,digest', PINNED, ids=['2d', '3d', '3d-64px'])
def test_default_competitions_are_byte_identical(tmp_path, kwargs, digest):
    make_competition(tmp_path, **kwargs)
    assert _bytes_digest(tmp_path) == digest


def test_shift_refuses_what_it_cannot_do(tmp_path):
    with pytest.raises(ValueError, match="shift must be None or 'hospital', not 'Hospital'"):
        make_competition(tmp_path, bleeds='3d', shift='Hospital')
    with pytest.raises(ValueError, match="shift='hospital' needs bleeds='3d', not '2d'"):
        make_competition(tmp_path, shift='hospital')
    assert not any(tmp_path.iterdir())


@pytest.fixture(scope='module')
def shifted(tmp_path_factory):
    "A 3D competition whose test patients come from another hospital."
    return make_competition(tmp_path_factory.mktemp('shifted'), n_patients=12, slices=8, size=64, seed=0, bleeds='3d', shift='hospital')


def _brain(files) -> tuple[np.ndarray, np.ndarray]:
    "Raw stored values and HU (read_pixels) of the brain pixels (15 to 50 HU) of `files`."
    raw, hu = [], []
    for f in files:
        ds = read_dicom(f)
        px = read_pixels(ds)
        brain = (px > 15) & (px < 50)
        raw.append(ds.pixel_array[brain].ravel()); hu.append(px[brain].ravel())
    return np.concatenate(raw), np.concatenate(hu)


def test_shifted_test_set_stores_other_values_of_the_same_hu(shifted):
    "Raw stored values of brain differ (another rescale); read_pixels' HU of brain agree within a few HU."
    (raw_train, hu_train), (raw_test, hu_test) = (_brain(get_dicom_files(shifted[f'{s}_images'])) for s in ('train', 'test'))
    assert np.median(raw_test) - np.median(raw_train) > 2000 and np.percentile(raw_test, 5) > np.percentile(raw_train, 95)
    assert abs(np.median(hu_test) - np.median(hu_train)) < 3
    test = [read_dicom(f) for f in get_dicom_files(shifted['test_images'])]
    assert {(float(d.RescaleSlope), float(d.RescaleIntercept), float(d.SliceThickness)) for d in test} == {(0.5, -2048., 8.)}
    bleeds = pd.read_csv(shifted['bleeds'])
    assert bleeds.groupby('split').size().to_dict() == {'test': 3 * 5, 'train': 9 * 8}
    assert (bleeds.mimic_pixels > 0).groupby(bleeds.patient).sum().isin([0, 1]).all()  # a mimic is on one slice


def test_audit_finds_the_training_institution_and_the_new_hospital(shifted):
    "In training, InstitutionName gives the label away; the test set's InstitutionName and rescale tell it apart."
    from kit.audit import audit
    from kit.meta import dicom_meta
    meta = dicom_meta(shifted['train_images'], workers=1, progress=False)
    test_meta = dicom_meta(shifted['test_images'], workers=1, progress=False)
    res = audit(meta, shifted['train'], test_meta=test_meta)
    assert 'InstitutionName' in set(res.leaks[res.leaks.flag != ''].column)
    assert {'InstitutionName', 'RescaleSlope'} <= set(res.drift[res.drift.flag != ''].column)


def test_shift_is_the_same_for_one_worker_and_two(shifted, tmp_path):
    two = make_competition(tmp_path, n_patients=12, slices=8, size=64, seed=0, workers=2, bleeds='3d', shift='hospital')
    assert _files(two['train'].parent) == _files(shifted['train'].parent)


@pytest.fixture(scope='module')
def detection(tmp_path_factory):
    "The default detection competition (40 radiographs of 600-900 x 500-800 px)."
    return make_detection(tmp_path_factory.mktemp('detect'))


def test_detection_files_read_back_the_right_way_up(detection):
    "Every syntax, 12 and 16 bits, MONOCHROME1 and 2, CR and DX, sizes that vary and are never square; lungs dark after read_pixels."
    files = get_dicom_files(detection['train_images']) + get_dicom_files(detection['test_images'])
    assert len(files) == 40 and {f.suffix for f in files} == {'.dicom'}
    dss = [read_dicom(f) for f in files]
    assert {str(d.file_meta.TransferSyntaxUID) for d in dss} == set(DX_SYNTAXES)
    assert {d.PhotometricInterpretation for d in dss} == {'MONOCHROME1', 'MONOCHROME2'}
    assert {int(d.BitsStored) for d in dss} == {12, 16} and {d.Modality for d in dss} == {'CR', 'DX'}
    shapes = {(int(d.Rows), int(d.Columns)) for d in dss}
    assert len(shapes) > 30 and all(600 <= r <= 901 and 500 <= c <= 800 and r != c for r, c in shapes)
    for d in dss:
        px, (h, w) = read_pixels(d), (int(d.Rows), int(d.Columns))
        lungs = [px[int(0.4 * h):int(0.5 * h), int(c * w) - 10:int(c * w) + 10].mean() for c in (0.29, 0.71)]
        middle = px[int(0.4 * h):int(0.5 * h), int(0.5 * w) - 10:int(0.5 * w) + 10].mean()
        outside = px[:20, :20].mean()
        assert max(lungs) < middle - 0.15 * 2**d.BitsStored and outside < min(lungs), (d.filename, d.PhotometricInterpretation, lungs, middle)


def test_detection_labels_are_vinbigdata_shaped(detection):
    "VinBigData's columns; three readers an image who disagree a little; 'No finding' rows without boxes; about 40% without finding."
    train, answers = pd.read_csv(detection['train']), pd.read_csv(detection['solution'])
    columns = 'image_id,class_name,class_id,rad_id,x_min,y_min,x_max,y_max'.split(',')
    assert list(train.columns) == columns and list(answers.columns) == columns
    assert (train.groupby('image_id').rad_id.apply(lambda r: sorted(set(r))) .map(tuple) == ('R1', 'R2', 'R3')).all()
    names = {0: 'Aortic enlargement', 3: 'Cardiomegaly', 8: 'Nodule/Mass', 10: 'Pleural effusion', 14: 'No finding'}
    both = pd.concat([train, answers])
    assert (both.class_id.map(names) == both.class_name).all()
    assert both[both.class_id == 14][['x_min', 'y_min', 'x_max', 'y_max']].isna().all().all() and both[both.class_id != 14].x_min.notna().all()
    per_reader = train.groupby(['image_id', 'rad_id']).class_id
    assert ((per_reader.min() < 14) | (per_reader.size() == 1)).all()  # a reader's 'No finding' is his only row
    none = train.class_id == 14
    clean = pd.concat([train.groupby('image_id').class_id.min(), answers.groupby('image_id').class_id.min()]) == 14
    assert len(clean) == 40 and 0.25 <= clean.mean() <= 0.6
    seen = train[~none].groupby(['image_id', 'class_id']).rad_id.nunique()
    assert (seen == 2).any() and (seen == 3).any()  # a reader misses a faint finding
    spread = train[~none].groupby(['image_id', 'class_id'])[['x_min', 'y_min', 'x_max', 'y_max']].agg(lambda v: v.max() - v.min())
    width = train[~none].groupby(['image_id', 'class_id']).apply(lambda g: (g.x_max - g.x_min).mean())
    assert (spread.max(axis=1) > 0).mean() > 0.8 and (spread.max(axis=1) < 0.3 * width + 5).all()  # disagree, a little
    sample = pd.read_csv(detection['sample'])
    assert list(sample.columns) == ['image_id', 'PredictionString'] and set(sample.PredictionString) == {'14 1 0 0 1 1'}
    assert set(sample.image_id) == {f.stem for f in get_dicom_files(detection['test_images'])} == set(answers.image_id)


def test_detection_boxes_lie_on_what_is_drawn(detection):
    "Boxes lie inside their image, and the true boxes of a nodule or an aortic knob are brighter than a band around them."
    train, answers = pd.read_csv(detection['train']), pd.read_csv(detection['solution'])
    files = {f.stem: f for f in get_dicom_files(detection['train_images']) + get_dicom_files(detection['test_images'])}
    sizes = {k: (int(read_dicom(f, header_only=True).Rows), int(read_dicom(f, header_only=True).Columns)) for k, f in files.items()}
    boxes = pd.concat([train, answers]).dropna()
    for r in boxes.itertuples():
        h, w = sizes[r.image_id]
        assert 0 <= r.x_min < r.x_max <= w and 0 <= r.y_min < r.y_max <= h, r
    blobs = answers[answers.class_id.isin([0, 8])]
    assert len(blobs)
    for r in blobs.itertuples():
        px = read_pixels(files[r.image_id])
        x0, y0, x1, y1 = int(r.x_min), int(r.y_min), int(r.x_max), int(r.y_max)
        m = max(4, (x1 - x0) // 2)
        around = px[max(y0 - m, 0):y1 + m, max(x0 - m, 0):x1 + m]
        inside = px[y0:y1, x0:x1]
        ring = (around.sum() - inside.sum()) / (around.size - inside.size)
        assert inside.mean() > ring + 0.03 * px.max(), r


def test_detection_is_the_same_for_one_worker_and_two(tmp_path):
    one = make_detection(tmp_path/'one', n_patients=6, seed=3, rows=(100, 140), cols=(90, 130))
    two = make_detection(tmp_path/'two', n_patients=6, seed=3, workers=2, rows=(100, 140), cols=(90, 130))
    assert _files(one['train'].parent) == _files(two['train'].parent)


@pytest.fixture(scope='module')
def segmentation(tmp_path_factory):
    "The default segmentation competition (40 radiographs of 256 px)."
    return make_segmentation(tmp_path_factory.mktemp('segment'))


def test_segmentation_layout_is_siim_shaped(segmentation):
    "dicom-images-train/<study>/<series>/<SOPInstanceUID>.dcm, 8-bit MONOCHROME2; SIIM's csv headers, ' -1' for none."
    files = get_dicom_files(segmentation['train_images']) + get_dicom_files(segmentation['test_images'])
    assert len(files) == 40
    for f in files:
        ds = read_dicom(f)
        assert (f.parent.parent.name, f.parent.name, f.stem) == (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
        assert (ds.Rows, ds.Columns, ds.BitsStored, ds.PhotometricInterpretation) == (256, 256, 8, 'MONOCHROME2')
    for key in ('train', 'solution'):
        assert segmentation[key].read_text().splitlines()[0] == 'ImageId, EncodedPixels'
    assert segmentation['sample'].read_text().splitlines()[0] == 'ImageId,EncodedPixels'
    train, answers = pd.read_csv(segmentation['train']), pd.read_csv(segmentation['solution'])
    assert set(train.ImageId) | set(answers.ImageId) == {f.stem for f in files}
    assert set(answers.ImageId) == set(pd.read_csv(segmentation['sample']).ImageId) == {f.stem for f in get_dicom_files(segmentation['test_images'])}
    rles = pd.concat([train, answers])
    positive = rles[rles[' EncodedPixels'] != ' -1']
    assert 0.1 <= positive.ImageId.nunique() / 40 <= 0.45 and positive.ImageId.duplicated().any()  # some masks in two rows
    assert not rles[rles[' EncodedPixels'] == ' -1'].ImageId.duplicated().any() and not set(positive.ImageId) & set(rles[rles[' EncodedPixels'] == ' -1'].ImageId)


def _siim_decode(rle, width, height) -> np.ndarray:
    "The organisers' rle2mask (mask_functions.py) of SIIM-ACR, followed by its `.T`: the reference of the relative encoding."
    mask, array, pos = np.zeros(width * height), np.asarray([int(x) for x in rle.split()]), 0
    for start, length in zip(array[0::2], array[1::2]):
        pos += start
        mask[pos:pos + length] = 255
        pos += length
    return mask.reshape(width, height).T > 0


def test_segmentation_masks_decode_onto_the_dark_crescent(segmentation):
    "Each row decodes (synth's decoder and the organisers' agree) to a pocket inside the body, darker than the mirror lung."
    from kit.synth import _rle_decode
    rles = pd.concat([pd.read_csv(segmentation['train']), pd.read_csv(segmentation['solution'])])
    files = {f.stem: f for f in get_dicom_files(segmentation['train_images']) + get_dicom_files(segmentation['test_images'])}
    for image, group in rles[rles[' EncodedPixels'] != ' -1'].groupby('ImageId'):
        px = read_pixels(files[image])
        masks = [_rle_decode(r, px.shape) for r in group[' EncodedPixels']]
        for r, m in zip(group[' EncodedPixels'], masks): np.testing.assert_array_equal(m, _siim_decode(r, 256, 256))
        assert all(m.sum() > 30 for m in masks) and not (len(masks) == 2 and (masks[0] & masks[1]).any())
        m = np.any(masks, axis=0)
        assert px[m].mean() < px[:, ::-1][m].mean() - 10 and px[m].mean() > px[:10, :10].mean() + 8, image


def test_segmentation_is_the_same_for_one_worker_and_two(tmp_path):
    one = make_segmentation(tmp_path/'one', n_patients=8, seed=4, size=64)
    two = make_segmentation(tmp_path/'two', n_patients=8, seed=4, workers=2, size=64)
    assert _files(one['train'].parent) == _files(two['train'].parent)

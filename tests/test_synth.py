"The generated competition: real files on disk, read back through kit in correct HU."
import numpy as np
import pandas as pd
import pytest

from kit.dicom import get_dicom_files, has_pixrep_bug, quiet_uid_warnings, read_dicom, read_pixels, sort_slices
from kit.synth import LABELS, TRANSFER_SYNTAXES, ct_dataset, head_phantom, make_competition


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

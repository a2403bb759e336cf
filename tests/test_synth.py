"The generated competition: real files on disk, read back through kit in correct HU."
import numpy as np
import pandas as pd
import pytest

from kit.dicom import get_dicom_files, has_pixrep_bug, quiet_uid_warnings, read_dicom, read_pixels, sort_slices
from kit.synth import LABELS, TRANSFER_SYNTAXES, ct_dataset, head_phantom


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

"Bad input: one typed, one-line error naming the file and the cause; batch jobs record it and go on."
from types import SimpleNamespace

import numpy as np
import pytest
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate
from pydicom.uid import MPEG2MPML, UID

from kit.dicom import (DicomError, MissingDecoderError, MissingTagError, NoPixelDataError, NotDicomError, TruncatedError,
                       quiet_uid_warnings, read_dicom, read_pixels)
from kit.meta import dicom_meta
from kit.synth import ct_dataset, head_phantom

CT = get_testdata_file('CT_small.dcm')


def write(ds, path):
    "Save `ds` to `path`."
    with quiet_uid_warnings(): ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture
def bad_files(tmp_path) -> dict:
    "One file for each kind of failure, with the error type and the words its message must hold."
    raw = open(CT, 'rb').read()
    (tmp_path / 'empty.dcm').write_bytes(b'')
    (tmp_path / 'text.dcm').write_text('patient,label\n' * 30)
    (tmp_path / 'cut_header.dcm').write_bytes(raw[:1000])
    (tmp_path / 'cut_pixels.dcm').write_bytes(raw[:20000])
    no_rows = ct_dataset(np.zeros((4, 4)))
    del no_rows.Rows
    odd_ts = ct_dataset(np.zeros((4, 4)))
    odd_ts.file_meta.TransferSyntaxUID = MPEG2MPML  # a video syntax pydicom has no decoder for
    odd_ts.PixelData = encapsulate([b'\x00' * 16])
    sr = ct_dataset(np.zeros((4, 4)))
    del sr.PixelData
    return {
        tmp_path / 'empty.dcm': (NotDicomError, 'not a DICOM file'),
        tmp_path / 'text.dcm': (NotDicomError, 'not a DICOM file'),
        tmp_path / 'cut_header.dcm': (TruncatedError, 'truncated'),
        tmp_path / 'cut_pixels.dcm': (TruncatedError, 'truncated'),
        write(no_rows, tmp_path / 'no_rows.dcm'): (MissingTagError, 'missing required tag Rows'),
        write(odd_ts, tmp_path / 'mpeg2.dcm'): (MissingDecoderError, 'MPEG2'),
        write(sr, tmp_path / 'no_pixels.dcm'): (NoPixelDataError, 'no pixel data'),
        tmp_path / 'missing.dcm': (DicomError, 'file not found'),
    }


def test_each_bad_file_raises_its_typed_one_line_error(bad_files):
    for path, (kind, words) in bad_files.items():
        with pytest.raises(kind) as info: read_pixels(path)
        msg = str(info.value)
        assert msg.startswith(f'{path}: ') and words in msg and '\n' not in msg, msg


def test_missing_plugin_names_what_to_install(tmp_path, monkeypatch):
    "With no JPEG 2000 plugin, the error names the syntax and what pydicom says would add one."
    # A stub decoder: uninstalling a plugin is not possible inside this environment (pylibjpeg finds its plugins
    # through installed entry points); the dependency text is pydicom's own for this syntax.
    from pydicom.pixels.decoders import pylibjpeg as plugin
    import kit.dicom
    ts = UID('1.2.840.10008.1.2.4.90')
    needs = f"pylibjpeg - requires {', '.join(plugin.DECODER_DEPENDENCIES[ts])}"
    monkeypatch.setattr(kit.dicom, 'get_decoder', lambda uid: SimpleNamespace(is_available=False, missing_dependencies=[needs]))
    fn = write(ct_dataset(head_phantom(32), ts=ts), tmp_path / 'j2k.dcm')
    with pytest.raises(MissingDecoderError) as info: read_pixels(fn)
    msg = str(info.value)
    assert msg.startswith(f'{fn}: no decoder installed for JPEG 2000 Image Compression (Lossless Only)'), msg
    assert 'pylibjpeg-openjpeg' in msg and '\n' not in msg, msg


def test_batch_job_records_errors_and_keeps_the_good_rows(bad_files, tmp_path):
    good = write(ct_dataset(np.zeros((8, 8))), tmp_path / 'good.dcm')
    files = [p for p in bad_files if p.exists()] + [good]
    df = dicom_meta(files, pixel_stats=True, workers=2, progress=False)
    assert len(df) == len(files)
    ok = df[df.fname == str(good)].iloc[0]
    assert ok.error is None or ok.error != ok.error
    assert ok.img_max == 0
    assert df.error.notna().sum() == len(files) - 1

"kit's windowing against DCMTK's dcm2pnm, an independent implementation of the DICOM display pipeline."
import subprocess
from pathlib import Path

import numpy as np
import pytest

from kit.dicom import DicomError, read_dicom, read_pixels
from kit.window import header_window, header_window_count, window
from conftest import corpus_files, needs_dcmtk

pytestmark = needs_dcmtk


def read_pgm(path) -> np.ndarray:
    "An 8-bit binary PGM (P5) as an array."
    data = Path(path).read_bytes()
    magic, w, h, maxval = data.split(maxsplit=4)[:4]
    assert magic == b'P5' and int(maxval) == 255, (magic, maxval)
    return np.frombuffer(data[len(data) - int(w) * int(h):], dtype=np.uint8).reshape(int(h), int(w))


def dcmtk_window(fn, center, width, out) -> np.ndarray | None:
    "Frame 1 of `fn` rendered by dcm2pnm with window (center, width), or None when DCMTK cannot decode it."
    r = subprocess.run(['dcm2pnm', '--write-raw-pnm', '--no-overlays', '+Ww', f'{center:.4f}', f'{width:.4f}', str(fn), str(out)],
                       capture_output=True, timeout=60)
    return read_pgm(out) if r.returncode == 0 and Path(out).exists() else None


def first_frame(ds):
    "0 for a multi-frame dataset (whose frames come as a stack), else None."
    try: return 0 if int(ds.get('NumberOfFrames') or 1) > 1 else None
    except ValueError: return None


def kit_window(fn, center, width) -> np.ndarray:
    "Frame 1 of `fn` windowed by kit as a viewer shows it (MONOCHROME1 dark for low values), in 8-bit grey levels."
    ds = read_dicom(fn)
    px = read_pixels(ds, frame=first_frame(ds), fix_pixrep=False, fix_padding=False,
                     invert_monochrome1=False)
    out = window(px, center, width)
    return np.round((1 - out if ds.PhotometricInterpretation == 'MONOCHROME1' else out) * 255)


def mono_cases():
    "(file, center, width) for the monochrome corpus files kit decodes, with a window over their middle range."
    for fn in corpus_files():
        try:
            ds = read_dicom(fn)
            if ds.get('SamplesPerPixel', 1) != 1 or ds.get('PhotometricInterpretation') not in ('MONOCHROME1', 'MONOCHROME2'): continue
            px = read_pixels(ds, frame=first_frame(ds), fix_pixrep=False, fix_padding=False, invert_monochrome1=False)
        except DicomError: continue
        lo, hi = float(px.min()), float(px.max())
        if hi - lo < 4: continue
        yield fn, (lo + hi) / 2, (hi - lo) / 2


# DCMTK 3.6.7 renders 32-bit big-endian pixel data as white; kit reads these as their little-endian twin
# rtdose.dcm (asserted below), which DCMTK renders like kit.
DCMTK_BIG_ENDIAN_32BIT = {'rtdose_expb.dcm': 'rtdose.dcm', 'rtdose_expb_1frame.dcm': 'rtdose_1frame.dcm'}


def test_dcmtk_exclusions_are_dcmtk_bugs():
    "The files left out of the comparison decode in kit to the same values as their little-endian twins."
    from pydicom.data import get_testdata_file
    for big, little in DCMTK_BIG_ENDIAN_32BIT.items():
        np.testing.assert_array_equal(read_pixels(get_testdata_file(big)), read_pixels(get_testdata_file(little)))


def test_windowed_output_matches_dcmtk(tmp_path):
    "Every pixel within one grey level of DCMTK, on every monochrome corpus file that both decode."
    compared, dcmtk_failed, worst = 0, 0, {}
    for i, (fn, center, width) in enumerate(mono_cases()):
        if Path(fn).name in DCMTK_BIG_ENDIAN_32BIT: continue
        ref = dcmtk_window(fn, center, width, tmp_path / f'{i}.pgm')
        if ref is None: dcmtk_failed += 1; continue
        ours = kit_window(fn, center, width)
        assert ours.shape == ref.shape, fn
        worst[Path(fn).name] = float(np.abs(ours - ref).max())
        compared += 1
    print(f'compared {compared} files with DCMTK, {dcmtk_failed} that DCMTK could not decode')
    bad = {k: v for k, v in worst.items() if v > 1}
    assert compared >= 60 and not bad, bad


def test_generated_slices_match_dcmtk(competition, tmp_path):
    "The generated competition (four transfer syntaxes, the ring) windowed at brain 80:40, as in RSNA kernels."
    files = sorted(Path(competition['train_images']).glob('*.dcm'))
    compared = 0
    for i, fn in enumerate(files):
        if read_dicom(fn).file_meta.TransferSyntaxUID.name.startswith('JPEG 2000'): continue  # DCMTK has no JPEG 2000 decoder
        if read_dicom(fn).BitsStored == 12: continue  # the RSNA bug: DCMTK shows the wrong values kit fixes
        ref = dcmtk_window(fn, 40, 80, tmp_path / f'{i}.pgm')
        assert ref is not None, fn
        assert np.abs(kit_window(fn, 40, 80) - ref).max() <= 1, fn
        compared += 1
    assert compared >= 8


def dcmtk_header_voi(fn, option, out) -> np.ndarray | None:
    "Frame 1 of `fn` rendered by dcm2pnm with the file's first VOI window (`+Wi`) or VOI LUT (`+Wl`)."
    r = subprocess.run(['dcm2pnm', '--write-raw-pnm', '--no-overlays', option, '1', str(fn), str(out)], capture_output=True, timeout=60)
    return read_pgm(out) if r.returncode == 0 and Path(out).exists() else None


def test_header_windows_match_dcmtk(tmp_path):
    "`header_window` (WindowCenter/Width with the file's VOI LUT function, or a VOI LUT Sequence) against DCMTK."
    compared = {'+Wi': 0, '+Wl': 0}
    for i, fn in enumerate(corpus_files()):
        if Path(fn).name in DCMTK_BIG_ENDIAN_32BIT: continue
        try:
            ds = read_dicom(fn)
            if ds.get('SamplesPerPixel', 1) != 1 or header_window_count(ds) == 0: continue
            px = read_pixels(ds, frame=first_frame(ds), fix_pixrep=False, fix_padding=False)
        except DicomError: continue
        option = '+Wl' if ds.get('VOILUTSequence') else '+Wi'
        ref = dcmtk_header_voi(fn, option, tmp_path / f'{i}.pgm')
        if ref is None: continue
        ours = np.round(header_window(ds, px) * 255)
        assert np.abs(ours - ref).max() <= 1, (fn, option)
        compared[option] += 1
    print('header VOI compared with DCMTK:', compared)
    assert compared['+Wi'] >= 10, compared

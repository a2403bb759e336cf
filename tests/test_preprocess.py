"`kit preprocess` as a user runs it: DCMTK-exact windows, clean heads from buggy files, safe interruption."
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from kit.cache import read_manifest
from kit.dicom import get_dicom_files, quiet_uid_warnings, read_dicom
from kit.synth import ct_dataset, head_phantom, make_competition
from conftest import needs_dcmtk
from test_dcmtk import dcmtk_window

KIT = str(Path(sys.executable).with_name('kit'))


def kit(*args, **kw):
    "Run the installed `kit` console script."
    return subprocess.run([KIT, *map(str, args)], capture_output=True, text=True, timeout=600, **kw)


@needs_dcmtk
def test_cache_matches_dcmtk_at_native_size(competition, tmp_path):
    "`--windows 80:40` at native size against `dcm2pnm +Ww 40 80`: no pixel more than one grey level off."
    r = kit('preprocess', competition['train_images'], tmp_path / 'cache', '--windows', '80:40', '--workers', 2)
    assert r.returncode == 0, r.stderr
    manifest = read_manifest(tmp_path / 'cache')
    compared = 0
    for i, row in enumerate(manifest.itertuples()):
        source = Path(competition['train_images']) / row.source
        ds = read_dicom(source)
        if ds.file_meta.TransferSyntaxUID.name.startswith('JPEG 2000') or ds.BitsStored == 12: continue  # no J2K in DCMTK; it shows the RSNA bug
        ref = dcmtk_window(source, 40, 80, tmp_path / f'{i}.pgm')
        ours = np.asarray(Image.open(row.output)).astype(int)
        assert ref is not None and ours.shape == ref.shape and np.abs(ours - ref).max() <= 1, source
        compared += 1
    assert compared >= 8


def test_buggy_and_ringed_files_render_as_clean_heads(tmp_path):
    "The RSNA pixel-representation bug and the -2000 ring give the same image as a clean file, air outside."
    hu = head_phantom(128, seed=11, lesions=('intraparenchymal',))
    ringed = head_phantom(128, seed=11, lesions=('intraparenchymal',), ring=True)
    src = tmp_path / 'src'
    src.mkdir()
    for name, img, bug in [('clean', hu, False), ('bug', hu, True), ('ring', ringed, False), ('ring_bug', ringed, True)]:
        with quiet_uid_warnings(): ct_dataset(img, pixrep_bug=bug).save_as(src / f'{name}.dcm', enforce_file_format=True)
    assert kit('preprocess', src, tmp_path / 'out', '--windows', 'brain,subdural,bone', '--workers', 0).returncode == 0
    png = {n: np.asarray(Image.open(tmp_path / 'out' / f'{n}.png')) for n in ('clean', 'bug', 'ring', 'ring_bug')}
    np.testing.assert_array_equal(png['bug'], png['clean'])
    np.testing.assert_array_equal(png['ring_bug'], png['ring'])
    y, x = np.mgrid[:128, :128]
    outside = (y - 63.5)**2 + (x - 63.5)**2 > (0.98 * 64)**2
    assert (png['ring'][outside] == 0).all(), 'the ring is air (black) in every window'
    inside = ~outside
    np.testing.assert_array_equal(png['ring'][inside], png['clean'][inside])


def _count_outputs(folder) -> int:
    return len(list(Path(folder).rglob('*.png'))) if Path(folder).exists() else 0


def test_interrupted_run_resumes_to_the_same_outputs(tmp_path):
    "Kill `kit preprocess` half way, run it again: the same files as one clean run, none half-written."
    src = tmp_path / 'comp'
    make_competition(src, n_patients=40, slices=8, size=256, test_frac=0, seed=9, workers=2)
    n = len(get_dicom_files(src))
    args = ['-q', 'preprocess', src, None, '--windows', 'brain,subdural,bone', '--size', 192, '--workers', 1]
    first = subprocess.Popen([KIT, *map(str, [a if a is not None else tmp_path / 'resumed' for a in args])],
                             start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while _count_outputs(tmp_path / 'resumed') < n // 4 and time.time() < deadline and first.poll() is None: time.sleep(0.02)
    assert first.poll() is None, f'kit preprocess ended before the kill (exit {first.returncode})'
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    done_before = _count_outputs(tmp_path / 'resumed')
    assert 0 < done_before < n, f'kill came at {done_before} of {n}'
    assert not (tmp_path / 'resumed' / 'manifest.parquet').exists()

    r = kit(*[a if a is not None else tmp_path / 'resumed' for a in args])
    assert r.returncode == 0, r.stderr
    assert kit(*[a if a is not None else tmp_path / 'clean' for a in args]).returncode == 0
    resumed = pd.read_parquet(tmp_path / 'resumed' / 'manifest.parquet')
    assert (resumed.status == 'cached').sum() >= done_before - 2 and (resumed.status == 'error').sum() == 0
    assert not list((tmp_path / 'resumed').rglob('*.tmp'))
    for out in (tmp_path / 'clean').rglob('*.png'):
        twin = tmp_path / 'resumed' / out.relative_to(tmp_path / 'clean')
        np.testing.assert_array_equal(np.asarray(Image.open(twin)), np.asarray(Image.open(out)))
    assert _count_outputs(tmp_path / 'resumed') == _count_outputs(tmp_path / 'clean') == n


def test_changed_settings_are_refused_then_rebuilt(competition, tmp_path):
    assert kit('preprocess', competition['train_images'], tmp_path / 'c', '--size', 32, '--workers', 0).returncode == 0
    r = kit('preprocess', competition['train_images'], tmp_path / 'c', '--size', 48, '--workers', 0)
    assert r.returncode == 1 and 'other settings' in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert kit('preprocess', competition['train_images'], tmp_path / 'c', '--size', 48, '--workers', 0, '--rebuild').returncode == 0
    sizes = {Image.open(p).size for p in (tmp_path / 'c').rglob('*.png')}
    assert sizes == {(48, 48)}


def _tree(folder) -> dict:
    "Every path under `folder` with its size and modification time."
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in Path(folder).rglob('*')}


def test_source_is_never_written(competition, tmp_path):
    "As on Kaggle's read-only /kaggle/input: nothing under SRC is created, changed or removed, in every format."
    before = _tree(competition['train_images'])
    for fmt in ('png', 'png16', 'npy'):
        r = kit('preprocess', competition['train_images'], tmp_path / fmt, '--format', fmt, '--size', 32, '--workers', 2)
        assert r.returncode == 0, r.stderr
    assert _tree(competition['train_images']) == before
    hu = pd.read_parquet(tmp_path / 'png16' / 'manifest.parquet')
    assert (hu.status == 'ok').all() and (hu.offset == 32768).all()
    assert np.load(next((tmp_path / 'npy').rglob('*.npy'))).shape == (3, 32, 32)

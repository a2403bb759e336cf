"Faults during a batch run: a killed `kit`, a killed worker, two runs into one folder, a full disk. Nothing written is lost."
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from kit.cache import read_manifest
from kit.dicom import get_dicom_files
from kit.synth import make_competition

KIT = str(Path(sys.executable).with_name('kit'))
ARGS = ['--windows', 'brain,subdural,bone', '--size', 192]


def kit(*args, **kw) -> subprocess.CompletedProcess:
    "Run the installed `kit` console script."
    return subprocess.run([KIT, *map(str, args)], capture_output=True, text=True, timeout=600, **kw)


def start(src, out, workers=2) -> subprocess.Popen:
    "`kit preprocess SRC OUT` in the background, in a session of its own."
    return subprocess.Popen([KIT, *map(str, ['-q', 'preprocess', src, out, *ARGS, '--workers', workers])], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def pngs(folder) -> list[Path]:
    return sorted(Path(folder).rglob('*.png')) if Path(folder).exists() else []


def wait_for_outputs(proc, out, n):
    "Wait until `out` holds `n` images, with `proc` still running."
    deadline = time.time() + 120
    while len(pngs(out)) < n and time.time() < deadline and proc.poll() is None: time.sleep(0.02)
    assert proc.poll() is None, f'kit preprocess ended too early (exit {proc.returncode})'


def session_pids(sid) -> list[int]:
    "Processes of session `sid` still alive (zombies left out)."
    res = []
    for stat in Path('/proc').glob('[0-9]*/stat'):
        try: fields = stat.read_text().rsplit(')', 1)[1].split()
        except OSError: continue
        if int(fields[3]) == sid and fields[0] != 'Z': res.append(int(stat.parent.name))
    return res


def children(pid) -> list[int]:
    return [int(c) for c in Path(f'/proc/{pid}/task/{pid}/children').read_text().split()]


@pytest.fixture(scope='module')
def comp(tmp_path_factory) -> dict:
    "320 generated slices and one clean, uninterrupted cache of them."
    d = tmp_path_factory.mktemp('faults')
    make_competition(d / 'comp', n_patients=40, slices=8, size=256, test_frac=0, seed=9, workers=2)
    r = kit('-q', 'preprocess', d / 'comp', d / 'clean', *ARGS, '--workers', 2)
    assert r.returncode == 0, r.stderr
    return dict(src=d / 'comp', clean=d / 'clean', n=len(get_dicom_files(d / 'comp')))


@pytest.mark.parametrize('sig', [signal.SIGKILL, signal.SIGTERM])
def test_killed_kit_takes_its_workers_along_and_resumes_byte_identical(comp, tmp_path, sig):
    "kill -9 or SIGTERM of `kit` alone (not its group): its workers stop at once, and a rerun finishes the same bytes."
    out = tmp_path / 'cache'
    proc = start(comp['src'], out)
    wait_for_outputs(proc, out, comp['n'] // 4)
    proc.send_signal(sig); proc.wait()
    deadline = time.time() + 5
    while session_pids(proc.pid) and time.time() < deadline: time.sleep(0.05)
    assert not session_pids(proc.pid), 'workers outlived their parent'
    written = len(pngs(out))
    time.sleep(0.5)
    assert len(pngs(out)) == written < comp['n'], 'nothing is written after the kill'

    r = kit('-q', 'preprocess', comp['src'], out, *ARGS, '--workers', 2)
    assert r.returncode == 0, r.stderr
    m = pd.read_parquet(out / 'manifest.parquet')
    assert (m.status == 'cached').sum() == written and (m.status == 'ok').sum() == comp['n'] - written
    assert m.height.notna().all() and (m.height == 192).all() and (m.width == 192).all(), 'resumed rows keep their size'
    assert not list(out.rglob('*.tmp'))
    clean = pngs(comp['clean'])
    assert [p.relative_to(comp['clean']) for p in clean] == [p.relative_to(out) for p in pngs(out)]
    assert all(p.read_bytes() == (out / p.relative_to(comp['clean'])).read_bytes() for p in clean)


def test_an_empty_or_broken_output_is_not_taken_as_done(comp, tmp_path):
    out = tmp_path / 'cache'
    assert kit('-q', 'preprocess', comp['src'], out, *ARGS, '--workers', 2).returncode == 0
    empty, broken = pngs(out)[:2]
    empty.write_bytes(b''); broken.write_bytes(broken.read_bytes()[:20])
    assert kit('-q', 'preprocess', comp['src'], out, *ARGS, '--workers', 2).returncode == 0
    m = read_manifest(out).set_index('output')
    assert m.loc[str(empty), 'status'] == 'ok' and m.loc[str(broken), 'status'] == 'ok'
    assert (m.status == 'cached').sum() == comp['n'] - 2
    assert empty.read_bytes() == (comp['clean'] / empty.relative_to(out)).read_bytes()


def test_a_dead_worker_costs_one_row(comp, tmp_path):
    "SIGKILL one worker half way (as the OOM killer would): its file is one error row, every other file is cached."
    out = tmp_path / 'cache'
    proc = start(comp['src'], out)
    wait_for_outputs(proc, out, comp['n'] // 4)
    os.kill(children(proc.pid)[0], signal.SIGKILL)
    assert proc.wait(timeout=120) == 0, proc.stderr.read()
    m = pd.read_parquet(out / 'manifest.parquet')
    assert len(m) == comp['n'] and (m.status == 'error').sum() == 1 and (m.status == 'ok').sum() == comp['n'] - 1
    assert 'killed (SIGKILL' in m.error[m.status == 'error'].iloc[0]
    r = kit('-q', 'preprocess', comp['src'], out, *ARGS, '--workers', 2)
    m = pd.read_parquet(out / 'manifest.parquet')
    assert r.returncode == 0 and (m.status != 'error').all() and len(pngs(out)) == comp['n']


def test_a_second_run_into_the_same_folder_is_refused(comp, tmp_path):
    out = tmp_path / 'cache'
    first = start(comp['src'], out, workers=1)
    wait_for_outputs(first, out, 10)
    r = kit('preprocess', comp['src'], out, *ARGS, '--workers', 1)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert f'is being written by another kit run (pid {first.pid})' in r.stderr
    assert first.wait(timeout=300) == 0, first.stderr.read()
    m = pd.read_parquet(out / 'manifest.parquet')
    assert len(m) == comp['n'] and (m.status == 'ok').all()


@pytest.fixture
def small_disk(tmp_path):
    "A 400 KB tmpfs (root only)."
    mnt = tmp_path / 'disk'
    mnt.mkdir()
    if os.getuid() != 0 or subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=400k', 'tmpfs', mnt], capture_output=True).returncode:
        pytest.skip('a small tmpfs needs root and mount')
    yield mnt
    subprocess.run(['umount', mnt])


def test_a_full_disk_loses_nothing_written(comp, small_disk):
    "The disk fills mid-run: one line, no temporary file, every image on disk complete; a rerun elsewhere is unaffected."
    r = kit('-q', 'preprocess', comp['src'], small_disk / 'cache', *ARGS, '--workers', 2)
    assert 'Traceback' not in r.stderr and len(r.stderr.strip().splitlines()) <= 11, r.stderr
    assert 'No space left on device' in r.stderr
    assert not list(small_disk.rglob('*.tmp')) and not list(small_disk.rglob('.*.tmp'))
    written = pngs(small_disk / 'cache')
    assert written, 'some images fit'
    for p in written: Image.open(p).load()
    if (small_disk / 'cache' / 'manifest.parquet').exists():
        m = pd.read_parquet(small_disk / 'cache' / 'manifest.parquet')
        assert len(m) == comp['n'] and (m.status == 'error').sum() == comp['n'] - len(written)
    else: assert r.returncode == 1

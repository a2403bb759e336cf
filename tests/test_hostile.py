"The hostile corpus through the batch commands: every bad file is one row with its cause; nothing hangs, crashes or floods memory."
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import hostile

KIT = str(Path(sys.executable).with_name('kit'))

# each case: the words its error must hold (None: the file reads fine)
EXPECTED = dict(double_pixels='the header does not describe the data', bits1='the header does not describe the data',
                j2k_flipped='cannot decode pixel data', j2k_rows='the decoded image does not match the header (64 Rows x 64 Columns)',
                slope_nan='Rescale Slope is nan', slope_inf='Rescale Slope is inf', intercept_huge='out of float32 range',
                text_slope="Rescale Slope 'abc' is not a number", rle_frames='holds 1 fragments for 3 frames (Number of Frames)',
                j2k_huge='over the limit of', rle_bomb='over the limit of', deflate_bomb='over the limit of',
                cut_header='truncated', fifo='not a regular file (a FIFO)', dev_zero='not a regular file (a character device)',
                loop='symbolic link loop', non_utf8=None)
N_FILES = len(EXPECTED) + 4  # three good files, and the loop is two links
HEADER_ONLY = {'deflate_bomb', 'cut_header', 'fifo', 'dev_zero', 'loop'}  # the cases that fail before the pixels


# runs a command, then prints the peak resident memory (KB) of the largest process under it, workers included
PEAK_MEMORY = [sys.executable, '-c', 'import resource, subprocess, sys; code = subprocess.run(sys.argv[1:]).returncode; '
               'print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(code)']


def kit(*args, timeout=300, wrap=(), **kw) -> subprocess.CompletedProcess:
    "Run the installed `kit` console script (under the `wrap` command, if any)."
    return subprocess.run([*wrap, KIT, *map(str, args)], capture_output=True, text=True, timeout=timeout, **kw)


@pytest.fixture(scope='module')
def corpus(tmp_path_factory) -> Path:
    "A folder with every hostile case and three good files."
    d = tmp_path_factory.mktemp('hostile') / 'src'
    for name in EXPECTED: hostile.make(name, d / name)
    for i in range(3): hostile.save(hostile.ct(32, uid=f'ID_good{i}'), d / f'good{i}.dcm')
    return d


def by_case(df, col) -> dict:
    "Rows of `df` keyed by the case folder of their file (`col` holds the path)."
    return {Path(f).parent.name if Path(f).parent.name in EXPECTED else Path(f).stem: row for f, row in zip(df[col], df.itertuples())}


def test_meta_with_pixel_stats_records_every_case(corpus, tmp_path):
    "`kit meta --pixel-stats`: one row per file, each bad one with its cause, in bounded memory, exit 0."
    r = kit('meta', corpus, '-o', tmp_path / 'meta.parquet', '--pixel-stats', '--workers', 2, '--max-decode-gb', 0.5,
            wrap=PEAK_MEMORY)
    peak_mb = int(r.stdout.split()[-1]) / 1024
    assert r.returncode == 0, r.stderr
    df = pd.read_parquet(tmp_path / 'meta.parquet')
    assert len(df) == N_FILES
    rows = by_case(df, 'fname')
    for case, words in EXPECTED.items():
        err = rows[case].error
        if words is None: assert err is None or err != err, (case, err)
        else: assert isinstance(err, str) and words in err and '\n' not in err, (case, err)
    assert all(rows[f'good{i}'].img_min < -900 for i in range(3))
    assert any('\\xe9' in f for f in df.fname), 'the non-UTF-8 name is stored escaped'
    # the bombs inflate to 0.4 GB (deflate) and 2 GB (2,000 RLE frames): refused before they are decoded
    assert peak_mb < 1024, f'peak memory {peak_mb:.0f} MB'


def test_header_only_meta_refuses_the_deflate_bomb(corpus, tmp_path):
    "Without pixels, the bombs that live in the header still cost one row each."
    r = kit('-q', 'meta', corpus, '-o', tmp_path / 'meta.csv', '--workers', 0, '--max-decode-gb', 0.5)
    assert r.returncode == 0, r.stderr
    rows = by_case(pd.read_csv(tmp_path / 'meta.csv'), 'fname')
    for case in HEADER_ONLY: assert EXPECTED[case] in rows[case].error, (case, rows[case].error)
    assert rows['double_pixels'].error != rows['double_pixels'].error  # its header is fine


def test_preprocess_records_every_case_and_goes_on(corpus, tmp_path):
    "`kit preprocess`: the good files are cached, each bad one is a manifest row with its cause; -q prints only kit's lines."
    r = kit('-q', 'preprocess', corpus, tmp_path / 'cache', '--size', 16, '--workers', 2, '--max-decode-gb', 0.5)
    assert r.returncode == 0, r.stderr
    assert 'Warning' not in r.stderr and 'Traceback' not in r.stderr, r.stderr
    m = pd.read_parquet(tmp_path / 'cache' / 'manifest.parquet')
    assert len(m) == N_FILES
    rows = by_case(m, 'source')
    for case, words in EXPECTED.items():
        if case == 'rle_bomb': words = None  # the cache reads frame 0 only, and that frame is small
        if words is None: assert rows[case].status == 'ok', (case, rows[case].error)
        else: assert rows[case].status == 'error' and words in rows[case].error, (case, rows[case].error)
    assert sorted(p.name for p in (tmp_path / 'cache').rglob('*.png')) == ['caf\\xe9.png', 'good0.png', 'good1.png', 'good2.png', 'rle_bomb.png']


def test_unreadable_files_and_folders_are_rows(tmp_path):
    "A file and a folder the user cannot read are error rows, not silently skipped (run as nobody when root)."
    src = tmp_path / 'src'
    (src / 'locked').mkdir(parents=True)
    for name in ('ok.dcm', 'locked/inner.dcm', 'secret.dcm'): hostile.save(hostile.ct(16), src / name)
    os.chmod(src / 'secret.dcm', 0o000); os.chmod(src / 'locked', 0o000)
    drop = []  # root reads everything: drop the capabilities that let it
    if os.getuid() == 0:
        if not shutil.which('setpriv'): pytest.skip('root without setpriv (util-linux) cannot be denied a read')
        drop = ['setpriv', '--bounding-set', '-dac_override,-dac_read_search', '--inh-caps', '-dac_override,-dac_read_search']
    try: r = kit('-q', 'meta', src, '-o', tmp_path / 'meta.csv', '--workers', 0, wrap=drop)
    finally: os.chmod(src / 'locked', 0o755)
    assert r.returncode == 0, r.stderr
    rows = {Path(f).name: e for f, e in pd.read_csv(tmp_path / 'meta.csv')[['fname', 'error']].itertuples(index=False)}
    assert rows['secret.dcm'] == 'permission denied'
    assert rows['locked'] == 'a folder that cannot be read (permission denied)'
    assert rows['ok.dcm'] != rows['ok.dcm']  # NaN: read fine


def test_colliding_outputs_are_refused_in_one_line(tmp_path):
    "`a`, `a.dcm`, `a.DCM` and `a.dicom` would all be `a.png`: refused before anything is written."
    src = tmp_path / 'src'
    src.mkdir()
    for name in ('a', 'a.dcm', 'a.DCM', 'a.dicom'): hostile.save(hostile.ct(16), src / name)
    r = kit('preprocess', src, tmp_path / 'out', '--workers', 0)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and 'would both be cached as' in lines[0] and 'a.png' in lines[0], r.stderr
    assert not list((tmp_path / 'out').rglob('*.png'))


@pytest.mark.parametrize('argv, words', [
    (['preprocess', 'SRC', 'OUT', '--size', '0'], '0 is not a number of pixels between 1 and 8192'),
    (['preprocess', 'SRC', 'OUT', '--size', '100000'], '100000 is not a number of pixels between 1 and 8192'),
    (['preprocess', 'SRC', 'OUT', '--windows', 'inf:40'], 'width must be a finite number'),
    (['preprocess', 'SRC', 'OUT', '--windows', '0:40'], 'width must be a finite number'),
    (['meta', 'SRC', '--window', 'nan:40'], 'width must be a finite number'),
    (['preprocess', 'SRC', 'OUT', '--workers', '-1'], '-1 is not a number of processes, 0 or more'),
    (['preprocess', 'SRC', 'SRC/cache'], 'never writes into its source folder'),
    (['preprocess', 'SRC', 'SRC'], 'never writes into its source folder'),
    (['anonymize', 'SRC', 'SRC/anon'], 'never writes into its source folder'),
    (['meta', 'SRC', '-o', 'SRC/meta.parquet'], 'never writes into its source folder'),
    (['preprocess', 'SRC/a.dcm', 'OUT'], 'is not a folder'),
    (['anonymize', 'SRC/a.dcm', 'OUT'], 'is not a folder'),
    (['train', 'SRC', '--labels', 'x.csv', '--out', 'OUT', '--epochs', '0'], '0 is not a whole number, 1 or more'),
    (['meta', 'SRC', '--max-decode-gb', '0'], 'is not a positive number of GiB'),
])
def test_usage_errors_are_one_line_exit_2(tmp_path, argv, words):
    src = tmp_path / 'src'
    src.mkdir()
    hostile.save(hostile.ct(16), src / 'a.dcm')
    r = kit(*[a.replace('SRC', str(src)).replace('OUT', str(tmp_path / 'out')) for a in argv])
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and words in lines[-1] and 'error:' in lines[-1], r.stderr
    assert not (tmp_path / 'out').exists() and sorted(p.name for p in src.iterdir()) == ['a.dcm']


def test_too_many_workers_are_capped_with_a_word(tmp_path):
    src = tmp_path / 'src'
    src.mkdir()
    for i in range(3): hostile.save(hostile.ct(16), src / f'{i}.dcm')
    r = kit('meta', src, '-o', tmp_path / 'm.parquet', '--workers', 999)
    assert r.returncode == 0, r.stderr
    assert f'--workers 999 is more than the {os.cpu_count()} cores of this machine: using {os.cpu_count()}' in r.stderr
    assert len(pd.read_parquet(tmp_path / 'm.parquet')) == 3

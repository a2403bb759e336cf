"""Header DataFrame: kit against fastai's `pd.DataFrame.from_dicoms`, side by side on the same generated files.

    python bench/meta_bench.py [--files 3000] [--size 256] [--workers 2] [--dir /tmp/kit-bench-meta]

Prints files/s of each and the ratio; also the wall time of `kit meta` on one file (start-up included).
Targets on a 2-core machine: >= 6x fastai and >= 2,000 files/s without pixels, >= 2x fastai with pixel statistics,
`kit meta` start-up under a second.
"""
import argparse
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pandas as pd

from kit.dicom import get_dicom_files
from kit.meta import dicom_meta
from kit.synth import make_competition


def timed(f, *args, **kwargs):
    "Result of `f(*args, **kwargs)` and the seconds it took."
    t = time.perf_counter()
    res = f(*args, **kwargs)
    return res, time.perf_counter() - t


def fastai_meta(files, px_summ):
    "fastai's header DataFrame (its UID warnings silenced, which only makes it faster)."
    import fastai.medical.imaging  # noqa: F401  (adds pd.DataFrame.from_dicoms)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return pd.DataFrame.from_dicoms(files, px_summ=px_summ)


def corpus(folder, n_files, size) -> list[Path]:
    "At least `n_files` generated files under `folder`, made once."
    files = get_dicom_files(folder) if Path(folder).exists() else []
    if len(files) < n_files:
        make_competition(folder, n_patients=-(-n_files // 8), slices=8, size=size, test_frac=0, seed=0, workers=2)
        files = get_dicom_files(folder)
    return files[:n_files]


def row(name, n, secs, ref=None) -> str:
    "One line of the report."
    rate = n / secs
    return f'{name:<40} {n:>6} files {secs:>7.2f} s {rate:>8.0f} files/s' + (f'   {rate / ref:5.1f}x fastai' if ref else '')


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--files', type=int, default=3000)
    p.add_argument('--pixel-files', type=int, default=1000, help='files for the pixel-statistics comparison')
    p.add_argument('--size', type=int, default=256)
    p.add_argument('--workers', type=int, default=2)
    p.add_argument('--dir', default='/tmp/kit-bench-meta')
    a = p.parse_args()
    files = corpus(a.dir, a.files, a.size)
    import fastai.medical.imaging  # noqa: F401  imported before timing, as a fastai user would have it

    fa, t_fa = timed(fastai_meta, files, px_summ=False)
    k1, t_k1 = timed(dicom_meta, files, workers=0, progress=False)
    kn, t_kn = timed(dicom_meta, files, workers=a.workers, progress=False)
    assert len(fa) == len(kn) == len(files) and kn.error.isna().all()
    ref = len(files) / t_fa
    print(f'header DataFrame of {len(files)} generated {a.size}x{a.size} files')
    print(row('fastai from_dicoms(px_summ=False)', len(files), t_fa))
    print(row('kit dicom_meta, 1 process', len(files), t_k1, ref))
    print(row(f'kit dicom_meta, {a.workers} processes', len(files), t_kn, ref))

    pf = files[:a.pixel_files]
    fp, t_fp = timed(fastai_meta, pf, px_summ=True)
    kp, t_kp = timed(dicom_meta, pf, pixel_stats=True, workers=a.workers, progress=False)
    assert kp.error.isna().all() and kp.img_min.min() >= -1100
    ref = len(pf) / t_fp
    print(f'with pixel statistics (fastai: raw stored values; kit: HU with the fixes), {len(pf)} files')
    print(row('fastai from_dicoms(px_summ=True)', len(pf), t_fp))
    print(row(f'kit dicom_meta(pixel_stats=True), {a.workers} proc.', len(pf), t_kp, ref))

    kit = str(Path(sys.executable).with_name('kit'))
    _, t_cli = timed(subprocess.run, [kit, '-q', 'meta', str(files[0]), '-o', '/tmp/kit-bench-one.parquet', '--workers', '0'], check=True)
    _, t_help = timed(subprocess.run, [kit, 'meta', '--help'], check=True, capture_output=True)
    print(f'kit meta on one file, start to finish: {t_cli:.2f} s (kit meta --help: {t_help:.2f} s)')


if __name__ == '__main__': main()

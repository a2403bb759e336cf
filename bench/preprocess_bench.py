"""Preprocessing cache: `kit preprocess` against fastai's own path, side by side on the same 512x512 files.

    python bench/preprocess_bench.py [--files 400] [--workers 2] [--dir /tmp/kit-bench-pre]

kit: `preprocess(windows='brain,subdural,bone', size=256)` (read, fix, 3 windows, resize, PNG).
fastai: `dcmread(fn).save_jpg(out, [brain, subdural])`, two windows plus its histogram channel at native size,
as in fastai's RSNA kernels; in one process, then over fastcore's `parallel`.
Target: kit >= 3x fastai per worker, near-linear in workers.
"""
import argparse
import shutil
import tempfile
import time
import warnings
from pathlib import Path

from kit.cache import preprocess
from kit.dicom import get_dicom_files, read_dicom
from kit.synth import make_competition


def fastai_one(fn, out):
    "fastai's path for one file: read, two windows and the histogram channel, JPEG."
    import torch
    from fastai.medical.imaging import dicom_windows
    from fastai.medical.imaging import dcmread as fastai_dcmread  # noqa: F401  (patches Path.dcmread)
    torch.set_num_threads(1)  # one thread per worker, as kit's workers use, so workers do not fight over cores
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        Path(fn).dcmread().save_jpg(Path(out) / Path(fn).stem, [dicom_windows.brain, dicom_windows.subdural])


def fastai_run(files, out, workers):
    "fastai over `files`, in this process or over `workers` processes."
    from fastcore.parallel import parallel
    from functools import partial
    f = partial(fastai_one, out=out)
    if workers <= 1:
        for fn in files: f(fn)
    else: parallel(f, files, n_workers=workers, progress=False)


def timed(f, *args, **kwargs) -> float:
    "Seconds `f(*args, **kwargs)` took."
    t = time.perf_counter()
    f(*args, **kwargs)
    return time.perf_counter() - t


def compare(src, label, workers) -> dict:
    "Print and return files/s of fastai and kit on the DICOMs under `src`, with 1 and `workers` workers."
    n, res = len(get_dicom_files(src)), {}
    for w in (1, workers):
        with tempfile.TemporaryDirectory() as out_f, tempfile.TemporaryDirectory() as out_k:
            t_f = timed(fastai_run, get_dicom_files(src), out_f, w)
            t_k = timed(preprocess, src, out_k, 'brain,subdural,bone', 256, workers=0 if w == 1 else w, progress=False)
            assert len(list(Path(out_k).rglob('*.png'))) == n
        res[w] = n / t_k
        print(f'{label:<28} {w} worker(s): fastai {n / t_f:6.1f} files/s   kit {n / t_k:6.1f} files/s   kit/fastai {t_f / t_k:4.1f}x')
    print(f'{label:<28} kit scaling 1 -> {workers} workers: {res[workers] / res[1]:.2f}x (linear: {workers}x)')
    return res


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--files', type=int, default=400)
    p.add_argument('--workers', type=int, default=2)
    p.add_argument('--dir', default='/tmp/kit-bench-pre')
    a = p.parse_args()
    src = Path(a.dir)
    if len(get_dicom_files(src)) < a.files:
        make_competition(src, n_patients=-(-a.files // 8), slices=8, size=512, test_frac=0, seed=1, workers=2)
    import fastai.medical.imaging  # noqa: F401  imported before timing
    files = get_dicom_files(src)
    print(f'{len(files)} generated 512x512 CT files; kit: 3 windows resized to 256 as PNG; fastai: 2 windows + hist, native JPEG')
    compare(src, 'mixed syntaxes (1/4 J2K)', a.workers)
    with tempfile.TemporaryDirectory() as sub:  # the RSNA ICH case: uncompressed files only
        for f in files:
            if not read_dicom(f, header_only=True).file_meta.TransferSyntaxUID.is_compressed: (Path(sub) / f.name).symlink_to(f)
        compare(sub, 'uncompressed (as RSNA ICH)', a.workers)


if __name__ == '__main__': main()

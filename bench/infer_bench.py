"""Inference throughput of `kit predict`: images/s from the cache and from DICOMs, on the generated competition.

    python bench/infer_bench.py [--patients 64] [--size 128] [--arch resnet18] [--dir /tmp/kit-bench-infer]

Trains one small run per source for one epoch (weights do not matter for speed), then times `predict` on the
test images: a run trained on a cache predicting from a ready cache of the test images, the same run making
that cache on the fly from the DICOMs, and a run trained on DICOMs reading them directly.
"""
import argparse
import time
from pathlib import Path

import torch

from kit.cache import preprocess
from kit.dicom import get_dicom_files
from kit.infer import predict
from kit.synth import make_competition
from kit.train import train


def timed(f, *args, **kwargs):
    "Result of `f(*args, **kwargs)` and the seconds it took."
    t = time.perf_counter()
    res = f(*args, **kwargs)
    return res, time.perf_counter() - t


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--patients', type=int, default=64)
    p.add_argument('--size', type=int, default=128)
    p.add_argument('--arch', default='resnet18')
    p.add_argument('--workers', type=int, default=2)
    p.add_argument('--dir', default='/tmp/kit-bench-infer')
    a = p.parse_args()
    d = Path(a.dir)
    comp = d / 'comp'
    if not comp.exists(): make_competition(comp, n_patients=a.patients, slices=8, size=256, seed=0, workers=2)
    preprocess(comp / 'train_images', d / 'cache_train', size=a.size, workers=a.workers, progress=False)
    kw = dict(arch=a.arch, size=a.size, epochs=1, bs=32, workers=a.workers)
    if not (d / 'run_cache' / 'model.pkl').exists(): train(comp / 'train_images', comp / 'train.csv', d / 'run_cache', cache=d / 'cache_train', **kw)
    if not (d / 'run_dicom' / 'model.pkl').exists(): train(comp / 'train_images', comp / 'train.csv', d / 'run_dicom', **kw)
    n = len(get_dicom_files(comp / 'test_images'))
    print(f'{n} test images, {a.arch} at {a.size} px, device {"cuda" if torch.cuda.is_available() else "cpu"}')
    _, t_cache = timed(preprocess, comp / 'test_images', d / 'cache_test', size=a.size, workers=a.workers, progress=False)
    _, t1 = timed(predict, d / 'run_cache', comp / 'test_images', cache=d / 'cache_test', workers=a.workers)
    _, t2 = timed(predict, d / 'run_cache', comp / 'test_images', workers=a.workers)
    _, t3 = timed(predict, d / 'run_dicom', comp / 'test_images', workers=a.workers)
    print(f'from a ready cache:               {n / t1:7.1f} images/s  (making that cache: {n / t_cache:.0f} images/s)')
    print(f'from DICOMs, cache made on the fly: {n / t2:7.1f} images/s')
    print(f'from DICOMs through DicomBlock:     {n / t3:7.1f} images/s')


if __name__ == '__main__': main()

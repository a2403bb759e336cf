"""Loading a cache: one epoch of kit's loaders of each cache format against fastai's plain `ImageBlock` on the PNGs.

    python bench/loading_bench.py [--images 1024] [--size 256] [--workers 2] [--dir /tmp/kit-bench-loading]

Corpus: the generated head-CT competition (256 px slices), cached by `kit preprocess --size S` as png (3 windows),
png16 (HU) and npy (3 windows). Each measurement is a whole process (`python -c`, imports included) that builds
the DataLoaders of every image and iterates one epoch of batches of 64 on the CPU, without augmentation:
- fastai: `DataBlock(ImageBlock, ...)` on the png cache (PIL, 8-bit, `IntToFloatTensor`), as a fastai user writes it;
- kit png / npy: `kit.transforms.image_block(fmt)` (each image squared like a DICOM, float);
- kit png16: the same, with `WindowBatch` making the 3 windows of each batch from HU (on the CPU here).
Reported as images/s with 0 (in process) and --workers loading processes.
"""
import argparse
import subprocess
import sys
import time
from pathlib import Path

from kit.synth import make_competition

LOADER = r'''
import sys
import pandas as pd
from fastai.data.block import CategoryBlock, DataBlock
from fastai.data.transforms import ColReader, RandomSplitter
from kit.cache import read_cache_settings, read_manifest
cache, how, workers = sys.argv[1], sys.argv[2], int(sys.argv[3])
m = read_manifest(cache)
df = pd.DataFrame({'x': m.output, 'y': [i % 2 for i in range(len(m))]})
if how == 'fastai':
    from fastai.vision.data import ImageBlock
    block = ImageBlock
else:
    from kit.transforms import image_block
    made = read_cache_settings(cache)
    block = image_block(made['format'], 'brain,subdural,bone', made['size'], offset=made['offset'])
dls = DataBlock((block, CategoryBlock), get_x=ColReader('x'), get_y=ColReader('y'),
                splitter=RandomSplitter(0.)).dataloaders(df, bs=64, num_workers=workers)
n = sum(len(xb) for xb, _ in dls.train)
assert dls.one_batch()[0].shape[1] == 3
print(n)
'''


def timed(cache, how, workers) -> tuple[int, float]:
    "Images loaded and seconds of one whole loading process."
    t = time.perf_counter()
    res = subprocess.run([sys.executable, '-c', LOADER, str(cache), how, str(workers)], check=True, capture_output=True, text=True)
    return int(res.stdout.split()[-1]), time.perf_counter() - t


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--images', type=int, default=1024)
    p.add_argument('--size', type=int, default=256)
    p.add_argument('--workers', type=int, default=2)
    p.add_argument('--dir', default='/tmp/kit-bench-loading')
    args = p.parse_args()
    root = Path(args.dir)
    comp = root / 'comp'
    if not (comp / 'train.csv').exists():
        make_competition(comp, n_patients=args.images // 8, slices=8, size=256, test_frac=0., workers=2)
    kit = str(Path(sys.executable).with_name('kit'))
    for fmt, windows in (('png', ['--windows', 'brain,subdural,bone']), ('png16', []), ('npy', ['--windows', 'brain,subdural,bone'])):
        if not (root / fmt / 'manifest.parquet').exists():
            subprocess.run([kit, '-q', 'preprocess', comp / 'train_images', root / fmt, '--size', str(args.size), '--format', fmt, *windows], check=True)
    for w in (0, args.workers):
        n, t_fastai = timed(root / 'png', 'fastai', w)
        line = f'{w} workers: fastai png {n / t_fastai:6.0f} images/s'
        for fmt in ('png', 'png16', 'npy'):
            n, t = timed(root / fmt, 'kit', w)
            line += f'   kit {fmt} {n / t:6.0f}/s ({t_fastai / t:4.2f}x)'
        print(line)


if __name__ == '__main__':
    main()

"""Big images: `kit preprocess --size 512` (and 1,024) against pydicom `pixel_array` + a resize, on mammograms.

    python bench/big_images.py [--images 8] [--workers 2] [--sizes 512,1024] [--dir /tmp/kit-bench-big]

Corpus: `kit.synth.breast_phantom` mammograms of 4,096 x 3,328 pixels, 12 bits, one folder per transfer syntax
(JPEG 2000 lossless, JPEG lossless SV1), made once under --dir.
kit: `kit preprocess SRC OUT --size S --windows header --workers W`, a whole process, imports included.
Anchor: what RSNA screening mammography notebooks do, also a whole process (`python -c`): pydicom `dcmread` and
`pixel_array`, MONOCHROME1 inverted, the header window, `cv2.resize(INTER_AREA)` to S, `cv2.imwrite` a PNG; over
a `multiprocessing.Pool` for W > 1. Also dicomsdl (`dcm.pixelData()`) in place of pydicom, where it installs.
Agreement: kit's PNGs against the same window of a full decode resized by kit (`reduce=0`), in 8-bit grey levels.
Memory: peak RSS of one worker reading one 5,000 x 4,000 JPEG 2000 image (at 512 px and native), above its RSS after
imports (the peak is reset through /proc/self/clear_refs after them).
Stages (--stages): where one kit process spends its time per image (cProfile over `cache_file`, a few images, one
process): reading the file, decoding (and the codec's own reduction), block means, rescale, resize, windows, PNG;
and the seconds each whole-process run pays before its first image (imports), kit against the anchor.
Target: kit >= 4x pydicom + resize at 512 px.
"""
import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from pydicom.uid import JPEG2000Lossless, JPEGLosslessSV1

from kit.synth import breast_phantom, mg_dataset

SYNTAXES = {'jpeg2000': JPEG2000Lossless, 'jpeg-lossless': JPEGLosslessSV1}

ANCHOR = r'''
import sys, cv2, numpy as np
from pathlib import Path
from multiprocessing import Pool

def read_pydicom(fn):
    import pydicom
    ds = pydicom.dcmread(fn)
    return ds.pixel_array, ds

def read_dicomsdl(fn):
    import dicomsdl, pydicom
    return dicomsdl.open(fn).pixelData(storedvalue=True), pydicom.dcmread(fn, stop_before_pixels=True)

def one(args):
    fn, out, size, reader = args
    px, ds = (read_dicomsdl if reader == 'dicomsdl' else read_pydicom)(fn)
    px = px.astype(np.float32)
    if ds.PhotometricInterpretation == 'MONOCHROME1': px = 2**int(ds.BitsStored) - 1 - px
    c, w = float(ds.WindowCenter), float(ds.WindowWidth)
    px = np.clip((px - (c - 0.5)) / (w - 1) + 0.5, 0, 1)
    h, wd = px.shape
    scale = size / max(h, wd)
    px = cv2.resize(px, (round(wd * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(Path(out) / (Path(fn).stem + '.png')), np.round(px * 255).astype(np.uint8))

if __name__ == '__main__':
    src, out, size, workers, reader = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    cv2.setNumThreads(1)
    jobs = [(str(f), out, size, reader) for f in sorted(Path(src).rglob('*.dcm'))]
    if workers <= 1: list(map(one, jobs))
    else:
        with Pool(workers) as pool: pool.map(one, jobs)
'''

MEMORY = r'''
import re, sys
import numpy as np
path, how = sys.argv[1], sys.argv[2]
import pydicom, cv2
from kit.window import dicom_channels
def status_mb(key): return int(re.search(key + r':\s+(\d+)', open('/proc/self/status').read()).group(1)) / 1024
base = status_mb('VmRSS')
open('/proc/self/clear_refs', 'w').write('5')  # VmHWM, the peak, restarts from here
if how == 'kit': img = dicom_channels(path, 'header', size=512)
elif how == 'kit-native': img = dicom_channels(path, 'header')
else:
    px = pydicom.dcmread(path).pixel_array.astype(np.float32)
    img = cv2.resize(px, (410, 512), interpolation=cv2.INTER_AREA)
print(status_mb('VmHWM') - base)
'''


def make_corpus(root, n, names=tuple(SYNTAXES)) -> dict:
    "One folder of `n` 4,096 x 3,328 mammograms per syntax of `names` under `root` (kept between runs); the folders."
    folders = {}
    for name in names:
        ts = SYNTAXES[name]
        folder = Path(root) / name
        if len(list(folder.glob('*.dcm'))) < n:
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                img = breast_phantom((4096, 3328), seed=i, laterality='LR'[i % 2], lesion=i % 3 == 0)
                mg_dataset(img, uid=f'1.2.3.{i}', ts=ts, monochrome1=i % 4 == 3).save_as(folder / f'{i}.dcm', enforce_file_format=True)
        folders[name] = folder
    return folders


def run(cmd) -> float:
    "Seconds the process `cmd` took; fails loudly when it fails."
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def kit_cmd(src, out, size, workers) -> list:
    "`kit preprocess` of `src` into `out` at `size`, the header window, `workers` processes."
    return [str(Path(sys.executable).parent / 'kit'), '-q', 'preprocess', str(src), str(out), '--size', str(size),
            '--windows', 'header', '--workers', str(0 if workers <= 1 else workers)]


def anchor_cmd(src, out, size, workers, reader='pydicom') -> list:
    "The notebook path (pydicom or dicomsdl, then cv2) over `src` as one process."
    return [sys.executable, '-c', ANCHOR, str(src), str(out), str(size), str(workers), reader]


def has_dicomsdl() -> bool:
    "Whether dicomsdl imports here."
    return subprocess.run([sys.executable, '-c', 'import dicomsdl'], capture_output=True).returncode == 0


def agreement(src, cache, size) -> tuple[float, float]:
    "Max and mean difference (8-bit grey levels) of kit's PNGs against the same window of a full decode, resized."
    from PIL import Image
    from kit.dicom import read_dicom
    from kit.window import dicom_channels
    diffs = []
    for fn in sorted(Path(src).glob('*.dcm')):
        full = np.round(dicom_channels(read_dicom(fn), 'header', size=size, reduce=0)[0] * 255)
        png = np.asarray(Image.open(Path(cache) / (fn.stem + '.png')), dtype=np.float32)
        diffs.append(np.abs(png - full))
    return max(d.max() for d in diffs), float(np.mean([d.mean() for d in diffs]))


def peak_memory(path) -> dict:
    "Peak RSS (MB) above the RSS after imports, of one process reading `path` each way."
    out = {}
    for how in ('kit', 'kit-native', 'pydicom'):
        res = subprocess.run([sys.executable, '-c', MEMORY, str(path), how], check=True, capture_output=True, text=True)
        out[how] = float(res.stdout.split()[-1])
    return out


STAGES = {'read the file': 'read_dicom', 'decode': '_decode_reduced', 'block means': 'box_reduce', 'rescale': '_modality_lut',
          'resize': 'fit_pixels', 'windows': 'window_channels', 'PNG write': '_save', 'whole image': 'cache_file'}


def stage_times(src, size, n=4) -> dict:
    "Milliseconds per image of each of `STAGES` (cumulative, so decode holds the codec), `kit preprocess` of `n` images of `src` in this process."
    import cProfile, pstats, tempfile
    from kit.cache import cache_file, cache_settings
    files, settings = sorted(Path(src).glob('*.dcm'))[:n], cache_settings('header', size)
    with tempfile.TemporaryDirectory() as out:
        cache_file(files[0], src, Path(out) / 'warm', settings)  # imports and first-call costs out of the profile
        prof = cProfile.Profile()
        prof.runcall(lambda: [cache_file(f, src, out, settings) for f in files])
    stats = pstats.Stats(prof).stats  # {(file, line, name): (calls, primitive calls, total, cumulative, callers)}
    cum = {}
    for (_, _, name), (_, _, _, ct, _) in stats.items(): cum[name] = cum.get(name, 0) + ct
    return {stage: 1000 * cum[fn] / len(files) for stage, fn in STAGES.items() if fn in cum}


def startup_seconds() -> dict:
    "Seconds to start each whole-process run and import what it needs before its first image (the best of 3)."
    cmds = {'kit': [sys.executable, '-c', 'import kit.cli, kit.cache, kit.window, kit.meta, imagecodecs, pyarrow.parquet'],
            'anchor': [sys.executable, '-c', 'import cv2, numpy, pydicom, pydicom.pixels']}
    return {k: min(run(c) for _ in range(3)) for k, c in cmds.items()}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--images', type=int, default=8)
    p.add_argument('--workers', type=int, default=2)
    p.add_argument('--sizes', default='512,1024')
    p.add_argument('--dir', default='/tmp/kit-bench-big')
    p.add_argument('--syntaxes', default=','.join(SYNTAXES), help='transfer syntaxes to time: ' + ', '.join(SYNTAXES))
    p.add_argument('--stages', action='store_true', help='only print where the time goes per image, and the start-up costs')
    args = p.parse_args()
    root = Path(args.dir)
    if unknown := set(args.syntaxes.split(',')) - set(SYNTAXES): p.error(f"unknown syntaxes {', '.join(sorted(unknown))}")
    folders = make_corpus(root / 'corpus', args.images, args.syntaxes.split(','))
    if args.stages:
        print('start-up and imports (s): ' + ', '.join(f'{k} {v:.2f}' for k, v in startup_seconds().items()))
        for size in map(int, args.sizes.split(',')):
            for name, src in folders.items():
                ms = stage_times(src, size)
                print(f'{size:5d} px {name:<14} ms per image: ' + ', '.join(f'{k} {v:.1f}' for k, v in ms.items()))
        return
    readers = ['pydicom'] + (['dicomsdl'] if has_dicomsdl() else [])
    print(f'{args.images} images of 4096 x 3328 per syntax; anchors: {", ".join(readers)} + cv2.resize(INTER_AREA)')
    for size in map(int, args.sizes.split(',')):
        for name, src in folders.items():
            for w in sorted({1, args.workers}):
                outs = {k: root / f'out-{k}-{name}-{size}-{w}' for k in ['kit'] + readers}
                for o in outs.values():
                    subprocess.run(['rm', '-rf', str(o)], check=True)
                    o.mkdir(parents=True)
                t_kit = run(kit_cmd(src, outs['kit'], size, w))
                t_anchor = {r: run(anchor_cmd(src, outs[r], size, w, r)) for r in readers}
                line = '   '.join(f'{r} {args.images / t:5.2f}/s ({t / t_kit:4.1f}x)' for r, t in t_anchor.items())
                print(f'{size:5d} px {name:<14} {w} worker(s): kit {args.images / t_kit:5.2f} images/s   {line}')
            mx, mean = agreement(src, outs['kit'], size)
            print(f'{size:5d} px {name:<14} kit against a full decode + resize: max {mx:.0f}, mean {mean:.2f} grey levels (of 255)')
    big = root / 'corpus' / '5000x4000.dcm'
    if not big.exists():
        mg_dataset(breast_phantom((5000, 4000), seed=9), ts=JPEG2000Lossless).save_as(big, enforce_file_format=True)
    mem = peak_memory(big)
    print('peak memory of one worker, 5000 x 4000 JPEG 2000 (MB above imports): ' +
          ', '.join(f'{k} {v:.0f}' for k, v in mem.items()))


if __name__ == '__main__':
    main()

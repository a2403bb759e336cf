"""GPU checks in one call: kit's GPU paths, its tests of every task on the GPU, and throughput side by side.

    python bench/gpu_check.py [--stages unit,tests,classify,detect,segment,shift] [--out DIR] [--minutes 1 3 1.5 2 2]

Made for a lent GPU machine whose image has torch and timm but not kit's other needs: carry them as wheels in `.whl/`
(see the device tool's README) and this script installs them to /tmp/site first. Carried on 2026-12-04: fastai,
fastcore, fastdownload, fasttransform, plum-dispatch, beartype, pydicom, the pylibjpeg plugins, pyjpegls, imagecodecs,
kornia, kornia_rs, segmentation-models-pytorch, and fastprogress 1.0.3 (1.1 imports fasthtml); add captum for
`kit explain`. Each stage runs as its own process under a time limit (`--minutes`, one per stage), its whole output in
`OUT/<stage>.log`; the last lines of each and a summary are printed.
- unit: the device, `WindowBatch` on the GPU against the CPU, a fastai `HUBlock` batch on the GPU, fp16 and bf16 steps.
- tests: the tests of training, boxes, masks, series and the pipeline, run on the GPU (mixed precision by default).
- classify: `bench/train_bench.py`'s throughput of kit against a plain timm loop (AMP both sides).
- detect, segment: `bench/detect_bench.py` and `bench/segment_bench.py` (AMP both sides).
- shift: one seed of `bench/shift_bench.py`.
"""
import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

UNIT = r'''
from pathlib import Path
import torch
from fastai.vision.all import DataBlock, RegressionBlock, TensorImage
from kit.transforms import WindowBatch, HUBlock
from kit.synth import make_competition
print('device:', torch.cuda.get_device_name(), 'torch', torch.__version__)
hu = TensorImage(torch.randn(8, 3, 64, 64) * 600)
tfm = WindowBatch(['80:40', '200:80', '2800:600'])
cpu, gpu = tfm(hu), tfm(hu.cuda())
print('WindowBatch on the GPU: device', gpu.device, 'shape', tuple(gpu.shape), 'max |GPU - CPU|', (gpu.cpu() - cpu).abs().max().item())
make_competition('/tmp/gpu-unit', n_patients=2, slices=4, size=64, seed=0)
files = sorted(Path('/tmp/gpu-unit/train_images').glob('*.dcm'))
dls = DataBlock(blocks=(HUBlock(size=64), RegressionBlock), get_y=lambda f: 0.).dataloaders(files, bs=4)
x, y = dls.one_batch()
print('HUBlock batch: device', x.device, 'channels', x.shape[1], 'range', round(x.min().item(), 3), round(x.max().item(), 3))
for dtype in (torch.float16, torch.bfloat16):
    model = torch.nn.Conv2d(3, 1, 3).cuda()
    with torch.autocast('cuda', dtype=dtype): out = model(x)
    print(dtype, 'autocast step ok:', out.dtype, bool(torch.isfinite(out).all()))
'''


def stages() -> dict:
    "Each stage's command line."
    py, b = sys.executable, ROOT / 'bench'
    tests = ['tests/test_train.py', 'tests/test_detect.py', 'tests/test_segment.py', 'tests/test_series.py', 'tests/test_pipeline.py']
    return dict(
        unit=[py, '-c', UNIT],
        tests=[py, '-m', 'pytest', '-v', '--tb=short', '-rf', '-p', 'no:cacheprovider', '-n', '12', *tests],
        classify=[py, b / 'train_bench.py', '--patients', 48, '--size', 256, '--arch', 'resnet50', '--bs', 64, '--epochs', 3,
                  '--workers', 8, '--dir', '/tmp/gpu-train'],
        detect=[py, b / 'detect_bench.py', '--patients', 60, '--size', 256, '--epochs', 5, '--bs', 16, '--workers', 8, '--dir', '/tmp/gpu-detect'],
        segment=[py, b / 'segment_bench.py', '--patients', 60, '--size', 256, '--epochs', 5, '--bs', 16, '--workers', 8,
                 '--dir', '/tmp/gpu-segment'],
        shift=[py, b / 'shift_bench.py', '--patients', 64, '--size', 96, '--seeds', 0, '--dir', '/tmp/gpu-shift'])


def install_wheels():
    "Install the carried wheels of `.whl/` to /tmp/site, and a `kit` command beside this Python."
    wheels = sorted(map(str, (ROOT / '.whl').glob('*.whl')))
    if wheels: subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', '--no-index', '--no-deps', '--no-compile', '--no-cache-dir',
                               '--upgrade', '--target', '/tmp/site', *wheels], check=True)
    os.environ['PYTHONPATH'] = os.pathsep.join(['/tmp/site', str(ROOT), os.environ.get('PYTHONPATH', '')])
    cmd = Path(sys.executable).with_name('kit')
    if not cmd.exists() and shutil.which('kit') is None:
        cmd.write_text(f'#!{sys.executable}\nimport sys\nfrom kit.cli import main\nsys.exit(main())\n')
        cmd.chmod(0o755)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--stages', default='unit,tests,classify,detect,segment')
    p.add_argument('--out', default=os.environ.get('OUT', '/tmp/gpu-check'))
    p.add_argument('--minutes', type=float, nargs='*', default=[1, 3, 1.5, 2, 2], help="each stage's time limit")
    a = p.parse_args()
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    install_wheels()
    os.environ['PYTHONUNBUFFERED'] = '1'
    commands, summary = stages(), []
    for name, minutes in zip(a.stages.split(','), a.minutes):
        t = time.perf_counter()
        with open(out / f'{name}.log', 'w') as log:
            try: rc = subprocess.run(list(map(str, commands[name])), stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                     timeout=minutes * 60).returncode
            except subprocess.TimeoutExpired: rc = 'timeout'
        summary.append(f'{name}: exit {rc} in {time.perf_counter() - t:.0f} s')
        print(f'== {summary[-1]}', *(out / f'{name}.log').read_text().splitlines()[-14:], sep='\n', flush=True)
    print('\n'.join(['== summary', *summary]))


if __name__ == '__main__': main()

"""How often `kit predict` decodes each test DICOM, and how long the whole command takes, this kit against another checkout.

    python bench/predict_decodes.py --old /tmp/kit-old [--test 512] [--size 64] [--dir /tmp/kit-bench-decodes]

`--old` is a checkout of an earlier kit (`git worktree add /tmp/kit-old <commit>`). One small run is trained from
the DICOMs by the earlier kit (both kits read its run folder), then each kit runs `kit predict` on the same test
DICOMs in a process of its own: once with the decodes counted (`--workers 0`, every decode in one process), once
timed as a user runs it (all cores), start-up and imports included.
"""
import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]

COUNTED = '''
import sys, kit.window
calls, read_pixels = [], kit.window.read_pixels
def counted(*args, **kwargs):
    calls.append(1); return read_pixels(*args, **kwargs)
kit.window.read_pixels = counted
from kit.cli import main
try: code = main(sys.argv[1:])
finally: print(f'decodes: {len(calls)}', file=sys.stderr)
raise SystemExit(code)
'''


def run(root, *args, count=False) -> tuple[float, str]:
    "Seconds and stderr of the `kit` command line of checkout `root` with `args`, in a fresh process."
    env = {**os.environ, 'PYTHONPATH': str(root)}
    cmd = [sys.executable, '-c', COUNTED if count else 'from kit.cli import main; raise SystemExit(main())', *map(str, args)]
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd='/')  # not a checkout's folder: `-c` puts the working folder first
    if r.returncode: raise SystemExit(f'{root}: kit {args[0]} failed: {r.stderr[-2000:]}')
    return time.perf_counter() - t, r.stderr


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--old', required=True, help='a checkout of the earlier kit')
    p.add_argument('--test', type=int, default=512, help='test DICOMs (a quarter of the generated patients are test patients)')
    p.add_argument('--size', type=int, default=64)
    p.add_argument('--dir', default='/tmp/kit-bench-decodes')
    a = p.parse_args()
    d, old = Path(a.dir), Path(a.old).resolve()
    if not (d / 'comp').exists():
        run(HERE, 'synth', d / 'comp', '--patients', a.test // 2, '--slices', 8, '--size', 128, '--workers', 2)
    n_test = len(list((d / 'comp' / 'test_images').glob('*.dcm')))
    if not (d / 'run' / 'model.pkl').exists():
        run(old, '-q', 'train', d / 'comp' / 'train_images', '--labels', d / 'comp' / 'train.csv', '--out', d / 'run', '--size', a.size,
            '--epochs', 1, '--bs', 64)
    predict = ['predict', '--model', d / 'run', '--data', d / 'comp' / 'test_images', '--sample', d / 'comp' / 'sample_submission.csv']
    print(f'{n_test} test DICOMs, a run trained from DICOMs at {a.size} px')
    for name, root in (('earlier kit', old), ('this kit', HERE)):
        _, said = run(root, '-q', *predict, '-o', d / f'{name[:4]}_counted.csv', '--workers', 0, count=True)
        decodes = int(said.strip().splitlines()[-1].split()[-1])
        secs, _ = run(root, '-q', *predict, '-o', d / f'{name[:4]}.csv')
        print(f'{name}: {decodes} decodes ({decodes / n_test:.2f} per test image), kit predict {secs:.1f} s as a whole process')


if __name__ == '__main__': main()

"""Head CT under shift: kit's README tour, kit with context, kit with the series stage, against a hand-rolled fastai notebook.

    python bench/shift_bench.py [--patients 80] [--slices 16] [--size 128] [--epochs 8] [--seeds 0 1 2] [--baseline-minutes 10] [--dir /tmp/kit-bench-shift]

Corpus, one per seed: `kit synth --bleeds 3d --shift hospital` (bleeds that span 3-5 slices with faint ends,
calcifications on one slice that only the neighbours tell apart; the test patients from another hospital: noise sd
18 HU instead of 10, unsigned values with slope 0.5 and intercept -2048, 8 mm slices instead of 5), 256 px slices,
a quarter of the patients held out with their answers.
- hand: what a competitor writes in a fastai notebook: pydicom's `apply_modality_lut` (the 12-bit files fixed), the
  brain, subdural and bone windows, resized to --size, resnet18 from scratch, `fit_one_cycle(epochs, 3e-3)`, bs 64,
  no augmentation, 80% of the patients, the last epoch.
- kit tour: `kit preprocess --size S`, `kit train --cache --arch resnet18 --epochs E`, `kit predict`: kit's defaults.
- kit context: the same with `--context 1`.
- kit series: `kit train --folds --n-folds 3` for half the epochs (stage 1 on every fold: about the tour's images
  seen), then `kit train --task series` on their out-of-fold predictions, `kit predict` chaining both.
- kit baseline (with --baseline-minutes M): `kit baseline COMP --minutes M` alone, its plan its own.
Each scored on the held-out test set: RSNA's weighted log loss divided by that of the training label rates (under 1
beats the prior), the AUC of `any`, and the CPU minutes of the whole processes (user + system, imports included).
"""
import argparse
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

KIT = str(Path(sys.executable).with_name('kit'))

HAND = r'''
import sys
from pathlib import Path
import numpy as np, pandas as pd, pydicom, torch, torch.nn.functional as F, timm
from pydicom.pixels import apply_modality_lut
from fastai.vision.all import Learner, DataLoaders, TfmdDL, BCEWithLogitsLossFlat, set_seed
comp, out, size, epochs, seed = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
set_seed(seed, reproducible=True)
WINDOWS = [(40, 80), (80, 200), (600, 2800)]
LABELS = ['intraparenchymal', 'intraventricular', 'subdural', 'any']

def load(f):
    ds = pydicom.dcmread(f); px = ds.pixel_array
    if ds.BitsStored == 12 and ds.PixelRepresentation == 0 and float(ds.RescaleIntercept) > -100:  # RSNA's 12-bit files
        px = px.astype(np.int32); px[px >= 2048] -= 4096
    hu = apply_modality_lut(px, ds).astype(np.float32)
    x = np.stack([np.clip((hu - (l - w / 2)) / w, 0, 1) for l, w in WINDOWS])
    return F.interpolate(torch.from_numpy(x)[None], (size, size), mode='bilinear', align_corners=False)[0]

long = pd.read_csv(comp / 'train.csv')
long[['image', 'label']] = long.ID.str.rsplit('_', n=1, expand=True)
y = long.pivot_table(index='image', columns='label', values='Label')[LABELS]
files = sorted((comp / 'train_images').glob('*.dcm'))
pid = {f.stem: pydicom.dcmread(f, stop_before_pixels=True).PatientID for f in files}
patients = sorted(set(pid.values())); rng = np.random.default_rng(seed); rng.shuffle(patients)
valid = set(patients[:len(patients) // 5])
X = torch.stack([load(f) for f in files]); Y = torch.tensor(y.loc[[f.stem for f in files]].to_numpy(np.float32))
is_valid = torch.tensor([pid[f.stem] in valid for f in files])
trn, val = list(zip(X[~is_valid], Y[~is_valid])), list(zip(X[is_valid], Y[is_valid]))
dls = DataLoaders(TfmdDL(trn, bs=64, shuffle=True), TfmdDL(val, bs=64))
model = timm.create_model('resnet18', pretrained=False, num_classes=len(LABELS))
learn = Learner(dls, model, loss_func=BCEWithLogitsLossFlat())
learn.fit_one_cycle(epochs, 3e-3)
tests = sorted((comp / 'test_images').glob('*.dcm'))
model.eval()
with torch.no_grad(): p = torch.cat([model(torch.stack([load(f) for f in b])).sigmoid() for b in np.array_split(tests, max(1, len(tests) // 64))])
rows = [(f'{f.stem}_{l}', float(p[i, j])) for i, f in enumerate(tests) for j, l in enumerate(LABELS)]
pd.DataFrame(rows, columns=['ID', 'Label']).to_csv(out, index=False)
'''


def run(*args) -> tuple[float, float]:
    "Wall seconds and CPU seconds (user + system, children) of one process; fails loudly when it fails."
    before, t = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    subprocess.run(list(map(str, args)), check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.perf_counter() - t, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def kit(*args) -> tuple[float, float]:
    "Wall and CPU seconds of one quiet kit command."
    return run(KIT, '-q', *args)


def score(submission, comp) -> tuple[float, float]:
    "Weighted log loss over the prior's, and AUC of `any`, of a long RSNA submission against the answers."
    from sklearn.metrics import roc_auc_score
    from kit.baseline import label_prior, long_log_loss
    from kit.data import read_labels
    weights = {'any': 2.}
    loss = long_log_loss(submission, comp / 'solution.csv', weights)
    prior = long_log_loss(submission, comp / 'solution.csv', weights, prior=label_prior(comp / 'train.csv'))
    truth = read_labels(comp / 'solution.csv').set_index('image')['any']
    preds = read_labels(submission).set_index('image')['any'].reindex(truth.index)
    return loss / prior, roc_auc_score(truth, preds)


def recipes(comp, root, args, seed) -> dict:
    "Each recipe's (submission, wall seconds, CPU seconds) on competition `comp`."
    res, tr, te = {}, root / 'cache_train', root / 'cache_test'
    sub = root / 'hand.csv'
    res['hand'] = (sub, *run(sys.executable, '-c', HAND, comp, sub, args.size, args.epochs, seed))
    w1, c1 = kit('preprocess', comp / 'train_images', tr, '--size', args.size)
    w2, c2 = kit('preprocess', comp / 'test_images', te, '--size', args.size)
    common = ['--labels', comp / 'train.csv', '--cache', tr, '--arch', 'resnet18', '--epochs', args.epochs, '--seed', seed]
    for name, extra in (('kit tour', []), ('kit context 1', ['--context', 1])):
        out = root / name.replace(' ', '_')
        w, c = kit('train', *common, '--out', out, *extra)
        wp, cp = kit('predict', '--model', out, '--cache', te, '--sample', comp / 'sample_submission.csv', '-o', out / 'submission.csv')
        res[name] = (out / 'submission.csv', w + wp + w1 + w2, c + cp + c1 + c2)
    folds, series = root / 'kit_slices', root / 'kit_series'
    w, c = kit('train', *common[:-4], '--epochs', max(1, args.epochs // 2), '--seed', seed, '--out', folds, '--folds', '--n-folds', 3)
    ws, cs = kit('train', '--labels', comp / 'train.csv', '--cache', tr, '--task', 'series', '--slice-runs', folds, '--n-folds', 3,
                 '--epochs', args.series_epochs, '--seed', seed, '--out', series)
    wp, cp = kit('predict', '--model', series, '--cache', te, '--sample', comp / 'sample_submission.csv', '-o', series / 'submission.csv')
    res['kit series'] = (series / 'submission.csv', w + ws + wp + w1 + w2, c + cs + cp + c1 + c2)
    if args.baseline_minutes:
        out = root / 'kit_baseline'
        res['kit baseline'] = (out / 'submission.csv', *kit('baseline', comp, '--out', out, '--minutes', args.baseline_minutes, '--seed', seed))
    return res


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--patients', type=int, default=80)
    p.add_argument('--slices', type=int, default=16)
    p.add_argument('--size', type=int, default=128)
    p.add_argument('--epochs', type=int, default=8)
    p.add_argument('--series-epochs', type=int, default=30, help='of the series stage (seconds each)')
    p.add_argument('--baseline-minutes', type=float, default=0, help='also `kit baseline --minutes M` alone (0: not run)')
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    p.add_argument('--dir', default='/tmp/kit-bench-shift')
    args = p.parse_args()
    rows = []
    for seed in args.seeds:
        root = Path(args.dir) / f'seed{seed}'
        comp = root / 'comp'
        if not (comp / 'solution.csv').exists():
            kit('synth', comp, '--patients', args.patients, '--slices', args.slices, '--size', 256, '--bleeds', '3d',
                '--shift', 'hospital', '--seed', seed, '--workers', 2)
        for name, (sub, wall, cpu) in recipes(comp, root, args, seed).items():
            ratio, auc = score(sub, comp)
            rows.append(dict(seed=seed, recipe=name, **{'wlogloss / prior': ratio, 'AUC any': auc, 'CPU min': cpu / 60, 'wall min': wall / 60}))
            print(pd.DataFrame(rows[-1:]).round(3).to_string(index=False, header=len(rows) == 1), flush=True)
    df = pd.DataFrame(rows)
    print(df.round(3).to_string(index=False))
    print(df.groupby('recipe', sort=False).agg(['mean', 'std']).drop(columns='seed').round(3).to_string())


if __name__ == '__main__':
    main()

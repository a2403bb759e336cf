"""Masks: kit's mask run against a hand-rolled segmentation-models-pytorch script of the same budget, and the all-empty submission.

    python bench/segment_bench.py [--patients 120] [--epochs 12] [--size 128] [--bs 16] [--lr 3e-3] [--seed 0] [--dir /tmp/kit-bench-segment]

Corpus: `kit synth --task segment` (SIIM-ACR-shaped: nested study/series/sop.dcm, 8-bit 256 px radiographs, a
pneumothorax crescent at the lung edge in about a quarter of them, relative run lengths), a quarter of the
patients held out with their answers. Both sides: U-Net on timm's resnet18 from scratch (smp `tu-resnet18`), the same
side, epochs, batch size, learning rate and a one-cycle schedule, BCE + Dice, on about 80% of the training images.
- kit: `kit train DATA --labels train-rle.csv --windows hist` (fastai, flips/rotations, best epoch, triplet fitted
  on its validation fold), then `kit predict` (DICOMs read again, masks at the original size, SIIM's relative RLE).
- hand-rolled: what a competitor writes in a notebook: pydicom `pixel_array` scaled to [0, 1], resized with torch,
  the organisers' RLE functions rewritten, a plain PyTorch loop (Adam, OneCycleLR, hflip), the last epoch,
  threshold 0.5, masks resized back, relative RLE.
Scored by SIIM-ACR's mean Dice per image (1 when both are empty), `kit.masks.siim_dice`, on the held-out images.
Time is each whole process (imports, reading, training, predicting); images/s is training images seen per second
of the training loop alone.
"""
import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

KIT = str(Path(sys.executable).with_name('kit'))

HAND = r'''
import json, sys, time
from pathlib import Path
import numpy as np, pandas as pd, pydicom, torch, torch.nn.functional as F
import segmentation_models_pytorch as smp
comp, out, size, epochs, bs, lr, seed = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6]), int(sys.argv[7])
torch.manual_seed(seed); rng = np.random.default_rng(seed)

def rle2mask(rle, h, w):  # the organisers' mask_functions.py: relative starts, column-major
    mask, pos = np.zeros(h * w, np.uint8), 0
    if rle.strip() == '-1': return mask.reshape(w, h).T
    a = np.asarray(rle.split(), int)
    for start, length in zip(a[0::2], a[1::2]): pos += start; mask[pos:pos + length] = 1; pos += length
    return mask.reshape(w, h).T

def mask2rle(mask):
    flat = np.concatenate([[0], mask.T.ravel(), [0]])
    runs = np.flatnonzero(flat[1:] != flat[:-1]); starts, ends = runs[::2], runs[1::2]
    if not len(starts): return '-1'
    rel = starts - np.concatenate([[0], ends[:-1]])
    return ' '.join(f'{s} {e - b}' for s, b, e in zip(rel, starts, ends))

def load(f):
    ds = pydicom.dcmread(f); px = ds.pixel_array.astype(np.float32)
    px = (px - px.min()) / max(px.max() - px.min(), 1)
    return torch.from_numpy(px)[None, None], px.shape

labels = pd.read_csv(comp / 'train-rle.csv', dtype=str); labels.columns = ['ImageId', 'rle']
files = {f.stem: f for f in (comp / 'dicom-images-train').rglob('*.dcm')}
ids = sorted(files); rng.shuffle(ids); ids = ids[:int(round(len(ids) * .8))]
X, Y = [], []
for i in ids:
    img, (h, w) = load(files[i])
    m = np.zeros((h, w), np.uint8)
    for r in labels.rle[labels.ImageId == i]: m |= rle2mask(r, h, w)
    X.append(F.interpolate(img, (size, size), mode='bilinear', align_corners=False)[0].repeat(3, 1, 1))
    Y.append(F.interpolate(torch.from_numpy(m)[None, None].float(), (size, size), mode='bilinear', align_corners=False)[0, 0] >= .5)
X, Y = torch.stack(X), torch.stack(Y).float()
dev = 'cuda' if torch.cuda.is_available() else 'cpu'; amp = dev == 'cuda'  # mixed precision on a GPU
model = smp.Unet('tu-resnet18', encoder_weights=None, in_channels=3, classes=1).to(dev)
scaler = torch.amp.GradScaler(enabled=amp)
opt = torch.optim.Adam(model.parameters(), lr)
steps = epochs * ((len(X) + bs - 1) // bs)
sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps)
t0, seen = time.perf_counter(), 0
for epoch in range(epochs):
    model.train()
    for b in torch.randperm(len(X)).split(bs):
        x, y = X[b].to(dev), Y[b].to(dev)
        flip = (torch.rand(len(b)) < .5).to(dev)
        x[flip], y[flip] = x[flip].flip(-1), y[flip].flip(-1)
        with torch.autocast(dev, enabled=amp): logits = model(x)[:, 0].float()
        p = logits.sigmoid()
        dice = 1 - (2 * (p * y).sum((1, 2)) + 1) / (p.sum((1, 2)) + y.sum((1, 2)) + 1)
        loss = F.binary_cross_entropy_with_logits(logits, y) + dice.mean()
        opt.zero_grad(); scaler.scale(loss).backward(); scaler.step(opt); scaler.update(); sched.step(); seen += len(b)
if amp: torch.cuda.synchronize()
train_s = time.perf_counter() - t0
model.eval(); rows = []
with torch.no_grad():
    for f in sorted((comp / 'dicom-images-test').rglob('*.dcm')):
        img, (h, w) = load(f)
        p = model(F.interpolate(img, (size, size), mode='bilinear', align_corners=False).repeat(1, 3, 1, 1).to(dev)).sigmoid().float()
        m = (F.interpolate(p, (h, w), mode='bilinear', align_corners=False)[0, 0] > .5).cpu().numpy().astype(np.uint8)
        rows.append((f.stem, mask2rle(m)))
pd.DataFrame(rows, columns=['ImageId', 'EncodedPixels']).to_csv(out, index=False)
print(json.dumps(dict(train_s=train_s, images_per_s=seen / train_s)))
'''


def run(*args) -> tuple[float, str]:
    "Seconds a command took and what it printed; fails loudly when it fails."
    t = time.perf_counter()
    r = subprocess.run(list(map(str, args)), check=True, capture_output=True, text=True)
    return time.perf_counter() - t, r.stdout


def score(submission, answers, shapes) -> float:
    "SIIM-ACR's mean Dice of a submission against the held-out answers."
    from kit.masks import rle_decode, siim_dice
    sub = pd.read_csv(submission, dtype=str).set_index('ImageId').iloc[:, 0]
    truth = pd.read_csv(answers, dtype=str)
    truth = truth.groupby(truth.columns[0])[truth.columns[1]].agg(tuple)
    masks = lambda rles, i: np.logical_or.reduce([rle_decode(r, shapes[i], 'relative') for r in rles])
    return siim_dice([masks([sub[i]], i) for i in truth.index], [masks(truth[i], i) for i in truth.index])


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--patients', type=int, default=120)
    p.add_argument('--epochs', type=int, default=12)
    p.add_argument('--size', type=int, default=128)
    p.add_argument('--bs', type=int, default=16)
    p.add_argument('--lr', type=float, default=3e-3)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--workers', type=int, default=0, help="kit's data loading processes (0: in the main process, as the hand-rolled side)")
    p.add_argument('--dir', default='/tmp/kit-bench-segment')
    a = p.parse_args()
    from kit.meta import dicom_meta
    from kit.submit import image_shapes
    root = Path(a.dir) / f'seed{a.seed}'
    comp = root / 'comp'
    if not comp.exists(): run(KIT, '-q', 'synth', comp, '--task', 'segment', '--patients', a.patients, '--seed', a.seed)
    shapes = image_shapes(dicom_meta(comp / 'dicom-images-test', progress=False))
    answers, sample = comp / 'test_answers.csv', comp / 'sample_submission.csv'
    rows = [dict(side="all '-1'", dice=score(sample, answers, shapes))]
    hand = root / 'hand.py'
    hand.write_text(HAND)
    secs, said = run(sys.executable, hand, comp, root / 'hand.csv', a.size, a.epochs, a.bs, a.lr, a.seed)
    rows.append(dict(side='hand-rolled smp', dice=score(root / 'hand.csv', answers, shapes), seconds=secs, **json.loads(said.strip().splitlines()[-1])))
    common = ['--size', a.size, '--epochs', a.epochs, '--bs', a.bs, '--lr', a.lr, '--seed', a.seed, '--windows', 'hist', '--workers', a.workers]
    t_train, _ = run(KIT, '-q', 'train', comp / 'dicom-images-train', '--labels', comp / 'train-rle.csv', '--out', root / 'run', *common)
    t_pred, _ = run(KIT, '-q', 'predict', '--model', root / 'run', '--data', comp / 'dicom-images-test', '--sample', sample, '-o', root / 'kit.csv')
    post = json.loads((root / 'run' / 'masks.json').read_text())
    n_train = int(pd.read_csv(root / 'run' / 'folds.csv').fold.ne(0).sum())
    m = pd.read_csv(root / 'run' / 'metrics.csv')
    loop = m.time.map(lambda t: sum(int(x) * 60 ** i for i, x in enumerate(reversed(str(t).split(':'))))).sum()
    rows.append(dict(side='kit train + predict', dice=score(root / 'kit.csv', answers, shapes), seconds=t_train + t_pred,
                     train_s=float(loop), images_per_s=n_train * a.epochs / max(loop, 1), valid_dice=post['valid_dice'], triplet=tuple(post['triplet'].values())))
    table = pd.DataFrame(rows)
    print(f'seed {a.seed}: {a.patients} patients, {len(shapes)} test images, {a.size} px, {a.epochs} epochs, bs {a.bs}, lr {a.lr}')
    print(table.to_string(index=False, float_format=lambda v: f'{v:.3f}'))


if __name__ == '__main__':
    main()

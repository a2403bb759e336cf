"""Boxes: kit's box run against a hand-rolled torchvision FCOS script of the same budget, and the all-'No finding' submission.

    python bench/detect_bench.py [--patients 120] [--epochs 15] [--size 128] [--bs 8] [--lr 2e-3] [--seed 0] [--dir /tmp/kit-bench-detect]

Corpus: `kit synth --task detect` (VinBigData-shaped: three readers who disagree, 'No finding' rows, JPEG 2000, JPEG lossless,
RLE and plain files, MONOCHROME1 among them, non-square 600-900 px radiographs, four finding classes), a quarter of the patients
held out with their answers. Both sides: torchvision's FCOS on timm's resnet18 from scratch (`features_only`, a 128-wide feature
pyramid with P6 and P7), the same side, epochs, batch size, learning rate and a one-cycle schedule, on about 80% of the
training images, and 'No finding' scored 1 minus an image's best box.
- kit: `kit train DATA --labels train.csv --windows hist` (fastai, the readers' boxes fused by WBF, each image padded to the
  square, not augmented, the epoch of lowest validation loss), then `kit predict` (boxes in the original pixels).
- hand-rolled: what a competitor writes in a notebook: pydicom `pixel_array` (MONOCHROME1 inverted) scaled to [0, 1], squashed
  to the square with torch, every reader's box kept, FCOS's own forward with targets, a plain PyTorch loop (Adam, OneCycleLR),
  hflip, the last epoch, boxes scaled back.
Scored by VinBigData's mAP at IoU 0.4 (`kit.boxes.vinbigdata_map`) on the held-out images. Time is each whole process (imports,
reading, training, predicting); images/s is training images seen per second of the training loop alone.
"""
import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

KIT = str(Path(sys.executable).with_name('kit'))

HAND = r'''
import json, sys, time
from collections import OrderedDict
from pathlib import Path
import numpy as np, pandas as pd, pydicom, timm, torch, torch.nn.functional as F
from torchvision.models.detection import FCOS
from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelP6P7
comp, out, size, epochs, bs, lr, seed = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6]), int(sys.argv[7])
torch.manual_seed(seed); rng = np.random.default_rng(seed)

def load(f):
    ds = pydicom.dcmread(f); px = ds.pixel_array.astype(np.float32)
    if ds.PhotometricInterpretation == 'MONOCHROME1': px = px.max() - px
    px = (px - px.min()) / max(px.max() - px.min(), 1)
    return F.interpolate(torch.from_numpy(px)[None, None], (size, size), mode='bilinear', align_corners=False)[0].repeat(3, 1, 1), px.shape

class Body(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body = timm.create_model('resnet18', features_only=True, out_indices=(2, 3, 4), pretrained=False)
        self.fpn = FeaturePyramidNetwork(self.body.feature_info.channels(), 128, LastLevelP6P7(128, 128))
        self.out_channels = 128
    def forward(self, x): return self.fpn(OrderedDict((str(i), f) for i, f in enumerate(self.body(x))))

labels = pd.read_csv(comp / 'train.csv')
files = {f.stem: f for f in (comp / 'train').glob('*.dicom')}
ids = sorted(files); rng.shuffle(ids); ids = ids[:int(round(len(ids) * .8))]
X, T = [], []
for i in ids:
    x, (h, w) = load(files[i])
    r = labels[(labels.image_id == i) & (labels.class_id != 14)]
    b = r[['x_min', 'y_min', 'x_max', 'y_max']].to_numpy(np.float32) * np.float32([size / w, size / h, size / w, size / h])
    X.append(x); T.append(dict(boxes=torch.from_numpy(b).reshape(-1, 4), labels=torch.from_numpy(r.class_id.to_numpy()).long()))
X = torch.stack(X)
dev = 'cuda' if torch.cuda.is_available() else 'cpu'; amp = dev == 'cuda'  # mixed precision on a GPU
model = FCOS(Body(), 15, min_size=size, max_size=size, score_thresh=0.02, detections_per_img=100).to(dev)
scaler = torch.amp.GradScaler(enabled=amp)
opt = torch.optim.Adam(model.parameters(), lr)
sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=epochs * ((len(X) + bs - 1) // bs))
t0, seen = time.perf_counter(), 0
for epoch in range(epochs):
    model.train()
    for b in torch.randperm(len(X)).split(bs):
        xs, ts = [], []
        for i in b.tolist():
            x, t = X[i], dict(T[i])
            if torch.rand(1) < .5:
                x, bx = x.flip(-1), t['boxes'].clone()
                t['boxes'] = torch.stack([size - bx[:, 2], bx[:, 1], size - bx[:, 0], bx[:, 3]], 1)
            xs.append(x.to(dev)); ts.append({k: v.to(dev) for k, v in t.items()})
        with torch.autocast(dev, enabled=amp): loss = sum(model(xs, ts).values())
        opt.zero_grad(); scaler.scale(loss).backward(); scaler.step(opt); scaler.update(); sched.step(); seen += len(b)
if amp: torch.cuda.synchronize()
train_s = time.perf_counter() - t0
model.eval(); rows = []
with torch.no_grad():
    for f in sorted((comp / 'test').glob('*.dicom')):
        x, (h, w) = load(f)
        d = {k: v.cpu() for k, v in model([x.to(dev)])[0].items()}
        b = d['boxes'].numpy() * np.float32([w / size, h / size, w / size, h / size])
        parts = [f'{l} {s:.4f} {x0:.1f} {y0:.1f} {x1:.1f} {y1:.1f}' for l, s, (x0, y0, x1, y1) in zip(d['labels'].tolist(), d['scores'].tolist(), b) if l != 14]
        parts.append(f"14 {1 - (d['scores'].max().item() if len(d['scores']) else 0):.4f} 0 0 1 1")
        rows.append((f.stem, ' '.join(parts)))
pd.DataFrame(rows, columns=['image_id', 'PredictionString']).to_csv(out, index=False)
print(json.dumps(dict(train_s=train_s, images_per_s=seen / train_s)))
'''


def run(*args) -> tuple[float, str]:
    "Seconds a command took and what it printed; fails loudly when it fails."
    t = time.perf_counter()
    r = subprocess.run(list(map(str, args)), check=True, capture_output=True, text=True)
    return time.perf_counter() - t, r.stdout


def score(submission, answers) -> float:
    "VinBigData's mAP of a submission against the held-out answers."
    from kit.boxes import parse_prediction_string, read_box_labels, vinbigdata_map
    sub = pd.read_csv(submission, dtype=str, keep_default_na=False)
    pred = pd.concat([parse_prediction_string(s, 'vinbigdata').assign(image=i) for i, s in zip(sub.image_id, sub.PredictionString)])
    return vinbigdata_map(pred, read_box_labels(answers))


def loop_seconds(metrics_csv) -> float:
    "Seconds of fastai's epochs (train and validation), from `metrics.csv`'s `time` column."
    m = pd.read_csv(metrics_csv)
    return float(m.time.map(lambda t: sum(int(x) * 60 ** i for i, x in enumerate(reversed(str(t).split(':'))))).sum())


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--patients', type=int, default=120)
    p.add_argument('--epochs', type=int, default=15)
    p.add_argument('--size', type=int, default=128)
    p.add_argument('--bs', type=int, default=8)
    p.add_argument('--lr', type=float, default=2e-3)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--workers', type=int, default=0, help="kit's data loading processes (0: in the main process, as the hand-rolled side)")
    p.add_argument('--dir', default='/tmp/kit-bench-detect')
    p.add_argument('--sides', default='hand,kit', help='which sides to run: hand, kit or both')
    a = p.parse_args()
    root = Path(a.dir) / f'seed{a.seed}'
    comp = root / 'comp'
    if not comp.exists(): run(KIT, '-q', 'synth', comp, '--task', 'detect', '--patients', a.patients, '--seed', a.seed)
    answers, sample = comp / 'test_answers.csv', comp / 'sample_submission.csv'
    rows = [dict(side="all 'No finding'", map=score(sample, answers))]
    if 'hand' in a.sides:
        hand = root / 'hand.py'
        hand.write_text(HAND)
        secs, said = run(sys.executable, hand, comp, root / 'hand.csv', a.size, a.epochs, a.bs, a.lr, a.seed)
        rows.append(dict(side='hand-rolled FCOS', map=score(root / 'hand.csv', answers), seconds=secs, **json.loads(said.strip().splitlines()[-1])))
    if 'kit' in a.sides:
        common = ['--size', a.size, '--epochs', a.epochs, '--bs', a.bs, '--lr', a.lr, '--seed', a.seed, '--windows', 'hist', '--workers', a.workers]
        t_train, _ = run(KIT, '-q', 'train', comp / 'train', '--labels', comp / 'train.csv', '--out', root / 'run', *common)
        t_pred, _ = run(KIT, '-q', 'predict', '--model', root / 'run', '--data', comp / 'test', '--sample', sample, '-o', root / 'kit.csv')
        n_train = int(pd.read_csv(root / 'run' / 'folds.csv').fold.ne(0).sum())
        loop = loop_seconds(root / 'run' / 'metrics.csv')
        rows.append(dict(side='kit train + predict', map=score(root / 'kit.csv', answers), seconds=t_train + t_pred, train_s=loop,
                         images_per_s=n_train * a.epochs / max(loop, 1), valid_map=json.loads((root / 'run' / 'boxes.json').read_text())['valid_score']))
    print(f'seed {a.seed}: {a.patients} patients, {a.size} px, {a.epochs} epochs, bs {a.bs}, lr {a.lr}')
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f'{v:.3f}'))


if __name__ == '__main__':
    main()

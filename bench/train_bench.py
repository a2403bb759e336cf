"""Training: minutes and held-out AUC on the generated competition, and throughput against a plain timm loop.

    python bench/train_bench.py [--patients 64] [--size 128] [--epochs 15] [--arch resnet18] [--dir /tmp/kit-bench-train]

1. `kit.train.train` on the generated competition's cache (CPU unless a GPU is there): minutes of training
   and the AUC of `any` on the held-out test images (their answers are in solution.csv).
   Target on 2 cores at 128 px: AUC >= 0.9 within 5 minutes.
2. Training throughput (images/s, training phase only) of kit's fastai learner against a plain PyTorch +
   timm loop on the same cached PNGs, model backbone, batch size and precision, without augmentation.
   Target: kit at >= 95% of the plain loop.
"""
import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import timm
import torch
from fastai.callback.core import Callback
from fastai.learner import load_learner
from PIL import Image
from sklearn.metrics import roc_auc_score

from kit.cache import cached_paths, preprocess, read_manifest
from kit.data import read_labels
from kit.pipeline import resolve_spec, spec_dataloaders, training_table
from kit.spec import RunSpec
from kit.synth import make_competition
from kit.tasks import get_task
from kit.train import train


class TrainTimer(Callback):
    "Seconds spent in the training phase of each epoch, and the images seen there."
    def before_fit(self): self.secs, self.n = [], 0
    def before_train(self): self.t = time.perf_counter()
    def after_batch(self):
        if self.training: self.n += len(self.yb[0])
    def after_train(self): self.secs.append(time.perf_counter() - self.t)


class PngDataset(torch.utils.data.Dataset):
    "Cached PNGs and their 0/1 label rows, as float tensors in [0, 1]."
    def __init__(self, files, targets): self.files, self.targets = list(files), torch.tensor(np.asarray(targets), dtype=torch.float32)
    def __len__(self): return len(self.files)
    def __getitem__(self, i):
        img = torch.from_numpy(np.asarray(Image.open(self.files[i]).convert('RGB'))).permute(2, 0, 1).float() / 255
        return img, self.targets[i]


def plain_loop(files, targets, arch, bs, epochs, workers, device) -> float:
    "Images/s of a plain PyTorch + timm training loop over `files` (last epoch, training only)."
    model = timm.create_model(arch, pretrained=False, num_classes=targets.shape[1]).to(device)
    opt, loss_fn = torch.optim.Adam(model.parameters(), 1e-3), torch.nn.BCEWithLogitsLoss()
    dl = torch.utils.data.DataLoader(PngDataset(files, targets), batch_size=bs, shuffle=True, drop_last=True, num_workers=workers)
    use_amp = device == 'cuda'
    scaler = torch.amp.GradScaler(enabled=use_amp)
    for _ in range(epochs):
        t, n = time.perf_counter(), 0
        model.train()
        for x, y in dl:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with torch.autocast(device, enabled=use_amp):
                loss = loss_fn(model(x), y)
            opt.zero_grad()
            scaler.scale(loss).backward(); scaler.step(opt); scaler.update()
            n += len(x)
        if device == 'cuda': torch.cuda.synchronize()
    return n / (time.perf_counter() - t)


def kit_loop(table, spec) -> float:
    "Images/s of kit's fastai learner of `spec` on its cache (last of its epochs, training phase only)."
    learn = get_task(spec.task).learner(spec_dataloaders(spec, table), spec, '.')
    if torch.cuda.is_available(): learn = learn.to_fp16()
    timer = TrainTimer()
    with learn.no_bar(), learn.no_logging(): learn.fit(spec.epochs, 1e-3, cbs=timer)
    return timer.n / spec.epochs / timer.secs[-1]


def held_out_auc(run, cache_test, solution) -> float:
    "AUC of `any` on the held-out test images."
    learn = load_learner(Path(run) / 'model.pkl')
    man = read_manifest(cache_test)
    preds, _ = learn.get_preds(dl=learn.dls.test_dl(man.output.tolist()))
    sol = read_labels(solution).set_index('image')
    ids = [Path(s).stem for s in man.source]
    return roc_auc_score(sol.loc[ids, 'any'], preds[:, list(learn.dls.vocab).index('any')].numpy())


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--patients', type=int, default=64)
    p.add_argument('--size', type=int, default=128)
    p.add_argument('--epochs', type=int, default=15)
    p.add_argument('--arch', default='resnet18')
    p.add_argument('--bs', type=int, default=32)
    p.add_argument('--workers', type=int, default=2)
    p.add_argument('--dir', default='/tmp/kit-bench-train')
    a = p.parse_args()
    d = Path(a.dir)
    if not (d / 'comp').exists():
        make_competition(d / 'comp', n_patients=a.patients, slices=8, size=256, seed=0, workers=2)
    for split in ('train', 'test'):
        preprocess(d / 'comp' / f'{split}_images', d / f'cache_{split}', size=a.size, workers=a.workers, progress=False)
    device = 'cuda' if torch.cuda.is_available() else 'cpu'
    print(f'device: {device}, torch threads: {torch.get_num_threads()}, {a.arch} at {a.size} px, batch {a.bs}')

    t = time.perf_counter()
    res = train(d / 'comp' / 'train_images', d / 'comp' / 'train.csv', d / 'run', arch=a.arch, size=a.size, epochs=a.epochs,
                bs=a.bs, lr=3e-3, cache=d / 'cache_train', workers=a.workers)
    minutes = (time.perf_counter() - t) / 60
    auc = held_out_auc(d / 'run', d / 'cache_test', d / 'comp' / 'solution.csv')
    print(f'kit train: {a.epochs} epochs in {minutes:.2f} min; validation AUC(any) {res["auc_any"]:.3f}; held-out test AUC(any) {auc:.3f}')

    spec = RunSpec(d / 'comp' / 'train_images', d / 'comp' / 'train.csv', cache=d / 'cache_train', arch=a.arch, size=a.size, bs=a.bs,
                   epochs=2, augment=False, workers=a.workers)
    table, spec = training_table(resolve_spec(spec), a.workers)
    label_cols, train_rows = list(spec.label_cols), table[table.fold != 0]
    files = cached_paths(d / 'cache_train', train_rows.fname)
    plain = plain_loop(files, train_rows[label_cols].values, a.arch, a.bs, 2, a.workers, device)
    ours = kit_loop(table, spec)
    print(f'training throughput on {device}: plain timm loop {plain:.1f} img/s, kit (fastai) {ours:.1f} img/s, kit/plain {ours / plain:.0%}')


if __name__ == '__main__': main()

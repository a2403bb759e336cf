"""2.5D context: the same model trained on slices alone and with their neighbours, on bleeds that span slices.

    python bench/context_bench.py [--patients 96] [--epochs 16] [--size 64] [--context 1] [--seed 0] [--small 60] [--dir /tmp/kit-bench-context]

Corpus: `kit synth --bleeds 3d` (blobs across 3-5 slices, faint at their ends, brain 26-38 HU, blood 50-75 HU,
noise sd 10 HU), 256 px slices, a quarter of the patients held out as the test set with its answers.
Both runs: one `kit preprocess` cache (brain, subdural, bone at --size), then `kit train --cache` with resnet18 from
scratch, the same epochs, batch size, learning rate and seed; the only difference is `--context`. Each is scored
on the held-out test set by `kit predict`: RSNA's weighted log loss (any counts twice) and the mean AUC of the labels.
Time is the whole `kit train` process. Then, from the synth's `bleeds.csv`, the mean p(any) and log loss of `any` on
the test slices grouped by what they show: a small bleed (fewer than --small pixels at 256 px: a bleed's faint end),
a large one, no bleed but one on a neighbouring slice, or no bleed near.
"""
import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import log_loss, roc_auc_score

from kit.data import read_labels
from kit.synth import MIN_BLEED_PIXELS
from kit.baseline import long_log_loss

KIT = str(Path(sys.executable).with_name('kit'))


def kit(*args) -> float:
    "Seconds the kit command took; fails loudly when it fails."
    t = time.perf_counter()
    subprocess.run([KIT, '-q', *map(str, args)], check=True)
    return time.perf_counter() - t


def score(submission, solution) -> tuple[float, float, float]:
    "Weighted log loss, mean AUC of the labels and AUC of `any`, of a long RSNA submission against the answers."
    truth = read_labels(solution).set_index('image')
    preds = read_labels(submission).set_index('image').reindex(truth.index)[truth.columns]
    aucs = [roc_auc_score(truth[c], preds[c]) for c in truth.columns if truth[c].nunique() == 2]
    return long_log_loss(submission, solution, {'any': 2.}), float(np.mean(aucs)), roc_auc_score(truth['any'], preds['any'])


def slice_groups(bleeds_csv, small) -> pd.Series:
    "What each test slice shows, by image id: a small or large bleed, none but one on a neighbouring slice, or none near."
    b = pd.read_csv(bleeds_csv).query("split == 'test'").sort_values(['patient', 'slice'])
    pixels = b.filter(like='_pixels').max(axis=1)
    bleed = pixels >= MIN_BLEED_PIXELS
    near = bleed.groupby(b.patient).shift(1, fill_value=False) | bleed.groupby(b.patient).shift(-1, fill_value=False)
    group = np.select([bleed & (pixels < small), bleed, near], ['small bleed', 'large bleed', 'none, neighbour bleeds'], 'none near')
    return pd.Series(group, index=b.image.to_numpy())


def by_group(submission, solution, groups) -> pd.DataFrame:
    "Count, mean p(any) and log loss of `any` of a submission in each group of test slices."
    truth = read_labels(solution).set_index('image')['any']
    p = read_labels(submission).set_index('image')['any'].reindex(truth.index).clip(1e-6, 1 - 1e-6)
    df = pd.DataFrame({'y': truth, 'p': p, 'group': groups.reindex(truth.index)})
    g = df.groupby('group')
    return pd.DataFrame({'n': g.size(), 'mean p(any)': g.p.mean(), 'log loss': g.apply(lambda x: log_loss(x.y, x.p, labels=[0, 1]))})


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--patients', type=int, default=96)
    p.add_argument('--epochs', type=int, default=16)
    p.add_argument('--size', type=int, default=64)
    p.add_argument('--context', type=int, default=1)
    p.add_argument('--seed', type=int, default=0, help='seed of both runs (folds, weights, batches)')
    p.add_argument('--small', type=int, default=60, help='bleeds under this many pixels (at 256 px) count as small')
    p.add_argument('--dir', default='/tmp/kit-bench-context')
    args = p.parse_args()
    root = Path(args.dir)
    comp = root / 'comp'
    if not (comp / 'solution.csv').exists():
        kit('synth', comp, '--patients', args.patients, '--slices', 8, '--size', 256, '--bleeds', '3d', '--workers', 2)
    for split in ('train', 'test'):
        if not (root / f'cache_{split}' / 'manifest.parquet').exists():
            kit('preprocess', comp / f'{split}_images', root / f'cache_{split}', '--size', args.size)
    labels = read_labels(comp / 'train.csv')
    print(f'{len(labels)} training and {len(read_labels(comp / "solution.csv"))} test slices at {args.size} px; '
          f'positive (any): {labels["any"].mean():.0%}; resnet18 from scratch, {args.epochs} epochs each')
    groups, tables = slice_groups(comp / 'bleeds.csv', args.small), {}
    for context in (0, args.context):
        run = root / f'run_context{context}_seed{args.seed}'
        secs = kit('train', '--labels', comp / 'train.csv', '--cache', root / 'cache_train', '--out', run, '--size', args.size,
                   '--epochs', args.epochs, '--bs', 32, '--lr', 3e-3, '--context', context, '--seed', args.seed, '--workers', 0)
        kit('predict', '--model', run, '--cache', root / 'cache_test', '--sample', comp / 'sample_submission.csv',
            '-o', run / 'submission.csv', '--workers', 0)
        loss, auc, auc_any = score(run / 'submission.csv', comp / 'solution.csv')
        print(f'context {context} ({2 * context + 1} slices): weighted log loss {loss:.4f}   mean AUC {auc:.4f}   AUC any {auc_any:.4f}   '
              f'train {secs:.0f} s')
        tables[f'context {context}'] = by_group(run / 'submission.csv', comp / 'solution.csv', groups)
    print(pd.concat(tables, axis=1).round(3).to_string())


if __name__ == '__main__':
    main()

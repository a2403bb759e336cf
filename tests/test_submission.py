"From a competition folder to a checked submission.csv through the command line, scored like the competition."
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from fastai.torch_core import trainable_params
from scipy.ndimage import binary_dilation
from skimage.transform import resize
from sklearn.metrics import roc_auc_score

from kit.dicom import quiet_uid_warnings
from kit.explain import explain
from kit.synth import LESIONS, ct_dataset, head_phantom, lesion_mask

KIT = str(Path(sys.executable).with_name('kit'))


def kit(*args):
    "Run the installed `kit` console script; fail with its stderr when it fails."
    r = subprocess.run([KIT, *map(str, args)], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def rsna_log_loss(sub, solution, prior=None) -> float:
    "RSNA ICH's metric: log loss over the long rows, `any` rows weighted 2 (or of the constant `prior` per label)."
    df = solution.merge(sub, on='ID', suffixes=('', '_pred'))
    assert len(df) == len(solution)
    label = df.ID.str.rsplit('_', n=1).str[1]
    p = label.map(prior).values if prior is not None else df.Label_pred.values
    p, y, w = np.clip(p, 1e-7, 1 - 1e-7), df.Label.values, np.where(label == 'any', 2., 1.)
    return float(-(w * (y * np.log(p) + (1 - y) * np.log(1 - p))).sum() / w.sum())


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    "A generated competition, its caches and a run trained on it through the command line."
    tmp_path = tmp_path_factory.mktemp('e2e')
    kit('-q', 'synth', tmp_path / 'comp', '--patients', 64, '--size', 128, '--workers', 2)
    comp = tmp_path / 'comp'
    for split in ('train', 'test'): kit('-q', 'preprocess', comp / f'{split}_images', tmp_path / f'cache_{split}', '--size', 64)
    kit('-q', 'train', comp / 'train_images', '--labels', comp / 'train.csv', '--cache', tmp_path / 'cache_train', '--size', 64,
        '--epochs', 8, '--lr', '1e-2', '--out', tmp_path / 'run', '--workers', 2)
    return tmp_path


def assert_beats_the_prior(submission, comp):
    "The submission has the sample's ids in order and a lower RSNA weighted log loss than the training labels' prior."
    sub, solution = pd.read_csv(submission), pd.read_csv(comp / 'solution.csv')
    assert sub.ID.tolist() == pd.read_csv(comp / 'sample_submission.csv').ID.tolist()
    train = pd.read_csv(comp / 'train.csv')
    prior = train.groupby(train.ID.str.rsplit('_', n=1).str[1]).Label.mean().to_dict()
    ours, baseline = rsna_log_loss(sub, solution), rsna_log_loss(sub, solution, prior)
    print(f'weighted log loss: kit {ours:.4f}, label prior {baseline:.4f}')
    assert ours < baseline, (ours, baseline)


@pytest.mark.slow
def test_train_predict_validate_beats_the_prior(trained):
    comp = trained / 'comp'
    r = kit('predict', '--model', trained / 'run', '--data', comp / 'test_images', '--cache', trained / 'cache_test',
            '--sample', comp / 'sample_submission.csv', '-o', trained / 'submission.csv', '--workers', 2)
    assert 'valid' in r.stderr
    kit('validate', trained / 'submission.csv', '--sample', comp / 'sample_submission.csv')
    assert_beats_the_prior(trained / 'submission.csv', comp)
    sub, solution = (pd.read_csv(p).set_index('ID').Label for p in (trained / 'submission.csv', comp / 'solution.csv'))
    on_any = solution.index[solution.index.str.endswith('_any')]
    assert roc_auc_score(solution[on_any], sub[on_any]) > 0.75  # a resnet18 from scratch, 8 epochs on 2 cores: well above chance


def test_validate_catches_each_planted_fault(tmp_path):
    sample = pd.DataFrame({'ID': [f'ID_{i}_{l}' for i in range(5) for l in ('epidural', 'any')], 'Label': 0.5})
    sample.to_csv(tmp_path / 'sample.csv', index=False)
    good = sample.assign(Label=np.linspace(0, 1, len(sample)))
    faults = {'missing id': good.iloc[1:], 'extra id': pd.concat([good, good.iloc[:1].assign(ID='ID_9_any')]),
              'duplicate': pd.concat([good, good.iloc[:1]]), 'NaN': good.assign(Label=[np.nan] + [0.1] * 9),
              'value > 1': good.assign(Label=[1.2] + [0.1] * 9), 'column order': good[['Label', 'ID']]}
    good.to_csv(tmp_path / 'good.csv', index=False)
    assert subprocess.run([KIT, 'validate', tmp_path / 'good.csv', '--sample', tmp_path / 'sample.csv']).returncode == 0
    for name, bad in faults.items():
        path = tmp_path / f"{name.replace(' ', '_')}.csv"
        bad.to_csv(path, index=False)
        r = subprocess.run([KIT, 'validate', path, '--sample', tmp_path / 'sample.csv'], capture_output=True, text=True)
        assert r.returncode == 1 and r.stderr.strip() and 'Traceback' not in r.stderr, (name, r.stderr)


class BleedModel(torch.nn.Module):
    "Right for the right reason by construction: every logit rises with the pixels at blood density (62-75 HU) away from bone."
    def __init__(self, mean, std, n_out):
        super().__init__()
        self.register_buffer('mean', mean.reshape(1, -1, 1, 1).float()); self.register_buffer('std', std.reshape(1, -1, 1, 1).float())
        self.n_out, self.gain = n_out, torch.nn.Parameter(torch.ones(()))  # a parameter, for the optimizer `export` makes
    def forward(self, x):
        x = x * self.std + self.mean  # the windows in [0, 1], before fastai's Normalize
        brain, bone = x[:, 0:1], x[:, 2:3]  # brain and bone windows
        near_bone = torch.nn.functional.max_pool2d((bone > 0.4).float(), 3, 1, 1)  # the skull's edge, where partial volume mimics blood
        blood = ((brain > 0.65) & (brain < 0.99)).float() * (1 - near_bone)
        return (self.gain * (blood.sum((1, 2, 3)) - 4.)).unsqueeze(1).repeat(1, self.n_out)


@pytest.fixture(scope='module')
def known_run(trained):
    "The trained run with its model replaced by `BleedModel`: a model whose answer is known, so the map's place can be asserted anywhere."
    from kit.infer import load_run
    learn, _ = load_run(trained / 'run', cpu=True)
    norm = next((t for t in learn.dls.after_batch.fs if type(t).__name__ == 'Normalize'), None)  # fastai normalises pretrained models only
    mean, std = (norm.mean.cpu(), norm.std.cpu()) if norm is not None else (torch.zeros(3), torch.ones(3))
    learn.model = BleedModel(mean, std, len(learn.dls.vocab))
    learn.splitter = trainable_params  # no body and head to split
    out = trained / 'known_run'
    out.mkdir(exist_ok=True)
    shutil.copy(trained / 'run' / 'config.yaml', out / 'config.yaml')
    learn.path = out
    learn.export('model.pkl')
    return out


def bleed_slices(folder, n=32, seed=0) -> dict:
    "Write `n` new 128 px slices with one or two known bleeds to `folder`; their lesion masks by image id."
    rng, masks = np.random.default_rng(seed), {}
    for k in range(n):
        uid, lesions = f'ID_lesion{k:02d}', tuple(rng.choice(LESIONS, size=rng.integers(1, 3), replace=False))
        with quiet_uid_warnings():
            ct_dataset(head_phantom(128, seed=2000 + k, lesions=lesions), uid=uid, spacing=1.).save_as(folder / f'{uid}.dcm', enforce_file_format=True)
        masks[uid] = lesion_mask(128, seed=2000 + k, lesions=lesions)
    return masks


def pointing_hits(res, masks) -> list[bool]:
    "For each detected positive (p >= 0.5) of `explain`'s result, whether the map's maximum lies on its bleed (2 px tolerance)."
    return [binary_dilation(resize(masks[uid].astype(float), cam.shape, order=1) > 0.25, iterations=2)[np.unravel_index(cam.argmax(), cam.shape)]
            for uid, cam, p in zip(res['ids'], res['cams'], res['probs']) if p >= 0.5]


@pytest.mark.slow
def test_saliency_points_at_the_lesions(trained, known_run, tmp_path):
    "Pointing game on a model whose answer is known: the default map's maximum falls on the bleed in 90% of detected positives, on any machine."
    masks = bleed_slices(tmp_path)
    res = explain(known_run, tmp_path, images=sorted(masks))
    hits = pointing_hits(res, masks)
    print(f"{res['method']}, known model: the maximum on the bleed in {sum(hits)} of {len(hits)} detected positives (of 32 slices with a bleed)")
    assert len(hits) >= 24 and np.mean(hits) >= 0.9, hits
    r = subprocess.run([KIT, '-q', 'explain', trained / 'run', '--data', tmp_path, '-n', '4', '-o', tmp_path / 'grid.png'], capture_output=True, text=True)
    assert r.returncode == 0 and (tmp_path / 'grid.png').stat().st_size > 10_000, r.stderr

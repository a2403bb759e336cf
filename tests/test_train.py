"Training as a user runs it: the run folder, offline weights, two processes under accelerate (a model that learns: test_submission.py)."
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import timm
import torch
import yaml

from kit.data import read_labels
from kit.train import WeightsError, make_learner, train

KIT = str(Path(sys.executable).with_name('kit'))


def test_kit_train_writes_the_run_folder(competition, tmp_path):
    r = subprocess.run([KIT, 'train', competition['train_images'], '--labels', competition['train'], '--out', tmp_path / 'run',
                        '--size', '32', '--epochs', '2', '--bs', '4', '--n-folds', '3', '--workers', '0'], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    run = tmp_path / 'run'
    assert len(pd.read_csv(run / 'metrics.csv')) == 2
    config = yaml.safe_load((run / 'config.yaml').read_text())
    assert config['arch'] == 'resnet18' and config['task'] == 'multi' and config['n_valid'] > 0
    folds = pd.read_csv(run / 'folds.csv')
    assert folds.groupby('PatientID').fold.nunique().eq(1).all()
    oof = pd.read_csv(run / 'oof.csv')
    assert set(oof.image) == set(folds.image[folds.fold == 0]) and 'pred_any' in oof
    assert 'best epoch' in r.stderr


def _dls(competition, tmp_path):
    from kit.pipeline import resolve_spec, spec_dataloaders, training_table
    from kit.spec import RunSpec
    table, spec = training_table(resolve_spec(RunSpec(competition['train_images'], competition['train'], size=32, bs=4, n_folds=3, workers=0)))
    return spec_dataloaders(spec, table), spec.label_cols


def test_local_weights_are_loaded(competition, tmp_path):
    "Offline weights from a file (a Kaggle dataset): the backbone starts from them."
    ref = timm.create_model('resnet18', pretrained=False)
    torch.save(ref.state_dict(), tmp_path / 'resnet18.pth')
    dls, cols = _dls(competition, tmp_path)
    learn = make_learner(dls, 'resnet18', weights=tmp_path)
    assert torch.equal(learn.model[0].model.layer1[0].conv1.weight, ref.layer1[0].conv1.weight)


def test_missing_weights_fail_in_one_clear_error(competition, tmp_path, monkeypatch):
    import huggingface_hub.constants
    monkeypatch.setattr(huggingface_hub.constants, 'HF_HUB_OFFLINE', True)  # HF_HUB_OFFLINE=1, as in an internet-off kernel
    dls, cols = _dls(competition, tmp_path)
    with pytest.raises(WeightsError, match='cannot load pretrained weights for resnet18.*weights=FILE'):
        make_learner(dls, 'resnet18', pretrained=True)
    with pytest.raises(WeightsError, match='no weights for resnet18'):
        make_learner(dls, 'resnet18', weights=tmp_path / 'nothing_here')


@pytest.mark.slow
def test_two_processes_under_accelerate(competition, tmp_path):
    "Distributed data parallel with two CPU processes (gloo), launched by the command that runs two T4s (GPUs hidden: one GPU cannot hold two ranks)."
    accelerate = Path(sys.executable).with_name('accelerate')
    cmd = [accelerate, 'launch', '--multi_gpu', '--num_processes', '2', '--num_machines', '1', '--mixed_precision', 'no',
           '--dynamo_backend', 'no', KIT, 'train', competition['train_images'], '--labels', competition['train'],
           '--out', tmp_path / 'run', '--size', '32', '--epochs', '2', '--bs', '4', '--n-folds', '3', '--workers', '0']
    r = subprocess.run(list(map(str, cmd)), capture_output=True, text=True, timeout=600, env={**os.environ, 'OMP_NUM_THREADS': '1', 'CUDA_VISIBLE_DEVICES': ''})
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / 'run' / 'model.pkl').exists() and len(pd.read_csv(tmp_path / 'run' / 'metrics.csv')) == 2
    assert 'process 0 of 2: DistributedType.MULTI_CPU' in r.stderr and 'process 1 of 2: DistributedType.MULTI_CPU' in r.stderr, r.stderr[-2000:]
    assert r.stderr.count('best epoch') == 1, 'one process writes the run'
    oof, folds = pd.read_csv(tmp_path / 'run' / 'oof.csv'), pd.read_csv(tmp_path / 'run' / 'folds.csv')
    assert sorted(oof.image) == sorted(folds.image[folds.fold == 0]), 'every validation image once, no padding duplicates'


def test_learning_rate_from_lr_find(competition, tmp_path):
    "lr='auto' runs fastai's lr_find and records the rate it chose."
    train(competition['train_images'], competition['train'], tmp_path / 'run', size=32, epochs=1, bs=4, n_folds=3, lr='auto', workers=0)
    lr = yaml.safe_load((tmp_path / 'run' / 'config.yaml').read_text())['lr']
    assert 1e-7 < lr < 10 and lr != 2e-3


def test_one_label_column_trains(competition, tmp_path):
    "A wide csv with a single 0/1 label (mammography's `cancer`): targets of one column, its AUC among the metrics."
    wide = read_labels(competition['train'])[['image', 'any']].rename(columns={'any': 'cancer'})
    wide.to_csv(tmp_path / 'labels.csv', index=False)
    res = train(competition['train_images'], tmp_path / 'labels.csv', tmp_path / 'run', size=32, epochs=1, bs=4, n_folds=3, workers=0)
    assert {'auc', 'wlogloss'} <= set(res) and 0 <= res['auc'] <= 1, res
    assert pd.read_csv(tmp_path / 'run' / 'oof.csv').columns.tolist()[:2] == ['image', 'pred_cancer']

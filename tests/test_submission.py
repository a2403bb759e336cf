"From a competition folder to a checked submission.csv through the command line, scored like the competition."
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from skimage.transform import resize

from kit.dicom import quiet_uid_warnings
from kit.explain import explain
from kit.synth import ct_dataset, head_phantom, lesion_mask

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
        '--epochs', 20, '--lr', '1e-2', '--out', tmp_path / 'run', '--workers', 2)
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


def kaggle_image(root) -> Path:
    "A Python environment like Kaggle's image: this one's packages without kit, seen through a .pth file."
    packages = root / 'image-packages'
    packages.mkdir()
    site = Path(next(p for p in sys.path if p.endswith('site-packages')))
    for entry in site.iterdir():
        if not entry.name.startswith(('kit', '__editable__')): (packages / entry.name).symlink_to(entry)
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip', root / 'python'], check=True)
    [venv_site] = (root / 'python').glob('lib/python*/site-packages')
    (venv_site / 'kaggle-image.pth').write_text(str(packages) + '\n')
    pip = root / 'python' / 'bin' / 'pip'  # the image's pip, as its console script would run it
    pip.write_text(f"#!{root / 'python' / 'bin' / 'python'}\nimport sys\nfrom pip._internal.cli.main import main\nsys.exit(main())\n")
    pip.chmod(0o755)
    return root / 'python' / 'bin'


@pytest.mark.slow
def test_kernel_notebook_runs_in_a_kaggle_layout(trained, tmp_path):
    "kit's kernel notebook, run cell by cell with /kaggle moved to a temp folder: offline install, then predict."
    comp, kaggle = trained / 'comp', tmp_path / 'kaggle'
    data = kaggle / 'input' / 'kit-demo'
    data.mkdir(parents=True)
    (kaggle / 'working').mkdir()
    for name in ('test_images', 'sample_submission.csv'): (data / name).symlink_to(comp / name)
    shutil.copytree(trained / 'run', kaggle / 'input' / 'kit-models' / 'fold_0')
    kit('-q', 'wheels', kaggle / 'input' / 'kit-wheels', '--no-download')
    kit('-q', 'kernel', 'init', tmp_path / 'k', '--user', 'me', '--competition', 'kit-demo', '--models', 'kit-models/fold_0', '--cpu')
    bin_dir = kaggle_image(tmp_path)
    env = {**os.environ, 'PATH': f"{bin_dir}:{os.environ['PATH']}", 'PIP_NO_INDEX': '1', 'PIP_DISABLE_PIP_VERSION_CHECK': '1'}
    for cell in json.loads((tmp_path / 'k' / 'kernel.ipynb').read_text())['cells']:
        assert cell['source'].startswith('!')
        r = subprocess.run(cell['source'][1:].replace('/kaggle', str(kaggle)), shell=True, env=env, cwd=kaggle / 'working',
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, (cell['source'], r.stderr[-3000:])
    assert (bin_dir / 'kit').exists() and list(bin_dir.parent.glob('lib/python*/site-packages/kit/dicom.py'))
    assert_beats_the_prior(kaggle / 'working' / 'submission.csv', comp)


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


@pytest.mark.slow
def test_gradcam_lights_up_the_lesions(trained, tmp_path):
    "On new slices with a known bleed, the maps of the slices the model calls positive are higher on the lesion than elsewhere."
    masks = {}
    for k in range(12):
        uid, lesions = f'ID_lesion{k:02d}', ('intraparenchymal',) if k % 2 else ('intraparenchymal', 'subdural')
        with quiet_uid_warnings():
            ct_dataset(head_phantom(128, seed=1000 + k, lesions=lesions), uid=uid, spacing=1.).save_as(tmp_path / f'{uid}.dcm', enforce_file_format=True)
        masks[uid] = lesion_mask(128, seed=1000 + k, lesions=lesions)
    res = explain(trained / 'run', tmp_path, images=sorted(masks))
    inside, outside = [], []
    for uid, cam, p in zip(res['ids'], res['cams'], res['probs']):
        if p < 0.5: continue
        lesion = resize(masks[uid].astype(float), cam.shape, order=1, anti_aliasing=True) > 0.5
        inside.append(cam[lesion].mean()); outside.append(cam[~lesion].mean())
    print(f'{len(inside)} of 12 called positive; mean map on the lesion {np.mean(inside):.3f}, elsewhere {np.mean(outside):.3f}')
    assert len(inside) >= 6 and np.mean(inside) > np.mean(outside)
    r = subprocess.run([KIT, '-q', 'explain', trained / 'run', '--data', tmp_path, '-n', '4', '-o', tmp_path / 'grid.png'], capture_output=True, text=True)
    assert r.returncode == 0 and (tmp_path / 'grid.png').stat().st_size > 10_000, r.stderr

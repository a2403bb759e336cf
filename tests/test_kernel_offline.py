"""The internet-off kernel end to end, as the README's internet-off section does it: the image's freeze from the README's
cell, `kit wheels --image`, then kit's kernel notebook run by a Jupyter kernel in a /kaggle tree, in a network namespace
with no network and pip reading no configuration.

The image is simulated: a venv that sees this venv's packages (symlinked) except kit and the packages kit ships
(pydicom, the decoder plugins, captum, dicom-anonymizer). Their wheels come from this venv's installed files (no
download), so the kernel installs the very versions the tests run with. KIT_TEST_IMAGE_PYTHON names a real image's
Python instead (`.ci/oldest` passes one built at the oldest versions kit supports): then the wheels come from the
index, for that image.
"""
import base64
import hashlib
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from importlib import metadata
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from kit.kaggle_tools import kernel_folder
from kit.train import train

KIT = str(Path(sys.executable).with_name('kit'))
README = Path(__file__).parents[1] / 'README.md'
SHIPPED = ('pydicom', 'pylibjpeg', 'pylibjpeg-openjpeg', 'pylibjpeg-libjpeg', 'pylibjpeg-rle', 'pyjpegls', 'captum', 'dicom-anonymizer')
REAL_IMAGE = os.environ.get('KIT_TEST_IMAGE_PYTHON')


def _canon(name): return re.sub(r'[-_.]+', '-', name).lower()


def _netns_works() -> bool:
    "True when this machine lets us run a command in a new network namespace with only loopback up (unshare -rn, ip)."
    if not (shutil.which('unshare') and shutil.which('ip')): return False
    return subprocess.run(['unshare', '-rn', 'ip', 'link', 'set', 'lo', 'up'], capture_output=True).returncode == 0


pytestmark = pytest.mark.skipif(not _netns_works(), reason='no network namespace here (unshare -rn and ip are needed)')


def offline(*cmd) -> list:
    "`cmd` in a new network namespace whose only interface is loopback: no network at all."
    return ['unshare', '-rn', 'sh', '-c', 'ip link set lo up && exec "$@"', 'offline', *map(str, cmd)]


def pip_env(home, **extra) -> dict:
    "This environment with pip reading no configuration file and no PIP_ variable, HOME in `home`, and `extra`."
    env = {k: v for k, v in os.environ.items() if not k.startswith(('PIP_', 'PYTHON', 'JUPYTER', 'KIT_'))}
    return {**env, 'PIP_CONFIG_FILE': os.devnull, 'HOME': str(home), **extra}


def rewheel(dist, out) -> Path:
    "A wheel of the installed distribution `dist`, made of the files its RECORD lists (scripts left out: pip writes them anew)."
    info = next(f.parts[0] for f in dist.files if f.parts[0].endswith('.dist-info'))
    tag = next(l.split(':', 1)[1].strip() for l in dist.read_text('WHEEL').splitlines() if l.startswith('Tag:'))
    wheel, record = Path(out) / f"{info.removesuffix('.dist-info')}-{tag}.whl", []
    with zipfile.ZipFile(wheel, 'w', zipfile.ZIP_DEFLATED) as z:
        for f in dist.files:
            if f.parts[0] == '..' or '__pycache__' in f.parts or f.name in ('RECORD', 'INSTALLER', 'REQUESTED', 'direct_url.json'): continue
            data = Path(f.locate()).read_bytes()
            z.writestr(str(f), data)
            record.append(f"{f},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},{len(data)}")
        z.writestr(f'{info}/RECORD', '\n'.join(record + [f'{info}/RECORD,,']) + '\n')
    return wheel


def simulated_image(root) -> Path:
    "The Python of a venv at `root` that has this venv's packages, symlinked, except kit and SHIPPED; nothing in it writes here."
    site = Path(sysconfig.get_path('purelib'))
    hidden = {_canon(n) for n in ('kit', *SHIPPED)}
    drop = {f.parts[0] for d in metadata.distributions(path=[str(site)]) if _canon(d.metadata['Name']) in hidden for f in d.files or []}
    drop |= {p.name for p in site.glob('__editable__*kit*')}
    shared = Path(root) / 'site'
    shared.mkdir(parents=True)
    for entry in site.iterdir():
        if entry.name not in drop and entry.name != '__pycache__': (shared / entry.name).symlink_to(entry)
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip', Path(root) / 'venv'], check=True)
    python = Path(root) / 'venv' / 'bin' / 'python'
    own = subprocess.run([python, '-c', 'import sysconfig; print(sysconfig.get_path("purelib"))'], capture_output=True, text=True, check=True)
    (Path(own.stdout.strip()) / 'image.pth').write_text(f'import site; site.addsitedir({str(shared)!r})\n')
    return python


def readme_freeze_cell() -> str:
    "The README's one cell that writes the image's package list."
    section = README.read_text().split('## A real competition, step by step')[1]
    return next(b for b in re.findall(r'```python\n(.*?)```', section, re.S) if 'format=freeze' in b)


RUN_NOTEBOOK = '''
import sys, nbformat
from nbclient import NotebookClient
nb = nbformat.read(sys.argv[1], as_version=4)
try: NotebookClient(nb, timeout=600, kernel_name='python3', resources={'metadata': {'path': sys.argv[3]}}).execute()
finally: nbformat.write(nb, sys.argv[2])
'''


def run_kernel(python, folder, kaggle, home) -> tuple:
    "Run folder/kernel.ipynb in a Jupyter kernel of `python`, offline, working in kaggle/working; the exit code and the executed notebook."
    done = Path(folder) / 'executed.ipynb'
    r = subprocess.run(offline(python, '-c', RUN_NOTEBOOK, Path(folder) / 'kernel.ipynb', done, kaggle / 'working'), capture_output=True,
                       text=True, env=pip_env(home), timeout=900)
    return r, nbformat.read(done, as_version=4)


def said(cell) -> str:
    "What a cell printed, and its error as Jupyter shows it (`SystemExit: message`)."
    return '\n'.join([o.get('text', '') for o in cell.outputs if o.output_type == 'stream'] +
                     [f'{o.ename}: {o.evalue}' for o in cell.outputs if o.output_type == 'error'])


@pytest.fixture(scope='module')
def kaggle(tmp_path_factory, competition):
    "A /kaggle tree: the competition, a model dataset with one tiny run, and the wheels `kit wheels --image` built for the image."
    tmp = tmp_path_factory.mktemp('kernel')
    kaggle = tmp / 'kaggle'
    (kaggle / 'working').mkdir(parents=True)
    shutil.copytree(competition['test_images'], kaggle / 'input' / 'kit-demo' / 'test_images')
    shutil.copy(competition['sample'], kaggle / 'input' / 'kit-demo' / 'sample_submission.csv')
    train(competition['train_images'], competition['train'], kaggle / 'input' / 'kit-models' / 'fold_0', arch='resnet18', size=32,
          epochs=1, bs=8, n_folds=3, pretrained=False, workers=0, augment=False)
    python = Path(REAL_IMAGE) if REAL_IMAGE else simulated_image(tmp / 'image')
    # the README's cell, in the image, in its working folder; the freeze is then taken out as the README says
    subprocess.run([python, '-c', readme_freeze_cell()], cwd=kaggle / 'working', check=True, env=pip_env(tmp))
    shutil.move(kaggle / 'working' / 'image.txt', tmp / 'image.txt')
    env = pip_env(tmp)
    if not REAL_IMAGE:
        index = tmp / 'index'
        index.mkdir()
        for name in SHIPPED: rewheel(metadata.distribution(name), index)
        env.update(PIP_NO_INDEX='1', PIP_FIND_LINKS=str(index))
    cmd = [KIT, 'wheels', kaggle / 'input' / 'kit-wheels', '--image', tmp / 'image.txt']
    r = subprocess.run(cmd if REAL_IMAGE else offline(*cmd), capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr
    return dict(kaggle=kaggle, tmp=tmp, python=python, log=r.stderr)


def shipped(kaggle) -> set:
    "The projects of the wheels in the kit-wheels dataset."
    return {_canon(w.name.split('-')[0]) for w in (kaggle / 'input' / 'kit-wheels').glob('*.whl')}


def test_wheels_are_what_the_image_lacks(kaggle):
    "`kit wheels --image` ships kit and the packages the image lacks, nothing it has: no numpy, torch or fastai."
    names = shipped(kaggle['kaggle'])
    if not REAL_IMAGE: assert names == {'kit', *map(_canon, SHIPPED)}, names
    assert {'numpy', 'torch', 'scikit-learn', 'pandas'}.isdisjoint(names) and 'kit' in names
    install = (kaggle['kaggle'] / 'input' / 'kit-wheels' / 'INSTALL.txt').read_text()
    assert install.startswith('pip install --no-index --find-links /kaggle/input/kit-wheels kit\n# for image.txt (Python 3.'), install
    assert 'pyjpegls' in install and 'pip install --no-index' in kaggle['log']


def test_kernel_runs_offline_and_writes_a_valid_submission(kaggle, tmp_path):
    "The notebook installs kit with no network, checks its decoders, predicts and validates: each cell says so in one line."
    folder = kernel_folder(tmp_path / 'k', 'me', 'kit-demo', 'kit-wheels', ['kit-models/fold_0'], root=kaggle['kaggle'])
    python = kaggle['python'] if REAL_IMAGE else simulated_image(tmp_path / 'image')
    r, nb = run_kernel(python, folder, kaggle['kaggle'], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    install, check, predict, validate = (said(c) for c in nb.cells[1:])
    assert install.startswith('Successfully installed') and 'kit-0.1.0' in install and 'pyjpegls' in install, install
    assert check.startswith('kit 0.1.0 on Python') and 'JPEG 2000 (pylibjpeg), JPEG lossless (pylibjpeg), JPEG-LS (pyjpegls), RLE (pylibjpeg)' in check, check
    assert 'valid' in validate, validate
    submission = kaggle['kaggle'] / 'working' / 'submission.csv'
    sample = kaggle['kaggle'] / 'input' / 'kit-demo' / 'sample_submission.csv'
    assert subprocess.run([KIT, 'validate', submission, '--sample', sample]).returncode == 0
    assert len(pd.read_csv(submission)) == len(pd.read_csv(sample))


def test_missing_wheel_stops_the_kernel_at_the_install_cell(kaggle, tmp_path):
    "A wheels dataset that lacks a package stops the run at the install cell with pip's one line; no later cell runs."
    if REAL_IMAGE: pytest.skip('the real image already has kit, from the other test')
    wheels = tmp_path / 'kaggle' / 'input' / 'broken-wheels'
    shutil.copytree(kaggle['kaggle'] / 'input' / 'kit-wheels', wheels)
    [gone] = wheels.glob('pyjpegls-*.whl')
    gone.unlink()
    (tmp_path / 'kaggle' / 'working').mkdir()
    folder = kernel_folder(tmp_path / 'k', 'me', 'kit-demo', 'broken-wheels', ['kit-models/fold_0'], root=tmp_path / 'kaggle')
    r, nb = run_kernel(simulated_image(tmp_path / 'image'), folder, tmp_path / 'kaggle', tmp_path)
    assert r.returncode != 0
    install = nb.cells[1]
    [error] = [o for o in install.outputs if o.output_type == 'error']
    assert error.ename == 'SystemExit' and error.evalue.startswith('kit install failed: ERROR: ') and 'pyjpegls' in error.evalue, error.evalue
    assert '\n' not in error.evalue
    assert all(c.execution_count is None and not c.outputs for c in nb.cells[2:])
    assert not (tmp_path / 'kaggle' / 'working' / 'submission.csv').exists()

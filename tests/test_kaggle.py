"`kit submit` with the real kaggle client against a local stand-in for Kaggle's API."
import json
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from kaggle_server import KaggleStandIn, kaggle_stand_in

KIT = str(Path(sys.executable).with_name('kit'))


@pytest.fixture
def files(tmp_path):
    "A valid submission, its sample, and an environment pointing the client at the stand-in (no kaggle.json)."
    sample = pd.DataFrame({'ID': ['ID_a_any', 'ID_b_any'], 'Label': 0.5})
    sample.to_csv(tmp_path / 'sample.csv', index=False)
    sample.assign(Label=[0.1, 0.9]).to_csv(tmp_path / 'submission.csv', index=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith('KAGGLE_')}
    env.update(KAGGLE_API_ENVIRONMENT='TEST', KAGGLE_USERNAME=KaggleStandIn.user, KAGGLE_KEY=KaggleStandIn.key,
               HOME=str(tmp_path), KAGGLE_CONFIG_DIR=str(tmp_path / '.kaggle'))
    return tmp_path, env


def kit_submit(tmp_path, env, competition='kit-demo', *extra):
    "Run `kit submit` on the fixture's files."
    return subprocess.run([KIT, 'submit', tmp_path / 'submission.csv', '--competition', competition, '-m', 'fold 0',
                           '--sample', tmp_path / 'sample.csv', *extra], capture_output=True, text=True, env=env, timeout=120)


def test_submission_reaches_kaggle_byte_for_byte(files):
    tmp_path, env = files
    with kaggle_stand_in() as server:
        r = kit_submit(tmp_path, env)
    assert r.returncode == 0, r.stderr
    assert 'Successfully submitted to kit-demo' in r.stderr
    assert server.submissions == [dict(competition='kit-demo', description='fold 0', content=(tmp_path / 'submission.csv').read_bytes())]


@pytest.mark.parametrize('case, words', [('rules-not-accepted', 'accept the competition rules'),
                                         ('no-such-competition', "unknown competition 'no-such-competition'"),
                                         ('bad-key', 'refused the credentials')])
def test_refusals_are_one_clear_line(files, case, words):
    tmp_path, env = files
    if case == 'bad-key': env = {**env, 'KAGGLE_KEY': 'wrong'}
    with kaggle_stand_in() as server:
        r = kit_submit(tmp_path, env, 'kit-demo' if case == 'bad-key' else case)
    assert r.returncode == 1 and words in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert server.submissions == []


def test_no_network_and_no_credentials(files):
    tmp_path, env = files
    r = kit_submit(tmp_path, env)  # no server listening
    assert r.returncode == 1 and 'cannot reach Kaggle' in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    env = {k: v for k, v in env.items() if k not in ('KAGGLE_USERNAME', 'KAGGLE_KEY')}
    r = kit_submit(tmp_path, env)
    assert r.returncode == 1 and 'no Kaggle credentials' in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_invalid_file_is_never_sent(files):
    tmp_path, env = files
    pd.DataFrame({'ID': ['ID_a_any'], 'Label': [0.1]}).to_csv(tmp_path / 'submission.csv', index=False)
    with kaggle_stand_in() as server:
        r = kit_submit(tmp_path, env)
    assert r.returncode == 1 and 'nothing sent' in r.stderr and server.submissions == [], r.stderr


def test_wheels_install_offline_in_a_fresh_environment(tmp_path):
    "kit's wheel from `kit wheels` installs with --no-index, as in an internet-off kernel, and brings the `kit` command."
    r = subprocess.run([KIT, 'wheels', tmp_path / 'kit-wheels', '--no-download'], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    install = (tmp_path / 'kit-wheels' / 'INSTALL.txt').read_text().split()
    assert install[:5] == ['pip', 'install', '--no-index', '--find-links', '/kaggle/input/kit-wheels'] and install[5] == 'kit'
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip', tmp_path / 'venv'], check=True)
    r = subprocess.run([sys.executable, '-m', 'pip', '--python', tmp_path / 'venv' / 'bin' / 'python', 'install', '-q', '--no-index',
                        '--no-deps', '--find-links', tmp_path / 'kit-wheels', 'kit'], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / 'venv' / 'bin' / 'kit').exists() and list((tmp_path / 'venv').rglob('site-packages/kit/dicom.py'))


def kernel_init(tmp_path, competition='kit-demo'):
    "`kit kernel init` a folder for `competition`; return it."
    r = subprocess.run([KIT, 'kernel', 'init', tmp_path / 'k', '--user', 'kituser', '--competition', competition,
                        '--models', 'kit-models/fold_0'], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return tmp_path / 'k'


def test_kernel_push_reaches_kaggle(files):
    "The pushed kernel is the notebook kit wrote, internet off, with the competition and both datasets attached."
    tmp_path, env = files
    folder = kernel_init(tmp_path)
    with kaggle_stand_in() as server:
        r = subprocess.run([KIT, 'kernel', 'push', folder], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0 and 'pushed kituser/kit-demo-kit-inference version 1' in r.stderr, r.stderr
    [kernel] = server.kernels
    assert kernel['slug'] == 'kituser/kit-demo-kit-inference' and kernel['enableInternet'] is False
    assert kernel['competitionDataSources'] == ['kit-demo'] and kernel['datasetDataSources'] == ['kituser/kit-wheels', 'kituser/kit-models']
    sent = nbformat.reads(kernel['text'], as_version=4)
    nbformat.validate(sent)  # nbformat 4.5: every cell has an id
    assert [(c.id, c.source) for c in sent.cells] == [(c.id, c.source) for c in nbformat.read(folder / 'kernel.ipynb', as_version=4).cells]
    assert [c.id for c in sent.cells] == ['about', 'install', 'check', 'predict', 'validate']
    assert "raise SystemExit(f'kit install failed: {errors[0]}')" in sent.cells[1].source and '/kaggle/input/kit-wheels' in sent.cells[1].source


def test_kernel_slug_is_cut_at_a_word(tmp_path):
    "Kaggle's slugs have 50 characters at most: a long competition name loses whole words, never half of one."
    competition = 'rsna-intracranial-hemorrhage-detection'
    meta = json.loads((kernel_init(tmp_path, competition) / 'kernel-metadata.json').read_text())
    assert meta['id'] == f'kituser/{competition}-kit' and meta['title'] == f'{competition}-kit'


def test_kernel_push_refusals(files):
    tmp_path, env = files
    folder = kernel_init(tmp_path, 'no-such-competition')
    with kaggle_stand_in() as server:
        r = subprocess.run([KIT, 'kernel', 'push', folder], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 1 and 'unknown sources no-such-competition' in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert server.kernels == []
    env = {k: v for k, v in env.items() if k not in ('KAGGLE_USERNAME', 'KAGGLE_KEY')}
    r = subprocess.run([KIT, 'kernel', 'push', folder], capture_output=True, text=True, env=env)
    assert r.returncode == 1 and 'no Kaggle credentials' in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def canon(name): return re.sub(r'[-_.]+', '-', name).lower()


def venv_freeze(path, header='# python 3.11.7', **lines) -> Path:
    "This venv's packages less kit, written as an image's freeze at `path`; `lines` (by normalised name) replace or add lines."
    freeze = {canon(d.metadata['Name']): f"{d.metadata['Name']}=={d.version}" for d in metadata.distributions() if canon(d.metadata['Name']) != 'kit'}
    freeze.update({canon(k.replace('_', '-')): v for k, v in lines.items()})
    Path(path).write_text('\n'.join([header, *freeze.values()]) + '\n')
    return Path(path)


def kit_wheels(tmp_path, image, *extra):
    "`kit wheels` for `image` with no package index at all: the image must have everything kit needs."
    env = {k: v for k, v in os.environ.items() if not k.startswith('PIP_')}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX='1')
    return subprocess.run([KIT, 'wheels', tmp_path / 'w', '--image', image, *extra], capture_output=True, text=True, env=env, timeout=300)


def test_wheels_read_every_kind_of_freeze_line(tmp_path):
    "A freeze with URL lines, local versions, editable and conda lines: the image has all kit needs, so only kit ships."
    torch = metadata.version('torch').split('+')[0]
    image = venv_freeze(tmp_path / 'image.txt', header='',
                        torch=f'torch @ https://download.pytorch.org/whl/cu124/torch-{torch}%2Bcu124-cp311-cp311-linux_x86_64.whl',
                        numpy=f"numpy=={metadata.version('numpy')}+local",
                        tool='-e git+https://github.com/me/tool@0123abc#egg=tool',
                        numba='numba @ file:///home/conda/feedstock_root/build_artifacts/numba_1700000000/work')
    r = kit_wheels(tmp_path, image)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stderr.strip().endswith(f"{image}: no '# python X.Y' line: give the kernel's Python version (--python)"), r.stderr
    r = kit_wheels(tmp_path, image, '--python', '3.11')
    assert r.returncode == 0, r.stderr
    assert 'for image.txt (Python 3.11): kit ships nothing else' in r.stderr, r.stderr
    assert [w.name.split('-')[0] for w in (tmp_path / 'w').glob('*.whl')] == ['kit']


def test_wheels_conflict_with_the_image_is_one_line(tmp_path):
    "An image whose package is older than kit needs, and not one kit may replace: one line naming it and both versions."
    r = kit_wheels(tmp_path, venv_freeze(tmp_path / 'image.txt', pylibjpeg='pylibjpeg==1.4.0'))
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert re.search(r'image.txt: kit \S+ needs pylibjpeg>=\S+, the image has pylibjpeg 1.4.0, and kit does not replace pylibjpeg', r.stderr), r.stderr
    assert not list((tmp_path / 'w').glob('pylibjpeg*'))


def test_wheels_need_a_version_for_what_kit_needs(tmp_path):
    "A conda-style line with no version for a package kit needs is one error that says how to write the list."
    line = 'pyjpegls @ file:///home/conda/feedstock_root/build_artifacts/pyjpegls_1700000000/work'
    r = kit_wheels(tmp_path, venv_freeze(tmp_path / 'image.txt', pyjpegls=line))
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert f"kit needs pyjpegls, but the line '{line}' gives no version: write the list with pip list --format=freeze" in r.stderr, r.stderr


PIPS = Path(__file__).parent / 'pips'  # .ci/run downloads pip 21.2.3 and 22.3 here: what Python 3.10.0's and 3.11.0's ensurepip bundle


def old_pips() -> list:
    "pip wheels older than `kit wheels` needs: the one this Python's ensurepip bundles (offline, what a fresh venv gets), and those in PIPS."
    import ensurepip
    from kit.kaggle_tools import MIN_PIP
    from packaging.version import Version
    wheels = sorted(Path(ensurepip.__file__).parent.glob('_bundled/pip-*.whl')) + sorted(PIPS.glob('pip-*.whl'))
    return [w for w in wheels if Version(w.name.split('-')[1]) < Version(MIN_PIP)]


@pytest.mark.parametrize('wheel', old_pips(), ids=lambda w: w.name.split('-')[1])
def test_wheels_with_an_old_pip_say_what_to_upgrade(tmp_path, wheel):
    "kit with a fresh venv's old pip first on its path: `kit wheels` is one line naming the pip it has and the upgrade, not a fault of the image."
    import sysconfig
    import zipfile
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip', tmp_path / 'venv'], check=True)
    python = tmp_path / 'venv' / 'bin' / 'python'
    site = Path(subprocess.run([python, '-c', 'import sysconfig; print(sysconfig.get_path("purelib"))'], capture_output=True, text=True,
                               check=True).stdout.strip())
    zipfile.ZipFile(wheel).extractall(site)  # the old pip, installed as pip installs a wheel: its files
    (site / 'kit-env.pth').write_text(f'import site; site.addsitedir({sysconfig.get_path("purelib")!r})\n')  # kit, after the old pip
    r = subprocess.run([python, '-c', 'from kit.cli import main; raise SystemExit(main())', 'wheels', tmp_path / 'w', '--image',
                        venv_freeze(tmp_path / 'image.txt')], capture_output=True, text=True, timeout=300,
                       env={**os.environ, 'PIP_NO_INDEX': '1', 'PIP_CONFIG_FILE': os.devnull})
    version = wheel.name.split('-')[1]
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert f'kit wheels needs pip 23.3 or newer to resolve for another image; this Python has pip {version}: run {python} -m pip install --upgrade pip' in r.stderr, r.stderr

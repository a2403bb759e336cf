"Shared fixtures: the real-file corpus and a small generated competition."
import os
import shutil
from pathlib import Path

import pytest
from pydicom.data import get_testdata_files

from kit.synth import make_competition


def corpus_files() -> list[str]:
    "Every file of pydicom's bundled test files and of pydicom-data (folders left out)."
    return sorted(f for f in get_testdata_files() if Path(f).is_file())


@pytest.fixture(scope='session')
def competition(tmp_path_factory):
    "A small synthetic competition, generated once per test session."
    return make_competition(tmp_path_factory.mktemp('comp'), n_patients=6, slices=4, size=64, seed=3)


needs_dcmtk = pytest.mark.skipif(shutil.which('dcm2pnm') is None, reason='DCMTK (Debian package dcmtk) is not installed')


def pytest_configure(config):
    "Under pytest-xdist each worker, and every kit process it starts, computes on one thread: two workers share two cores without contention."
    if os.environ.get('PYTEST_XDIST_WORKER'):
        import torch
        os.environ['OMP_NUM_THREADS'] = '1'
        torch.set_num_threads(1)

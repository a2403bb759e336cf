"The registries users extend (windows, submission formats): queried like timm's, read by the CLI's help, loaded by `module:name`."
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import kit.submit
import kit.window
from kit.cli import make_parser
from kit.submit import SubmissionFormat, list_formats, make_submission
from kit.tasks import list_tasks
from kit.window import list_windows

KIT = str(Path(sys.executable).with_name('kit'))
USER_FORMATS = '''from kit.submit import SubmissionFormat, register_format
register_format(SubmissionFormat('my-comp', labels=('cancer',), id_pattern=r'P[0-9]+'))
BY_STUDY = SubmissionFormat('by-study', how='max')  # defined, not registered
'''


def run_kit(*args, **kw) -> subprocess.CompletedProcess:
    "Run the installed `kit` console script."
    return subprocess.run([KIT, *map(str, args)], capture_output=True, text=True, timeout=300, **kw)


def command_help(command, monkeypatch) -> str:
    "`kit COMMAND --help` as built now, on one long line (argparse would break `rsna-ich` at its hyphen)."
    monkeypatch.setenv('COLUMNS', '1000')
    return ' '.join(next(a for a in make_parser()._actions if a.dest == 'command').choices[command].format_help().split())


@pytest.fixture
def registries(monkeypatch):
    "Both registries as copies, so that what a test registers leaves with it."
    monkeypatch.setattr(kit.submit, 'SUBMISSION_FORMATS', dict(kit.submit.SUBMISSION_FORMATS))
    monkeypatch.setattr(kit.window, 'WINDOWS', dict(kit.window.WINDOWS))


@pytest.fixture
def user_module(tmp_path, monkeypatch, registries):
    "A user's module `user_formats_<test>` on sys.path that registers `my-comp` on import."
    name = f'user_formats_{abs(hash(str(tmp_path)))}'
    (tmp_path / f'{name}.py').write_text(USER_FORMATS)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_list_queries_by_glob_sorted(registries):
    assert list_windows('brain*') == ['brain', 'brain_bone', 'brain_soft'] and list_windows('Brain*') == []
    assert list_formats() == ['auto', 'rle', 'rsna-breast', 'rsna-cervical-spine', 'rsna-ich', 'rsna-pneumonia', 'siim-acr', 'siim-covid-image', 'vinbigdata']
    assert list_tasks() == ['multi', 'single', 'regression', 'segment', 'detect', 'series']
    kit.window.register_window('a_window', 10, 5)
    kit.submit.register_format(SubmissionFormat('a-format'))
    assert list_windows()[0] == 'a_window' and list_formats('a*') == ['a-format', 'auto']


def test_help_lists_what_is_registered_when_it_is_shown(registries, monkeypatch):
    "The help is read from the registries: a window or format registered after `kit.cli` was imported shows up."
    kit.window.register_window('my_window', 10, 5)
    kit.submit.register_format(SubmissionFormat('my-comp'))
    assert 'my-comp, rle, rsna-breast, rsna-cervical-spine, rsna-ich, rsna-pneumonia, siim-acr, siim-covid-image, vinbigdata, or module:name' in command_help('predict', monkeypatch)
    for cmd in ('validate', 'kernel'): assert 'auto, my-comp, rle, rsna-breast' in command_help(cmd, monkeypatch), cmd
    for cmd in ('meta', 'preprocess', 'train'): assert 'liver, lungs, mediastinum, my_window, soft_tissue' in command_help(cmd, monkeypatch), cmd


def test_cli_start_up_imports_no_registry():
    "Listing the registries in help costs nothing until help is shown: building the parser imports neither pandas nor pydicom."
    code = 'import sys; from kit.cli import make_parser; make_parser(); print(sorted(m for m in ("pandas", "pydicom") if m in sys.modules))'
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == '[]', (r.stdout, r.stderr)


def test_make_submission_loads_a_users_format_by_module_name(user_module):
    preds, sample = pd.DataFrame({'image': ['P1', 'P2'], 'cancer': [0.25, 0.75]}), pd.DataFrame({'id': ['P2', 'P1'], 'cancer': 0.})
    assert make_submission(preds, sample, f'{user_module}:my-comp').cancer.tolist() == [0.75, 0.25]
    assert 'my-comp' in list_formats()
    with pytest.raises(ValueError, match=r"^format my-comp: 1 sample ids do not match P\[0-9\]\+, e.g. 'X3'$"):
        make_submission(preds, sample.assign(id=['P2', 'X3']), f'{user_module}:my-comp')
    assert kit.submit.get_format(f'{user_module}:BY_STUDY').how == 'max'


@pytest.mark.parametrize('fmt, why', [('nowhere_module_xyz:my-comp', "(cannot import nowhere_module_xyz: ModuleNotFoundError: No module named 'nowhere_module_xyz')"),
                                      ('{m}:other', "({m} registers no format 'other')"), ('rsna_ich', '')])
def test_an_unknown_format_is_one_line_naming_the_known_ones(user_module, fmt, why):
    fmt, why = fmt.format(m=user_module), why.format(m=user_module)
    with pytest.raises(ValueError) as e: make_submission(pd.DataFrame({'image': ['P1'], 'cancer': [0.5]}), pd.DataFrame({'id': ['P1'], 'cancer': [0.]}), fmt)
    rest = 'rle, rsna-breast, rsna-cervical-spine, rsna-ich, rsna-pneumonia, siim-acr, siim-covid-image, vinbigdata'
    known = f'auto, my-comp, {rest}' if ':' in fmt and 'nowhere' not in fmt else f'auto, {rest}'
    assert str(e.value) == f"unknown submission format {fmt!r}{' ' + why if why else ''}: use {known} or module:name"


def test_cli_format_module_name(tmp_path):
    "`kit validate --format module:name` with the module on PYTHONPATH checks its rules; a module that is not there is a usage error."
    (tmp_path / 'comp_formats.py').write_text(USER_FORMATS)
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    pd.DataFrame({'id': ['P1', 'P2'], 'cancer': 0.}).to_csv(tmp_path / 'sample.csv', index=False)
    pd.DataFrame({'id': ['P1', 'P2'], 'cancer': [0.1, 0.9]}).to_csv(tmp_path / 'sub.csv', index=False)
    r = run_kit('validate', tmp_path / 'sub.csv', '--sample', tmp_path / 'sample.csv', '--format', 'comp_formats:my-comp', env=env)
    assert r.returncode == 0 and r.stderr.strip() == f'{tmp_path / "sub.csv"}: valid, 2 rows', r.stderr
    pd.DataFrame({'id': ['P1', 'P2'], 'malignant': 0.}).to_csv(tmp_path / 'other.csv', index=False)
    r = run_kit('validate', tmp_path / 'sub.csv', '--sample', tmp_path / 'other.csv', '--format', 'comp_formats:my-comp', env=env)
    assert r.returncode == 1 and r.stderr.splitlines()[0] == f"{tmp_path / 'sub.csv'}: format my-comp needs the sample's columns cancer, not malignant"
    for cmd in (['validate', tmp_path / 'sub.csv', '--sample', tmp_path / 'sample.csv'], ['predict', '--model', tmp_path, '--sample', tmp_path / 'sample.csv']):
        r = run_kit(*cmd, '--format', 'comp_formats:my-comp')  # no PYTHONPATH: exit 2 before any model is read
        assert r.returncode == 2 and 'Traceback' not in r.stderr
        assert r.stderr.splitlines()[-1].endswith("argument --format: unknown submission format 'comp_formats:my-comp' (cannot import comp_formats: "
                                                  "ModuleNotFoundError: No module named 'comp_formats'): use auto, rle, rsna-breast, rsna-cervical-spine, "
                                                  "rsna-ich, rsna-pneumonia, siim-acr, siim-covid-image, vinbigdata or module:name"), r.stderr

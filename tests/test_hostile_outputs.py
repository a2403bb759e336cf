"Hostile inputs on the way out: an unreadable test image costs its own row only; a broken model, csv or meta table is one line naming the file and the cause."
import resource
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kit.cache import preprocess
from kit.data import CsvError
from kit.dicom import DicomError
from kit.infer import predict
from kit.submit import validate_submission
from kit.synth import LABELS, make_competition
from kit.train import train
from test_submission import KIT


def kit(*args, timeout=600, **kw) -> subprocess.CompletedProcess:
    "Run the installed `kit` console script."
    return subprocess.run([KIT, *map(str, args)], capture_output=True, text=True, timeout=timeout, **kw)


def one_error_line(r) -> str:
    "The stderr of a kit command that failed as it should: exit 1, one line, no traceback."
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1 and 'Traceback' not in r.stderr, (r.returncode, r.stderr[-3000:])
    return lines[0]


def wide(sub) -> pd.DataFrame:
    "A long RSNA-style submission (`ID_<image>_<label>`, Label) as one row per image, one column per label."
    parts = sub.ID.str.rsplit('_', n=1)
    return sub.assign(image=parts.str[0], label=parts.str[1]).pivot(index='image', columns='label', values='Label')[list(LABELS)]


@pytest.fixture(scope='module')
def comp(tmp_path_factory) -> dict:
    "A small competition, a run trained from its DICOMs and one on its cache, and its test images with two bad files."
    d = tmp_path_factory.mktemp('outputs')
    c = make_competition(d / 'comp', n_patients=8, slices=2, size=32, seed=8)
    train(c['train_images'], c['train'], d / 'run_dicom', size=32, epochs=1, bs=4, n_folds=3, workers=0)
    preprocess(c['train_images'], d / 'cache', size=32, workers=0, progress=False)
    train(c['train_images'], c['train'], d / 'run_cache', size=32, epochs=1, bs=4, n_folds=3, cache=d / 'cache', workers=0)
    shutil.copytree(c['test_images'], d / 'test_bad')
    cut, junk = sorted((d / 'test_bad').glob('*.dcm'))[:2]
    raw = cut.read_bytes()
    pixels = raw.rindex(b'\xe0\x7f\x10\x00')  # (7FE0,0010) Pixel Data, the last element
    cut.write_bytes(raw[:pixels + (len(raw) - pixels) // 2])
    junk.write_bytes(np.random.default_rng(0).bytes(5000))  # not DICOM at all, with a .dcm name
    shutil.copytree(c['test_images'], d / 'test_good', ignore=lambda _, names: [n for n in names if n in (cut.name, junk.name)])
    labels = pd.read_csv(c['train'])
    mean = labels.groupby(labels.ID.str.rsplit('_', n=1).str[1]).Label.mean()[list(LABELS)]
    return dict(d=d, **c, cut=cut, junk=junk, mean=mean)


@pytest.mark.slow
@pytest.mark.parametrize('run, test_cache', [('run_dicom', False), ('run_cache', False), ('run_cache', True)])
def test_predict_fills_unreadable_images_with_the_training_mean(comp, run, test_cache, tmp_path):
    "A truncated test file and a non-DICOM one: exit 0, one warning naming both, every sample row, the two rows at the label mean."
    d, cut, junk = comp['d'], comp['cut'], comp['junk']
    cache = []
    if test_cache:  # a cache of the test images whose manifest records the two errors
        preprocess(d / 'test_bad', tmp_path / 'cache_test', size=32, workers=0, progress=False)
        cache = ['--cache', tmp_path / 'cache_test']
    r = kit('-q', 'predict', '--model', d / run, '--data', d / 'test_bad', '--sample', comp['sample'], '-o', tmp_path / 'sub.csv',
            '--workers', 2, *cache)
    assert r.returncode == 0, r.stderr[-3000:]
    warning = r.stderr.strip().splitlines()  # -q: kit's warnings only
    assert len(warning) == 1 and warning[0].startswith('2 of 4 test images cannot be read'), r.stderr
    assert f'{cut.name}: truncated' in warning[0] and f'{junk.name}: not a DICOM file' in warning[0], warning[0]
    sub = pd.read_csv(tmp_path / 'sub.csv')
    assert sub.ID.tolist() == pd.read_csv(comp['sample']).ID.tolist()
    got = wide(sub)
    np.testing.assert_allclose(got.loc[[cut.stem, junk.stem]].to_numpy(), np.stack([comp['mean']] * 2), atol=1e-6)
    clean = predict(d / run, d / 'test_good', workers=0).set_index('image')[list(LABELS)]
    assert len(clean) == 2
    np.testing.assert_allclose(got.loc[clean.index].to_numpy(), clean.to_numpy(), atol=1e-6)


@pytest.mark.parametrize('run', ['run_dicom', 'run_cache'])
def test_strict_predict_names_the_first_unreadable_file(comp, run):
    with pytest.raises(DicomError) as info: predict(comp['d'] / run, comp['d'] / 'test_bad', workers=0, strict=True)
    msg = str(info.value)
    assert msg.startswith(f"{comp['cut']}: truncated") and 'the first of 2 unreadable test images out of 4' in msg and '\n' not in msg, msg


def test_strict_predict_on_the_command_line(comp, tmp_path):
    "`kit predict --strict` (needs the option in kit.cli): exit 1, one line naming the first bad file; nothing written."
    r = kit('-q', 'predict', '--model', comp['d'] / 'run_dicom', '--data', comp['d'] / 'test_bad', '--sample', comp['sample'],
            '-o', tmp_path / 'sub.csv', '--workers', 0, '--strict')
    line = one_error_line(r)
    assert line.startswith(f"kit predict: DicomError: {comp['cut']}: truncated") and 'first of 2' in line, line
    assert not (tmp_path / 'sub.csv').exists()


def _truncate(p): p.write_bytes(p.read_bytes()[:p.stat().st_size // 2])

BROKEN_RUNS = {  # what breaks, and the words of the one line
    'model cut in half': ('model.pkl', _truncate, 'model.pkl: cannot load the model (RuntimeError'),
    'model empty': ('model.pkl', lambda p: p.write_bytes(b''), 'model.pkl: cannot load the model (EOFError'),
    'model garbage': ('model.pkl', lambda p: p.write_bytes(b'\x80\x04garbage'), 'model.pkl: cannot load the model (UnpicklingError'),
    'config missing': ('config.yaml', lambda p: p.unlink(), 'config.yaml: no such file'),
    'config garbage': ('config.yaml', lambda p: p.write_bytes(b'task: [\x00\xff'), 'config.yaml: cannot read it ('),
    'config not a run': ('config.yaml', lambda p: p.write_text('hello\n'), 'config.yaml: not a kit train config (no task, label_cols)'),
}

@pytest.mark.parametrize('case', BROKEN_RUNS)
def test_a_broken_run_folder_is_one_line(comp, case, tmp_path):
    name, breaks, words = BROKEN_RUNS[case]
    run = shutil.copytree(comp['d'] / 'run_dicom', tmp_path / 'run')
    breaks(run / name)
    r = kit('-q', 'predict', '--model', run, '--data', comp['test_images'], '--sample', comp['sample'], '-o', tmp_path / 'sub.csv')
    line = one_error_line(r)
    assert f'{run}/{words}' in line, line
    if name == 'model.pkl': assert 'the file is truncated or is not a model kit train exported' in line, line
    assert not (tmp_path / 'sub.csv').exists()


@pytest.fixture(scope='module')
def meta(comp) -> Path:
    "The header table of the training images."
    r = kit('-q', 'meta', comp['train_images'], '-o', comp['d'] / 'meta.parquet', '--workers', 0)
    assert r.returncode == 0, r.stderr
    return comp['d'] / 'meta.parquet'


HOSTILE_CSVS = {  # bytes, and the words that follow the file's name in the error
    'ragged first row': (b'ID,Label\nID_a_any,0.1,0.2\nID_b_any,0.3\n', 'line 2 has 3 fields but the header has 2'),
    'ragged later row': (b'ID,Label\nID_a_any,0.1\nID_b_any,0.3\n\nID_c_any,0.3,7,8\n', 'line 5 has 4 fields but the header has 2'),
    'empty': (b'', 'empty file (no header line)'),
    'blank lines': (b'\n\n\n', 'empty file (no header line)'),
    'NUL bytes': (b'ID,Label\n' + bytes(5000), 'not a text file (a NUL byte at offset 9)'),
    'latin-1': ('ID,Label\nID_caf\xe9_any,1\n'.encode('latin-1'), 'not UTF-8 text (byte 0xe9 at offset 15)'),
    'missing': (None, 'no such file'),
    'folder': ('folder', 'a folder, not a csv file'),
}

def hostile_csv(case, folder) -> Path:
    "Write the hostile csv `case` into `folder`; its path."
    raw, path = HOSTILE_CSVS[case][0], folder / f"{case.replace(' ', '_')}.csv"
    if raw == 'folder': path.mkdir()
    elif raw is not None: path.write_bytes(raw)
    return path


@pytest.mark.parametrize('case', HOSTILE_CSVS)
def test_hostile_labels_csv_is_one_line(meta, case, tmp_path):
    "`kit audit --labels X` (kit.data.read_labels): exit 1, one line naming the file and the cause."
    path = hostile_csv(case, tmp_path)
    line = one_error_line(kit('-q', 'audit', meta, '--labels', path))
    assert f'{path}: {HOSTILE_CSVS[case][1]}' in line, line


def test_ragged_labels_stop_training_in_one_line(comp, tmp_path):
    path = hostile_csv('ragged later row', tmp_path)
    line = one_error_line(kit('-q', 'train', comp['train_images'], '--labels', path, '--out', tmp_path / 'run', '--workers', 0))
    assert f'{path}: line 5 has 4 fields but the header has 2' in line, line


@pytest.mark.parametrize('case', ['ragged first row', 'NUL bytes', 'empty'])
def test_hostile_sample_is_one_line(comp, case, tmp_path):
    "`kit validate SUB --sample X` (kit.submit reads the sample): exit 1, one line naming the sample."
    path = hostile_csv(case, tmp_path)
    line = one_error_line(kit('validate', comp['sample'], '--sample', path))
    assert f'{path}: {HOSTILE_CSVS[case][1]}' in line, line


@pytest.mark.parametrize('case', ['ragged first row', 'ragged later row', 'NUL bytes', 'latin-1'])
def test_hostile_submission_is_refused_by_validate_submission(comp, case, tmp_path):
    path = hostile_csv(case, tmp_path)
    with pytest.raises(CsvError) as info: validate_submission(path, comp['sample'])
    assert str(info.value).startswith(f'{path}: {HOSTILE_CSVS[case][1]}') and '\n' not in str(info.value), str(info.value)


@pytest.mark.parametrize('case', ['ragged first row', 'ragged later row'])
def test_validate_names_the_ragged_line_not_duplicate_ids(comp, case, tmp_path):
    "`kit validate` of a ragged submission (needs kit.cli to read it with kit.submit.read_submission)."
    path = hostile_csv(case, tmp_path)
    line = one_error_line(kit('validate', path, '--sample', comp['sample']))
    assert f'{path}: {HOSTILE_CSVS[case][1]}' in line and 'duplicate' not in line, line


def _limit_memory():
    "In the child: at most 4 GiB of address space, so that a parser that runs away fails fast instead of swapping the machine."
    resource.setrlimit(resource.RLIMIT_AS, (4 * 2**30, 4 * 2**30))


@pytest.mark.parametrize('head, words', [(b'', 'not a text file (a NUL byte at offset 0)'),
                                         (b'ID,Label\n' + b'ID_a_any,0.1\n' * 6000, '2,147,483,648 bytes, more than a submission for the sample can need')])
def test_validate_refuses_a_2gb_file_without_parsing_it(comp, head, words, tmp_path):
    "A 2 GB submission (sparse: no disk) of NUL bytes, or of text then NULs, once took pandas to 8.5 GB and std::bad_alloc."
    path = tmp_path / 'submission.csv'
    with open(path, 'wb') as f: f.write(head); f.truncate(2 * 1024**3)
    line = one_error_line(kit('validate', path, '--sample', comp['sample'], timeout=120, preexec_fn=_limit_memory))
    assert line.startswith('kit validate: CsvError: ') and f'{path}: {words}' in line, line


@pytest.fixture
def failed_meta(tmp_path) -> Path:
    "A kit meta table in which no file could be read: only fname and error."
    path = tmp_path / 'failed.parquet'
    pd.DataFrame({'fname': ['/data/a.dcm', '/data/b.dcm', '/data/c.dcm'],
                  'error': ['truncated file (it ends inside a data element)', 'not a DICOM file', 'permission denied']}).to_parquet(path)
    return path


@pytest.mark.parametrize('labels', [False, True])
def test_eda_of_a_meta_without_a_readable_file_is_one_line(comp, failed_meta, labels, tmp_path):
    args = ['--labels', comp['train']] if labels else []
    line = one_error_line(kit('-q', 'eda', failed_meta, *args, '-o', tmp_path / 'eda'))
    assert 'no readable file in' in line and '3 errors, e.g. /data/a.dcm: truncated file (it ends inside a data element)' in line, line
    assert not (tmp_path / 'eda').exists()


def test_audit_of_a_meta_without_a_readable_file_is_one_line(comp, failed_meta):
    line = one_error_line(kit('-q', 'audit', failed_meta, '--labels', comp['train']))
    assert 'no readable file in' in line and '3 errors, e.g. /data/a.dcm' in line, line


def test_audit_of_a_labels_csv_given_as_meta_is_one_line(comp):
    line = one_error_line(kit('-q', 'audit', comp['train'], '--labels', comp['train']))
    assert 'does not look like a kit meta file: no fname column (its columns: ID, Label)' in line, line


def test_meta_errors_name_the_meta_file(comp, failed_meta):
    "With kit.cli passing the META path to audit and eda_report (not a DataFrame), the line names the file."
    assert f'no readable file in {failed_meta}: 3 errors' in one_error_line(kit('-q', 'audit', failed_meta, '--labels', comp['train']))
    assert f"{comp['train']} does not look like a kit meta file" in one_error_line(kit('-q', 'audit', comp['train'], '--labels', comp['train']))


def _binary_labels(comp, tmp_path, shape) -> Path:
    "The `any` label of the competition alone, as a wide csv (image,target) or a long one (ID_<image>_cancer,Label)."
    long = pd.read_csv(comp['train'])
    one = long[long.ID.str.endswith('_any')]
    if shape == 'wide': df = pd.DataFrame({'image': one.ID.str[:-len('_any')], 'target': one.Label})
    else: df = one.assign(ID=one.ID.str[:-len('_any')] + '_cancer')
    df.to_csv(tmp_path / f'{shape}.csv', index=False)
    return tmp_path / f'{shape}.csv'


@pytest.mark.parametrize('shape, label', [('wide', 'target'), ('long', 'cancer')])
def test_audit_of_one_binary_label(comp, meta, shape, label, tmp_path):
    "One 0/1 label, wide or long: audited (a table with its AUCs); the same label all 0: one line saying why not."
    labels = _binary_labels(comp, tmp_path, shape)
    r = kit('-q', 'audit', meta, '--labels', labels, '-o', tmp_path / 'table.csv')
    assert r.returncode == 0, r.stderr
    table = pd.read_csv(tmp_path / 'table.csv')
    assert f'auc_{label}' in table and table.best_auc.notna().any() and set(table.best_label.dropna()) == {label}
    df = pd.read_csv(labels)
    df.iloc[:, 1] = 0
    df.to_csv(labels, index=False)
    line = one_error_line(kit('-q', 'audit', meta, '--labels', labels))
    assert f"{labels}: nothing to audit: label {label!r} has one value (0)" in line and 'no AUC exists' in line, line

"The `kit` command as a user runs it: exit codes, one-line errors, light start-up."
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

KIT = str(Path(sys.executable).with_name('kit'))


def kit(*args, **kw) -> subprocess.CompletedProcess:
    "Run the installed `kit` console script."
    return subprocess.run([KIT, *map(str, args)], capture_output=True, text=True, timeout=300, **kw)


def test_synth_then_meta_end_to_end(tmp_path):
    r = kit('synth', tmp_path / 'comp', '--patients', 3, '--slices', 3, '--size', 64)
    assert r.returncode == 0, r.stderr
    (tmp_path / 'comp' / 'train_images' / 'broken.dcm').write_bytes(b'\x00' * 300)
    r = kit('meta', tmp_path / 'comp', '-o', tmp_path / 'meta.parquet', '--pixel-stats', '--workers', 2)
    assert r.returncode == 0, r.stderr
    df = pd.read_parquet(tmp_path / 'meta.parquet')
    assert len(df) == 10 and df.error.notna().sum() == 1 and df.img_min.notna().sum() == 9
    assert '10 files, 1 errors' in r.stderr and 'broken.dcm' in r.stderr


def test_missing_source_fails_in_one_line(tmp_path):
    r = kit('meta', tmp_path / 'nowhere', '-o', tmp_path / 'm.parquet')
    assert r.returncode == 1 and 'Traceback' not in r.stderr
    assert r.stderr.strip().splitlines() == [f'kit meta: FileNotFoundError: {tmp_path / "nowhere"}: no such file or folder']
    assert 'Traceback' in kit('--debug', 'meta', tmp_path / 'nowhere').stderr


def test_usage_errors_exit_2(tmp_path):
    assert kit('meta', tmp_path, '--window', 'wide').returncode == 2
    assert kit('nonsense').returncode == 2
    assert kit().returncode == 2


def test_every_command_has_help_with_an_example():
    from kit.cli import make_parser
    commands = list(next(a for a in make_parser()._actions if a.dest == 'command').choices)
    r = kit('--help')
    assert r.returncode == 0 and len(commands) == 15 and all(f'\n    {c} ' in r.stdout or f'\n    {c}\n' in r.stdout for c in commands), r.stdout
    for cmd in commands:
        r = kit(cmd, '--help')
        assert r.returncode == 0 and 'Example: kit ' + cmd in ' '.join(r.stdout.split())


def test_meta_does_not_import_torch(tmp_path):
    "kit meta starts light: no torch, no fastai learner."
    code = ("import sys; from kit.cli import main; main(['-q', 'meta', sys.argv[1], '-o', sys.argv[2]]); "
            "print(sorted(m for m in ('torch', 'fastai', 'timm') if m in sys.modules))")
    from kit.synth import make_competition
    make_competition(tmp_path / 'comp', n_patients=1, slices=2, size=32)
    r = subprocess.run([sys.executable, '-c', code, str(tmp_path / 'comp'), str(tmp_path / 'm.parquet')], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == '[]', (r.stdout, r.stderr)

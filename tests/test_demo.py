"`kit demo` end to end on a small size, its options from a --config file; config typos are usage errors."
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from test_submission import rsna_log_loss

KIT = str(Path(sys.executable).with_name('kit'))


@pytest.mark.slow
def test_demo_submission_validates_and_beats_the_prior(tmp_path):
    (tmp_path / 'demo.yaml').write_text('patients: 40\nslices: 6\ndicom-size: 128\nsize: 64\nepochs: 12\nworkers: 2\n')
    r = subprocess.run([KIT, 'demo', '--out', tmp_path / 'demo', '--config', tmp_path / 'demo.yaml'], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    demo, comp = tmp_path / 'demo', tmp_path / 'demo' / 'competition'
    assert subprocess.run([KIT, 'validate', demo / 'submission.csv', '--sample', comp / 'sample_submission.csv']).returncode == 0
    sub, solution, train = pd.read_csv(demo / 'submission.csv'), pd.read_csv(comp / 'solution.csv'), pd.read_csv(comp / 'train.csv')
    prior = train.groupby(train.ID.str.rsplit('_', n=1).str[1]).Label.mean().to_dict()
    ours, baseline = rsna_log_loss(sub, solution), rsna_log_loss(sub, solution, prior)
    assert ours < baseline, (ours, baseline)
    report = (demo / 'report.md').read_text()
    assert f'**{ours:.4f}**' in report and f'{baseline:.4f}' in report and '| train |' in report, report  # the report's score is right
    assert (demo / 'batch.png').exists() and (demo / 'saliency.png').exists() and (demo / 'run' / 'model.pkl').exists()
    assert '![saliency](saliency.png)' in report
    assert pd.read_parquet(demo / 'meta.parquet').PatientID.nunique() == 30  # 40 patients, a quarter held out
    assert 'epochs: 12' in (demo / 'run' / 'config.yaml').read_text()  # the config file's value reached training


def test_config_typos_and_missing_files_are_usage_errors(tmp_path):
    (tmp_path / 'bad.yaml').write_text('epoch: 3\n')
    r = subprocess.run([KIT, 'demo', '--config', tmp_path / 'bad.yaml'], capture_output=True, text=True)
    assert r.returncode == 2 and "'epoch' is not an option of kit demo" in r.stderr, r.stderr
    r = subprocess.run([KIT, 'demo', '--config', tmp_path / 'none.yaml'], capture_output=True, text=True)
    assert r.returncode == 2 and 'none.yaml' in r.stderr, r.stderr


def test_config_fills_required_options_and_the_command_line_wins(tmp_path):
    "`kit validate` takes --sample from the config; a flag on the command line overrides the file."
    pd.DataFrame({'id': ['a', 'b'], 'p': [0.5, 0.5]}).to_csv(tmp_path / 'sample.csv', index=False)
    pd.DataFrame({'id': ['a', 'b'], 'p': [2.0, 0.1]}).to_csv(tmp_path / 'sub.csv', index=False)
    (tmp_path / 'v.yaml').write_text(f"sample: {tmp_path / 'sample.csv'}\nany-range: true\n")
    assert subprocess.run([KIT, 'validate', tmp_path / 'sub.csv', '--config', tmp_path / 'v.yaml']).returncode == 0
    (tmp_path / 'v.yaml').write_text(f"sample: {tmp_path / 'nowhere.csv'}\n")
    r = subprocess.run([KIT, 'validate', tmp_path / 'sub.csv', '--config', tmp_path / 'v.yaml', '--sample', tmp_path / 'sample.csv'],
                       capture_output=True, text=True)
    assert r.returncode == 1 and 'outside [0, 1]' in r.stderr, r.stderr

"`kit audit` and `kit eda` on a generated competition with a planted leak, and the report in a real browser."
import shutil
import subprocess

import pandas as pd
import pytest

from kit.synth import make_competition
from test_submission import KIT, kit


@pytest.fixture(scope='module')
def leaky(tmp_path_factory):
    "A competition where one institution scanned most positives; one train patient's files also sit in test."
    d = tmp_path_factory.mktemp('leaky')
    comp = make_competition(d / 'comp', n_patients=40, slices=4, size=32, seed=1, workers=2)
    patient = sorted(comp['train_images'].glob('*.dcm'))[:1]
    for f in patient: shutil.copy(f, comp['test_images'] / f.name)
    for split in ('train', 'test'): kit('-q', 'meta', comp[f'{split}_images'], '-o', d / f'{split}.parquet', '--pixel-stats', '--workers', 2)
    return d, comp


def test_audit_puts_the_planted_leak_first(leaky):
    d, comp = leaky
    r = kit('audit', d / 'train.parquet', '--labels', comp['train'], '--test-meta', d / 'test.parquet', '-o', d / 'audit.csv')
    table = pd.read_csv(d / 'audit.csv')
    assert table.column[0] == 'InstitutionName' and table.flag[0] == 'LEAK?' and table.best_auc[0] > 0.75
    assert (table.flag.iloc[1:] != 'LEAK?').all(), table.head()
    findings = [l for l in r.stdout.splitlines() if l.startswith('- ')]
    assert findings[0].startswith('- LIKELY LEAK: InstitutionName alone predicts')
    assert any('1 patients are in both train and test' in f for f in findings), findings
    assert any('1 test images have the same pixels as train images' in f for f in findings), findings


def test_audit_of_a_missing_file_is_one_line(tmp_path):
    r = subprocess.run([KIT, 'audit', tmp_path / 'nope.parquet', '--labels', tmp_path / 'x.csv'], capture_output=True, text=True)
    assert r.returncode == 1 and 'nope.parquet: no such file' in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


CHECK = '''<script>
window.addEventListener('load', () => {
  const imgs = [...document.images];
  document.body.dataset.images = imgs.length;
  document.body.dataset.broken = imgs.filter(i => !(i.complete && i.naturalWidth > 0)).length;
});
</script>'''


@pytest.mark.slow
@pytest.mark.skipif(shutil.which('chromium') is None, reason='Debian package chromium is not installed')
def test_eda_report_renders_in_a_browser(leaky):
    "Headless chromium loads index.html; every image element has decoded pixels."
    d, comp = leaky
    kit('-q', 'eda', d / 'train.parquet', '--labels', comp['train'], '--test-meta', d / 'test.parquet', '-o', d / 'eda',
        '--pairs', 'InstanceNumber:img_mean', '--workers', 2)
    page = (d / 'eda' / 'index.html').read_text()
    assert 'LIKELY LEAK: InstitutionName' in page
    (d / 'eda' / 'check.html').write_text(page.replace('</body>', CHECK + '</body>'))
    r = subprocess.run(['chromium', '--headless', '--no-sandbox', '--disable-gpu', '--virtual-time-budget=10000', '--dump-dom',
                        (d / 'eda' / 'check.html').as_uri()], capture_output=True, text=True, timeout=120)
    body = r.stdout[r.stdout.index('<body'):].split('>', 1)[0]
    n_png = len(list((d / 'eda').glob('*.png')))
    assert f'data-images="{n_png}"' in body and 'data-broken="0"' in body, (body, r.stderr[-2000:])
    assert n_png == 7

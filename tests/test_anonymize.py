"`kit anonymize` on pydicom's test files: the basic profile applied, pixels and grouping kept, the source untouched."
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pydicom
import pytest
from pydicom.data import get_testdata_files

from kit.anonymize import profile_tags, pseudonym

KIT = str(Path(sys.executable).with_name('kit'))


def snapshot(folder) -> dict:
    "Path -> (content hash, mtime) of every file under `folder`."
    return {p: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns) for p in sorted(Path(folder).rglob('*')) if p.is_file()}


@pytest.fixture(scope='module')
def anonymized(tmp_path_factory):
    "pydicom's bundled test files copied to SRC, anonymized by `kit anonymize` into OUT."
    d = tmp_path_factory.mktemp('anon')
    for f in get_testdata_files('*.dcm'):
        dest = d / 'src' / Path(f).relative_to(Path(f).parents[1])
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(f, dest)
    before = snapshot(d / 'src')
    r = subprocess.run([KIT, '-q', 'anonymize', d / 'src', d / 'out', '--salt', 'test-salt', '--workers', '2'],
                       capture_output=True, text=True, timeout=600)
    report = pd.read_csv(d / 'out' / 'anonymize_report.csv')
    assert r.returncode == (1 if report.error.notna().any() else 0), r.stderr[-2000:]  # pydicom ships broken files on purpose
    return d, before, report


def test_source_is_never_written(anonymized):
    d, before, report = anonymized
    assert snapshot(d / 'src') == before and len(report) == len(before)


def test_broken_files_are_errors_not_copies(anonymized):
    "pydicom's truncated test files are error rows on one line, with no output; the rest are copied."
    d, _, report = anonymized
    cut = report[report.source.str.contains('truncated|too_short')]
    assert len(cut) >= 2 and cut.error.notna().all() and cut.output.isna().all(), cut
    assert not report.error.dropna().str.contains('\n').any() and report.error.notna().sum() <= 10, report.error.dropna()
    assert len(list((d / 'out').rglob('*.dcm'))) == report.output.notna().sum()


def test_no_field_of_the_basic_profile_survives(anonymized):
    "Every tag of PS3.15 Table E.1-1 that had a value is removed, emptied or replaced; no private tag is left."
    d, _, report = anonymized
    tags = [tuple(t) for ts in profile_tags().values() for t in ts if len(t) == 2]
    done = report[report.error.isna()]
    assert len(done) > 50, report.error.value_counts()
    for src, out in done[['source', 'output']].itertuples(index=False):
        old, new = pydicom.dcmread(src, force=True), pydicom.dcmread(out)
        assert not any(e.tag.is_private for e in new), out
        for tag in tags:
            if tag[0] == 0x0002 or tag not in old or old[tag].VR == 'SQ' or old[tag].value in (None, '', b''): continue
            assert tag not in new or new[tag].value in (None, '', b'') or new[tag].value != old[tag].value, (src, pydicom.tag.Tag(tag))
        if 'PixelData' in old: assert new.PixelData == old.PixelData, src
        assert new.PatientIdentityRemoved == 'YES'


def test_pseudonyms_keep_patients_and_studies_together(anonymized):
    "Files of one patient (or study) in the source share one pseudonym (or new UID) in the output, and no other does."
    d, _, report = anonymized
    rows = []
    for src, out in report[report.error.isna()][['source', 'output']].itertuples(index=False):
        old, new = pydicom.dcmread(src, force=True, stop_before_pixels=True), pydicom.dcmread(out, stop_before_pixels=True)
        rows.append(dict(pid=str(old.get('PatientID', '')), new_pid=new.get('PatientID'), study=old.get('StudyInstanceUID'),
                         new_study=new.get('StudyInstanceUID'), folder=Path(out).parent.name))
    df = pd.DataFrame(rows)
    with_id = df[df.pid != '']
    assert (with_id.groupby('pid').new_pid.nunique() == 1).all() and (with_id.groupby('new_pid').pid.nunique() == 1).all()
    assert (with_id.new_pid == with_id.pid.map(lambda p: pseudonym(p, 'test-salt'))).all() and (df.folder == df.new_pid.fillna('ANON_NONE')).all()
    studies = df.dropna(subset=['study'])
    assert (studies.groupby('study').new_study.nunique() == 1).all() and (studies.groupby('new_study').study.nunique() == 1).all()
    assert not set(studies.study) & set(studies.new_study)


def test_output_inside_source_is_refused(tmp_path):
    shutil.copy(get_testdata_files('CT_small.dcm')[0], tmp_path / 'a.dcm')
    r = subprocess.run([KIT, 'anonymize', tmp_path, tmp_path / 'anon', '--salt', 's'], capture_output=True, text=True)
    assert r.returncode == 2 and 'never writes into' in r.stderr and not (tmp_path / 'anon').exists(), r.stderr  # a usage error

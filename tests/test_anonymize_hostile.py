"`kit anonymize` against hostile files: canaries in every place the basic profile covers, paths built from header text, files cut short, a full disk."
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pandas as pd
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.filereader import read_file_meta_info
from pydicom.uid import ImplicitVRLittleEndian

from kit.anonymize import anonymize, pseudonym, pseudo_uid
from kit.dicom import read_dicom

KIT = str(Path(sys.executable).with_name('kit'))
SALT = 'hostile-salt'
# Canaries in header text: (keyword, value) at the top level, each in a place PS3.15 Table E.1-1 removes, empties or replaces.
TOP = {'PatientName': 'CANARY_PN_TOP', 'PatientID': 'CANARY_PID_TOP', 'PatientBirthDate': '19120623', 'InstitutionName': 'CANARY_INST',
       'ReferringPhysicianName': 'CANARY_REFPHYS', 'OperatorsName': 'CANARY_OPERATOR', 'StudyDescription': 'CANARY_STUDYDESC',
       'SeriesDescription': 'CANARY_SERIESDESC', 'AccessionNumber': 'CANARY_ACCESSION', 'StationName': 'CANARY_STATION',
       'InstitutionAddress': 'CANARY_INSTADDR', 'PatientAddress': 'CANARY_PATADDR', 'OtherPatientIDs': 'CANARY_OTHERPID',
       'ImageComments': 'CANARY_IMGCOMMENT', 'PerformingPhysicianName': 'CANARY_PERFPHYS', 'DeviceSerialNumber': 'CANARY_SERIAL',
       'StudyID': 'CANARY_STUDYID', 'StudyInstanceUID': '1.2.826.0.1.3680043.9.7777.12121212',
       'SOPInstanceUID': '1.2.826.0.1.3680043.9.7777.34343434'}
# Canaries in file meta elements: anything but the UIDs of class, instance and syntax must go.
META = {'SourceApplicationEntityTitle': 'CANARY_AE_META', 'SendingApplicationEntityTitle': 'CANARY_AE_SEND',
        'ReceivingApplicationEntityTitle': 'CANARY_AE_RECV', 'ImplementationVersionName': 'CANARY_IMPLVER'}
OTHER = ['CANARY_PREAMBLE', 'CANARY_META_PRIVATE', 'CANARY_PRIVATE_TOP', 'CANARY_PRIVATE_SQ', 'CANARY_PN_SEQ', 'CANARY_PRIVATE_SEQ',
         'CANARY_INST_DEEP', 'CANARY_OPERATOR_DEEP', 'CANARY_PRIVATE_DEEP', 'CANARY_PID_DEEPEST', 'CANARY_REFPHYS_SEQ',
         'CANARY_CONTENT_SEQ', 'CANARY_REQ_SEQ', '7777.56565656']
CANARIES = [v.encode() for v in [*TOP.values(), *META.values(), *OTHER]]
ALLOWED_META = {'FileMetaInformationGroupLength', 'FileMetaInformationVersion', 'MediaStorageSOPClassUID', 'MediaStorageSOPInstanceUID',
                'TransferSyntaxUID', 'ImplementationClassUID', 'ImplementationVersionName'}


def item(**kw) -> Dataset:
    "A sequence item holding the keywords `kw`."
    d = Dataset()
    for k, v in kw.items(): setattr(d, k, v)
    return d


def private(ds, creator, text, number=0x01):
    "Add a private LO element holding `text` to `ds`, in a block of group 0x0009."
    ds.private_block(0x0009, creator, create=True).add_new(number, 'LO', text)


def save(ds, path) -> Path:
    "Write `ds` as it is (preamble and file meta included) to `path`."
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # invalid values on purpose
        ds.save_as(path, enforce_file_format=False)
    return path


def canary_dataset(implicit=False) -> Dataset:
    "CT_small with a canary in every place above, in private elements and in sequence items up to three levels deep."
    ds = pydicom.dcmread(get_testdata_file('CT_small.dcm'))
    for k, v in TOP.items(): setattr(ds, k, v)
    for k, v in META.items(): setattr(ds.file_meta, k, v)
    ds.file_meta.MediaStorageSOPInstanceUID = TOP['SOPInstanceUID']
    ds.file_meta.PrivateInformationCreatorUID = '1.2.826.0.1.3680043.9.7777'
    ds.file_meta.PrivateInformation = b'CANARY_META_PRIVATE\x00'
    ds.preamble = b'CANARY_PREAMBLE'.ljust(128, b'.')
    private(ds, 'CANARY_CREATOR', 'CANARY_PRIVATE_TOP')
    ds.private_block(0x0009, 'CANARY_CREATOR', create=True).add_new(0x02, 'SQ', [item(PatientName='CANARY_PRIVATE_SQ')])
    deepest = item(PatientID='CANARY_PID_DEEPEST')
    deep = item(InstitutionName='CANARY_INST_DEEP', OperatorsName='CANARY_OPERATOR_DEEP', PurposeOfReferenceCodeSequence=[deepest])
    private(deep, 'CANARY_DEEP', 'CANARY_PRIVATE_DEEP')
    ref = item(ReferencedSOPClassUID=ds.SOPClassUID, ReferencedSOPInstanceUID='1.2.826.0.1.3680043.9.7777.56565656',
               PatientName='CANARY_PN_SEQ', AnatomicRegionSequence=[deep])
    private(ref, 'CANARY_SEQ', 'CANARY_PRIVATE_SEQ')
    ds.ReferencedImageSequence = [ref]  # U in the profile: dicom-anonymizer leaves its items alone
    ds.ProcedureCodeSequence = [item(ReferringPhysicianName='CANARY_REFPHYS_SEQ')]  # not in the profile: kept, items cleaned
    ds.ContentSequence = [item(TextValue='CANARY_CONTENT_SEQ')]  # D
    ds.RequestAttributesSequence = [item(RequestedProcedureID='CANARY_REQ_SEQ')]  # X
    if implicit: ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    return ds


def files_outside(root, *keep) -> set:
    "Every path under `root` but those under the folders `keep`."
    return {p for p in Path(root).rglob('*') if not any(p == k or k in p.parents for k in keep)}


def kit(*args):
    "Run the `kit` command line; the completed process."
    return subprocess.run([KIT, '-q', *map(str, args)], capture_output=True, text=True, timeout=300)


def test_no_canary_survives_in_the_output_bytes(tmp_path):
    "No canary is left in any byte of any file under OUT; the output's file meta holds only what PS3.10 needs and its preamble is zero."
    src = tmp_path / 'src'
    for i, implicit in enumerate([False, True]): save(canary_dataset(implicit), src / f'canary{i}.dcm')
    for f in src.iterdir():
        raw = f.read_bytes()
        assert all(c in raw for c in CANARIES), [c for c in CANARIES if c not in raw]  # planted, so the test can fail
    r = kit('anonymize', src, tmp_path / 'out', '--salt', SALT, '--workers', '0')
    assert r.returncode == 0, r.stderr
    report = pd.read_csv(tmp_path / 'out' / 'anonymize_report.csv')
    assert report.error.isna().all() and len(report) == 2, report.error
    outputs = [p for p in (tmp_path / 'out').rglob('*') if p.is_file()]
    assert len(outputs) == 3  # two images and the report
    for p in outputs:
        raw = p.read_bytes()
        assert not [c for c in CANARIES if c in raw], (p.name, [c for c in CANARIES if c in raw])
    for p in report.output:
        raw = Path(p).read_bytes()
        assert raw[:128] == bytes(128) and raw[128:132] == b'DICM'
        meta = read_file_meta_info(p)
        assert {e.keyword for e in meta} <= ALLOWED_META, [e.keyword for e in meta]
        ds = pydicom.dcmread(p)
        assert meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID == pseudo_uid(TOP['SOPInstanceUID'], SALT)
        ref = ds.ReferencedImageSequence[0]
        assert ref.PatientName == pseudonym(TOP['PatientID'], SALT)
        assert ref.ReferencedSOPInstanceUID == pseudo_uid('1.2.826.0.1.3680043.9.7777.56565656', SALT)  # references still match
        assert not any(e.tag.is_private for e in ds.iterall())
        assert (ds.pixel_array == pydicom.dcmread(get_testdata_file('CT_small.dcm')).pixel_array).all()


def hostile_names(ds, sop_uid, vr='LO', patient_id=None) -> Dataset:
    "`ds` whose SOP Instance UID (in the dataset, stored under `vr`, and in the file meta) and Patient ID are path text."
    ds[0x00080018] = DataElement(0x00080018, vr, sop_uid)
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    if patient_id is not None: ds.PatientID = patient_id
    return ds


@pytest.mark.filterwarnings('ignore:.*(Invalid value|maximum length).*:UserWarning')
def test_header_text_never_makes_a_path(tmp_path):
    "SOP Instance UIDs and Patient IDs that are relative or absolute paths write nothing outside OUT, also with `--keep PatientID`."
    base = tmp_path / 'a' / 'b' / 'c'
    src, out = base / 'src', base / 'out'
    escapes = [('../../../escaped', 'LO', None), (str(tmp_path / 'abs_escaped'), 'UT', None),
               ('../../../../uid_escaped', 'UI', '../../../pid_escaped'), ('x', 'LO', str(tmp_path / 'abs_pid_escaped'))]
    for i, (uid, vr, pid) in enumerate(escapes):
        save(hostile_names(pydicom.dcmread(get_testdata_file('CT_small.dcm')), uid, vr, pid), src / f'{i}.dcm')
    before = files_outside(tmp_path, src)
    report = anonymize(src, out, salt=SALT, keep=['PatientID'], workers=0, progress=False)
    assert files_outside(tmp_path, src, out) == before, files_outside(tmp_path, src, out) - before
    assert report.error.isna().all(), report.error
    written = [p for p in out.rglob('*') if p.is_file() and p.name != 'anonymize_report.csv']
    assert len(written) == len(escapes)
    for p in written:
        assert p.resolve().parent.parent == out.resolve(), p
        assert re.fullmatch(r'ANON_[0-9A-F]{16}', p.parent.name) and re.fullmatch(r'2\.25\.\d+(_\d+)?\.dcm', p.name), p
        ds = pydicom.dcmread(p)
        assert ds['SOPInstanceUID'].VR == 'UI' and ds.SOPInstanceUID.startswith('2.25.')


def cut_files(folder) -> list[Path]:
    "Files whose pixel data is cut short in four ways: the file ends early, the element is short, frames are missing, a fragment is cut."
    raw = Path(get_testdata_file('CT_small.dcm')).read_bytes()
    (folder / 'cut_file.dcm').write_bytes(raw[:len(raw) - 5000])
    ds = pydicom.dcmread(get_testdata_file('CT_small.dcm'))
    ds.PixelData = ds.PixelData[:len(ds.PixelData) // 2]  # a consistent element, half the image
    save(ds, folder / 'short_element.dcm')
    rle = pydicom.dcmread(get_testdata_file('emri_small_RLE.dcm'))
    frames = list(generate_frames(rle.PixelData, number_of_frames=int(rle.NumberOfFrames)))
    rle.PixelData = encapsulate(frames[:5])  # 5 of 10 frames, every item whole
    save(rle, folder / 'missing_frames.dcm')
    rle.PixelData = encapsulate(frames)[:-100]
    save(rle, folder / 'cut_fragment.dcm')
    return sorted(folder.iterdir())


def test_pixel_data_cut_short_is_an_error(tmp_path):
    "A file whose pixel data is cut short is an error row on one line naming the cause, with no output; the command exits with 1."
    src = tmp_path / 'src'; src.mkdir()
    cut = cut_files(src)
    shutil.copy(get_testdata_file('CT_small.dcm'), src / 'whole.dcm')
    r = kit('anonymize', src, tmp_path / 'out', '--salt', SALT, '--workers', '0')
    report = pd.read_csv(tmp_path / 'out' / 'anonymize_report.csv').set_index('source')
    assert r.returncode == 1, r.stderr
    for f in cut:
        row = report.loc[str(f)]
        assert pd.isna(row.output) and row.error.startswith('TruncatedError: ') and '\n' not in row.error, row
    assert pd.isna(report.loc[str(src / 'whole.dcm')].error)
    assert [p.name for p in (tmp_path / 'out').rglob('*.dcm')] == [Path(report.loc[str(src / 'whole.dcm')].output).name]


def test_salt_comes_from_the_environment(tmp_path, monkeypatch):
    "Without a salt, `$KIT_ANONYMIZE_SALT` keys the pseudonyms; an empty salt is refused."
    shutil.copy(get_testdata_file('CT_small.dcm'), tmp_path / 'a.dcm')
    monkeypatch.setenv('KIT_ANONYMIZE_SALT', 'from-env')
    report = anonymize(tmp_path, tmp_path.parent / f'{tmp_path.name}_out', workers=0, progress=False)
    old = pydicom.dcmread(tmp_path / 'a.dcm')
    assert pydicom.dcmread(report.output[0]).PatientID == pseudonym(old.PatientID, 'from-env')
    with pytest.raises(ValueError, match='empty'): anonymize(tmp_path, tmp_path.parent / f'{tmp_path.name}_out2', salt='')


@pytest.fixture
def small_disk(tmp_path):
    "A 300 KB tmpfs mounted at `tmp_path/out` (root only), unmounted afterwards."
    if os.geteuid() != 0: pytest.skip('mounting a tmpfs needs root')
    out = tmp_path / 'out'; out.mkdir()
    r = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=300k', 'tmpfs', str(out)], capture_output=True, text=True)
    if r.returncode: pytest.skip(f'cannot mount a tmpfs: {r.stderr.strip()}')
    try: yield out
    finally: subprocess.run(['umount', str(out)], check=True)


def test_full_disk_leaves_a_whole_report_and_no_temporary_file(tmp_path, small_disk):
    "Outputs that fill the disk fail one by one; the report is whole, lists them, and no `*.tmp` (nor a half file) is left."
    src = tmp_path / 'src'; src.mkdir()
    for i in range(12):  # 12 x 39 KB > 300 KB
        ds = pydicom.dcmread(get_testdata_file('CT_small.dcm'))
        ds.SOPInstanceUID = f'1.2.826.0.1.3680043.9.7777.{i + 1}'
        save(ds, src / f'{i:02}.dcm')
    r = kit('anonymize', src, small_disk, '--salt', SALT, '--workers', '0')
    assert r.returncode == 1, r.stderr
    report = pd.read_csv(small_disk / 'anonymize_report.csv')
    assert len(report) == 12 and report.error.notna().any() and report.error.isna().any(), report.error
    assert report.error.dropna().str.contains('No space left on device').all(), report.error.dropna()
    assert not [p for p in small_disk.rglob('*') if p.suffix in ('.tmp', '.reserved')], list(small_disk.rglob('*'))
    assert sorted(small_disk.rglob('*.dcm')) == sorted(Path(p) for p in report.output.dropna())
    for p in report.output.dropna(): assert 'PixelData' in read_dicom(p)  # whole files only

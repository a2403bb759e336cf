"Every real file of pydicom's test files and of pydicom-data decodes, or raises kit's typed error."
import collections
from pathlib import Path

import numpy as np
import pytest

from kit.dicom import DicomError, read_pixels
from kit.meta import dicom_meta
from conftest import corpus_files


@pytest.fixture(scope='module')
def outcomes() -> dict:
    "The outcome of `read_pixels` on each corpus file: 'decoded', the typed error's class name, or 'CRASH: ...'."
    res = {}
    for fn in corpus_files():
        try:
            px = read_pixels(fn)
            res[fn] = 'decoded' if np.isfinite(px).all() else 'CRASH: non-finite pixels'
        except DicomError as e: res[fn] = type(e).__name__
        except Exception as e: res[fn] = f'CRASH: {type(e).__name__}: {e}'
    return res


def test_corpus_decodes_or_raises_typed_errors(outcomes):
    counts = collections.Counter(v if not v.startswith('CRASH') else 'CRASH' for v in outcomes.values())
    print(f'\ncorpus of {len(outcomes)} files:', dict(counts))
    crashes = {Path(k).name: v for k, v in outcomes.items() if v.startswith('CRASH')}
    assert not crashes, crashes
    assert counts['decoded'] >= 150 and len(pytest.importorskip('data_store').__path__) and len(outcomes) > 200


def test_every_transfer_syntax_family_decodes(outcomes):
    "The common transfer syntaxes all have a working decoder (kit's requirements install them)."
    from kit.dicom import read_dicom
    decoded = {read_dicom(f).file_meta.TransferSyntaxUID.name for f, v in outcomes.items() if v == 'decoded'}
    for family in ('JPEG 2000', 'JPEG Lossless', 'JPEG-LS', 'RLE Lossless', 'Deflated', 'Big Endian', 'JPEG Baseline'):
        assert any(family in name for name in decoded), (family, decoded)


def test_header_table_never_aborts_on_the_corpus():
    "The header DataFrame of the whole corpus: one row per file, the bad ones with an error, parquet-safe."
    files = corpus_files()
    df = dicom_meta(files, workers=2, progress=False)
    assert len(df) == len(files)
    assert df.error.notna().sum() >= 5 and df.error.isna().sum() >= 200
    df.to_parquet('/dev/null')

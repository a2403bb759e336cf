"Mammograms, generated: decoded no bigger than the model needs, through `kit meta`, `preprocess`, `train` and `predict`."
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from kit.cache import read_manifest
from kit.dicom import decode_reduction, read_dicom
from kit.submit import validate_submission
from kit.synth import make_mammography, mg_dataset
from pydicom.uid import JPEGLosslessSV1
from kit.window import dicom_channels
from kitcli import kit, ok

SHAPE = (2048, 1664)  # half a real mammogram's side: big enough to be halved twice at 256 px, small enough for CI


@pytest.fixture(scope='module')
def mammography(tmp_path_factory):
    "Six patients, four views each, in JPEG 2000 lossless, JPEG lossless and explicit little endian."
    return make_mammography(tmp_path_factory.mktemp('mg'), n_patients=6, shape=SHAPE, seed=1, workers=2)


def test_synth_cli_writes_a_mammography_competition(tmp_path):
    ok(kit('synth', tmp_path, '--modality', 'MG', '--patients', 4, '--shape', '512,416'))
    files, test = sorted((tmp_path / 'train_images').rglob('*.dcm')), sorted((tmp_path / 'test_images').rglob('*.dcm'))
    ds = read_dicom(files[0])
    assert (len(files), len(test)) == (12, 4) and ds.Modality == 'MG' and (ds.Rows, ds.Columns) == (512, 416)
    assert list(pd.read_csv(tmp_path / 'train.csv').columns) == ['image_id', 'cancer']


def test_meta_pixel_stats_of_big_images(mammography, tmp_path):
    ok(kit('-q', 'meta', mammography['train_images'], '-o', tmp_path / 'meta.parquet', '--pixel-stats', '--workers', 2))
    meta = pd.read_parquet(tmp_path / 'meta.parquet')
    assert len(meta) == 16 and meta.error.isna().all()
    assert set(meta.PhotometricInterpretation) == {'MONOCHROME1', 'MONOCHROME2'}
    assert (meta.img_max < 4096).all() and (meta.img_mean > 500).all()  # MONOCHROME1 inverted: the empty background is dark


@pytest.mark.parametrize('crop', [False, True])
def test_preprocess_decodes_small_and_agrees_with_a_full_decode(mammography, tmp_path, crop):
    args = ['--crop'] if crop else []
    ok(kit('-q', 'preprocess', mammography['train_images'], tmp_path / 'cache', '--size', 256, '--windows', 'header', '--workers', 2, *args))
    manifest = read_manifest(tmp_path / 'cache')
    assert (manifest.status == 'ok').all() and len(manifest) == 16
    diffs = []
    for row in manifest.itertuples():
        ds = read_dicom(Path(mammography['train_images']) / row.source)
        assert decode_reduction(ds, 256) == 2
        png = np.asarray(Image.open(row.output), dtype=np.float32)
        full = np.round(dicom_channels(ds, 'header', size=256, crop_body=crop, reduce=0)[0] * 255)
        assert max(png.shape) == 256
        if crop:  # the body box, found on the reduced image, may end a pixel off the full decode's
            assert abs(png.shape[1] - full.shape[1]) <= 1 and png.shape[1] < 0.9 * 256 * SHAPE[1] / SHAPE[0]  # the empty side is cut off
            assert abs(png.mean() - full.mean()) < 2
            continue
        assert png.shape == full.shape
        diffs.append(np.abs(png - full))
    if crop: return
    assert np.mean([d.mean() for d in diffs]) < 1  # grey levels of 255, against decoding every pixel
    assert np.median([np.quantile(d, 0.99) for d in diffs]) <= 8


@pytest.mark.parametrize('stored', [16, 12])
def test_preprocess_of_bright_16_bit_jpeg_lossless_agrees_with_a_full_decode(tmp_path, stored):
    "Values near 65,535 (16 of them sum past 2**20) in a 16-bit JPEG lossless stream, under a header that says 16 or 12 bits are stored."
    img = np.full((1024, 832), 65535, np.uint16); img[::2] -= 500; img[:, ::3] -= 3; img[:300, :200] = 20000
    ds = mg_dataset(img, ts=JPEGLosslessSV1, bits=16)
    ds.BitsStored, ds.HighBit, ds.WindowCenter, ds.WindowWidth = stored, stored - 1, 2**(stored - 1), 2**stored  # 12: the bits above are dropped, as pydicom does
    (tmp_path / 'src').mkdir(); ds.save_as(tmp_path / 'src' / 'a.dcm', enforce_file_format=True)
    ok(kit('-q', 'preprocess', tmp_path / 'src', tmp_path / 'cache', '--size', 128, '--windows', 'header'))
    assert decode_reduction(ds, 128) == 2
    png = np.asarray(Image.open(tmp_path / 'cache' / 'a.png'), dtype=np.float32)
    full = np.round(dicom_channels(read_dicom(tmp_path / 'src' / 'a.dcm'), 'header', size=128, reduce=0)[0] * 255)
    assert png.shape == full.shape == (128, 104) and np.abs(png - full).max() <= 1
    assert np.abs(png - full).mean() < 0.1 and png[:30, :20].mean() < png[-30:, -20:].mean() - 10  # the block stays darker: nothing wrapped


def test_train_and_predict_from_big_dicoms(mammography, tmp_path):
    run, sub = tmp_path / 'run', tmp_path / 'submission.csv'
    ok(kit('-q', 'train', mammography['train_images'], '--labels', mammography['train'], '--out', run, '--size', 128,
           '--windows', 'header', '--epochs', 1, '--bs', 8, '--n-folds', 2, '--workers', 0))
    ok(kit('-q', 'predict', '--model', run, '--data', mammography['test_images'], '--sample', mammography['sample'],
           '-o', sub, '--workers', 0))
    assert validate_submission(sub, mammography['sample']) == []
    predictions = pd.read_csv(sub)
    assert predictions.image_id.tolist() == pd.read_csv(mammography['sample']).image_id.tolist()
    assert predictions.cancer.between(0, 1).all()

"The hostile corpus: one DICOM (or not-quite-file) per way real data and adversaries break a reader."
import os
import zlib
from io import BytesIO
from pathlib import Path

import numpy as np
from pydicom.filewriter import write_file_meta_info
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import DeflatedExplicitVRLittleEndian, JPEG2000Lossless, RLELossless

from kit.dicom import quiet_uid_warnings
from kit.synth import ct_dataset, head_phantom


def save(ds, path) -> Path:
    "Write `ds` to `path` as a DICOM file."
    with quiet_uid_warnings(): ds.save_as(path, enforce_file_format=True)
    return Path(path)


def ct(size=32, **kw):
    "A small CT dataset of the head phantom."
    return ct_dataset(head_phantom(size), **kw)


def _double_pixels(d):
    ds = ct(); ds.PixelData = ds.PixelData * 2; return save(ds, d / 'double_pixels.dcm')

def _bits1(d):
    ds = ct(); ds.BitsAllocated, ds.BitsStored, ds.HighBit = 1, 1, 0; ds.PixelRepresentation = 0
    return save(ds, d / 'bits_allocated_1.dcm')

def _j2k_flipped(d):
    "JPEG 2000 whose codestream header (SIZ) has flipped bytes. Flips in the coded data itself decode silently:"
    # lossless JPEG 2000 carries no checksum, and openjpeg reports nothing, so no reader can tell those.
    ds = ct(64, ts=JPEG2000Lossless)
    frame = bytearray(next(generate_frames(ds.PixelData, number_of_frames=1)))
    for i in range(8, 24): frame[i] ^= 0xFF
    ds.PixelData = encapsulate([bytes(frame)])
    return save(ds, d / 'j2k_flipped.dcm')

def _j2k_rows(d):
    ds = ct(32, ts=JPEG2000Lossless); ds.Rows = ds.Columns = 64; return save(ds, d / 'j2k_rows.dcm')

def _rescale(name, slope=None, intercept=None):
    def make(d):
        ds = ct()
        if slope is not None: ds['RescaleSlope'].value = slope
        if intercept is not None: ds['RescaleIntercept'].value = intercept
        return save(ds, d / f'{name}.dcm')
    return make

def _text_slope(d):
    ds = ct(); path = save(ds, d / 'text_slope.dcm')
    raw = path.read_bytes().replace(b'\x28\x00\x53\x10DS\x04\x001.0 ', b'\x28\x00\x53\x10DS\x04\x00abc ')
    path.write_bytes(raw); return path

def _rle_frames(d):
    ds = ct(ts=RLELossless); ds.NumberOfFrames = 3; return save(ds, d / 'rle_frames.dcm')

def _j2k_huge(d):
    ds = ct(ts=JPEG2000Lossless); ds.Rows = ds.Columns = 65535; return save(ds, d / 'j2k_65535.dcm')

def _rle_bomb(d, frames=2000, size=512):
    "Many RLE frames of a constant image: a few KB on disk, `frames` full images decoded."
    one = ct_dataset(np.zeros((size, size)), ts=RLELossless)
    item = next(generate_frames(one.PixelData, number_of_frames=1))
    one.PixelData = encapsulate([item] * frames)
    one.NumberOfFrames = frames
    return save(one, d / 'rle_bomb.dcm')

def _deflate_bomb(d, mbytes=400):
    "A deflated file that inflates to `mbytes` MB: a small CT, then Data Set Trailing Padding of zeros, compressed as a stream."
    ds = ct(8)
    with quiet_uid_warnings(): ds.save_as(d / 'plain.tmp', enforce_file_format=True)
    raw = (d / 'plain.tmp').read_bytes(); (d / 'plain.tmp').unlink()
    start = 144 + int.from_bytes(raw[140:144], 'little')  # after the file meta group
    meta = BytesIO()
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    write_file_meta_info(meta, ds.file_meta)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    n = mbytes * 2**20
    with open(d / 'deflate_bomb.dcm', 'wb') as f:
        f.write(b'\0' * 128 + b'DICM' + meta.getvalue())
        f.write(deflate.compress(raw[start:] + b'\xfc\xff\xfc\xffOB\0\0' + n.to_bytes(4, 'little')))
        zeros = b'\0' * 2**24
        for _ in range(n // len(zeros)): f.write(deflate.compress(zeros))
        f.write(deflate.flush())
    return d / 'deflate_bomb.dcm'

def _cut_header(d):
    raw = save(ct(), d / 'x.tmpfull').read_bytes(); (d / 'x.tmpfull').unlink()
    ds_end = raw.index(b'\xe0\x7f\x10\x00')  # PixelData tag
    (d / 'cut_mid_dataset.dcm').write_bytes(raw[:ds_end - 40]); return d / 'cut_mid_dataset.dcm'

def _fifo(d):
    os.mkfifo(d / 'fifo.dcm'); return d / 'fifo.dcm'

def _dev_zero(d):
    (d / 'zero.dcm').symlink_to('/dev/zero'); return d / 'zero.dcm'

def _loop(d):
    if (d / 'loop_a.dcm').is_symlink(): return d / 'loop_a.dcm'
    (d / 'loop_a.dcm').symlink_to(d / 'loop_b.dcm'); (d / 'loop_b.dcm').symlink_to(d / 'loop_a.dcm'); return d / 'loop_a.dcm'

def _non_utf8(d):
    p = Path(os.fsdecode(bytes(d) + b'/caf\xe9.dcm')); save(ct(), p); return p


CASES = dict(double_pixels=_double_pixels, bits1=_bits1, j2k_flipped=_j2k_flipped, j2k_rows=_j2k_rows,
             slope_nan=_rescale('slope_nan', slope='NaN'), slope_inf=_rescale('slope_inf', slope='inf'),
             intercept_huge=_rescale('intercept_huge', intercept='1e99'), text_slope=_text_slope,
             rle_frames=_rle_frames, j2k_huge=_j2k_huge, rle_bomb=_rle_bomb, deflate_bomb=_deflate_bomb,
             cut_header=_cut_header, fifo=_fifo, dev_zero=_dev_zero, loop=_loop, non_utf8=_non_utf8)


def make(name, folder) -> Path:
    "Write the hostile case `name` into `folder`; its path."
    folder = Path(folder); folder.mkdir(parents=True, exist_ok=True)
    return CASES[name](folder)

"""WADO-RS frames and bulk data, as OHIF loads pixels (#19 item 1)."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import generate_frames
from pydicom.pixels import pack_bits
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from service.api.routers.wado_frames import frames_of, metadata_json
from service.auth.tokens import Role
from service.dicomweb.multipart import related_boundary
from service.storage.ingest import ingest
from tests.service.api.conftest import Api

_JPEG2000_CT = "ct-totalseg-example/tests/reference_files/example_ct_dicom"


def _binary_seg(frames: np.ndarray) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.NumberOfFrames, ds.Rows, ds.Columns = frames.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.SamplesPerPixel = 1, 1, 0, 1
    ds.PixelRepresentation, ds.PhotometricInterpretation = 0, "MONOCHROME2"
    ds.PixelData = pack_bits(frames.ravel())
    return ds


def test_bit_packed_frames_restart_on_a_byte() -> None:
    # 5 x 7 = 35 bits per frame: frames 2 and 3 start inside a byte of the stored data.
    frames = (np.random.default_rng(7).random((3, 5, 7)) > 0.5).astype(np.uint8)
    parts, syntax = frames_of(_binary_seg(frames), [1, 2, 3], "")
    assert syntax == ExplicitVRLittleEndian
    for part, expected in zip(parts, frames, strict=True):
        assert len(part) == 5  # ceil(35 / 8)
        bits = np.unpackbits(np.frombuffer(part, np.uint8), bitorder="little")[:35]
        np.testing.assert_array_equal(bits.reshape(5, 7), expected)


def test_compressed_frames_pass_through_or_decode(data_dir) -> None:  # type: ignore[no-untyped-def]
    path = sorted(data_dir(_JPEG2000_CT).iterdir())[0]
    ds = pydicom.dcmread(path)
    (stored,) = list(generate_frames(ds.PixelData, number_of_frames=1))
    parts, syntax = frames_of(ds, [1], "multipart/related; type=application/octet-stream; "
                                        "transfer-syntax=*")  # fmt: skip
    assert syntax == ds.file_meta.TransferSyntaxUID and parts == [stored]
    native = "multipart/related; type=application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1"
    parts, syntax = frames_of(pydicom.dcmread(path), [1], native)
    assert syntax == ExplicitVRLittleEndian
    decoded = np.frombuffer(parts[0], dtype=ds.pixel_array.dtype).reshape(ds.Rows, ds.Columns)
    np.testing.assert_array_equal(decoded, ds.pixel_array)


def test_metadata_names_pixel_data_by_uri() -> None:
    ds = _binary_seg(np.zeros((2, 4, 4), np.uint8))
    del ds.PixelData  # as read with stop_before_pixels
    ds.Modality = "SEG"
    out = metadata_json(ds, "http://h/dicomweb/studies/1/series/2/instances/3")
    assert out["7FE00010"] == {
        "vr": "OB",
        "BulkDataURI": "http://h/dicomweb/studies/1/series/2/instances/3/bulkdata/7FE00010",
    }
    assert out["00020010"]["Value"] == [ExplicitVRLittleEndian]
    assert out["00080060"]["Value"] == ["SEG"]


@pytest.fixture
def stored(api: Api) -> tuple[str, str, str, np.ndarray]:
    pixels = np.arange(12, dtype=np.uint16).reshape(3, 4)
    ds = _binary_seg(np.zeros((1, 3, 4), np.uint8))
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelData = pixels.tobytes()
    del ds.NumberOfFrames
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.2", generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = generate_uid(), generate_uid(), "CT"
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    with api.state.factory() as session, session.begin():
        ingest(session, api.state.store, buffer.getvalue(), "test")
    return ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID, pixels


def test_frames_and_bulkdata_over_http(api: Api, stored: tuple[str, str, str, np.ndarray]) -> None:
    study, series, sop, pixels = stored
    base = f"/dicomweb/studies/{study}/series/{series}/instances/{sop}"
    reader = api.headers(Role.READER)
    response = api.client.get(f"{base}/frames/1", headers=reader)
    assert response.status_code == 200
    _, part_type = related_boundary(response.headers["content-type"])
    assert part_type.startswith("application/octet-stream")
    assert pixels.tobytes() in response.content
    assert f"transfer-syntax={ExplicitVRLittleEndian}".encode() in response.content
    assert api.client.get(f"{base}/frames/2", headers=reader).status_code == 404
    assert api.client.get(f"{base}/frames/1,x", headers=reader).status_code == 400
    other = f"/dicomweb/studies/1.2.3/series/{series}/instances/{sop}/frames/1"
    assert api.client.get(other, headers=reader).status_code == 404  # scoped by study
    bulk = api.client.get(f"{base}/bulkdata/7FE00010", headers=reader)
    assert bulk.status_code == 200 and pixels.tobytes() in bulk.content
    metadata = api.client.get(f"/dicomweb/studies/{study}/series/{series}/metadata",
                              headers=reader).json()  # fmt: skip
    assert metadata[0]["7FE00010"]["BulkDataURI"].endswith(f"{base}/bulkdata/7FE00010")
    assert api.client.get(f"{base}/frames/1").status_code == 401

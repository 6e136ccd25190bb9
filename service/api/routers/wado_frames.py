"""WADO-RS frames and bulk data: what a DICOMweb image viewer (OHIF) loads pixels through.

``.../instances/{sop}/frames/{list}`` returns the listed frames as ``multipart/related``: an
encapsulated (compressed) frame as stored when the ``Accept`` header allows its transfer syntax
(``transfer-syntax=*`` does), otherwise decoded to Explicit VR Little Endian; native frames as
stored, bit-packed SEG frames re-packed from a byte boundary. ``.../bulkdata/{tag}`` returns
one top-level binary attribute, which :func:`metadata_json` names as a ``BulkDataURI``.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pydicom
from fastapi import APIRouter, HTTPException, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.uid import UID, ExplicitVRLittleEndian
from sqlalchemy import select

from service.api.deps import Reader, StateDep, audit_access
from service.api.responses import AUTH, errors
from service.api.state import ServerState
from service.db.models import Instance
from service.dicomweb.multipart import write_related

router = APIRouter(prefix="/dicomweb", tags=["dicomweb"])

_INSTANCE = "/studies/{study}/series/{series}/instances/{instance}"
#: Binary top-level attributes at least this long are sent as BulkDataURI, not inline.
BULK_THRESHOLD = 1024
_BINARY_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "UN"}
_FRAME_LIST = re.compile(r"^\d+(,\d+)*$")


def _path(state: ServerState, study: str, series: str, instance: str) -> Any:
    query = select(Instance.sha256).where(
        Instance.study_instance_uid == study,
        Instance.series_instance_uid == series,
        Instance.sop_instance_uid == instance,
    )
    with state.factory() as session:
        digest = session.scalars(query).first()
    if digest is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no instance {instance} in that series")
    return state.store.path_for(digest)


def _accepts(accept: str, syntax: str) -> bool:
    """Whether ``Accept`` admits frames in ``syntax`` (absent or ``*`` admits any)."""
    wanted = re.findall(r"transfer-syntax=\"?([0-9.*]+)", accept)
    return not wanted or "*" in wanted or syntax in wanted


def _native_frames(ds: Dataset, numbers: list[int]) -> list[bytes]:
    rows, columns = int(ds.Rows), int(ds.Columns)
    samples = int(ds.get("SamplesPerPixel", 1))
    bits = int(ds.BitsAllocated)
    frame_bits = rows * columns * samples * bits
    data: bytes = ds.PixelData
    out = []
    for number in numbers:
        start = (number - 1) * frame_bits
        if bits % 8 == 0:
            out.append(data[start // 8 : (start + frame_bits) // 8])
            continue
        # Bit-packed (SEG BINARY): frames need not start on a byte; re-pack each from bit 0.
        unpacked = np.unpackbits(np.frombuffer(data, np.uint8), bitorder="little")
        out.append(np.packbits(unpacked[start : start + frame_bits], bitorder="little").tobytes())
    return out


def frames_of(ds: Dataset, numbers: list[int], accept: str) -> tuple[list[bytes], str]:
    """The frames (1-based) and the transfer syntax they are in.

    Raises
    ------
    HTTPException
        404 when a frame does not exist.
    """
    count = int(ds.get("NumberOfFrames", 1) or 1)
    missing = [n for n in numbers if not 1 <= n <= count]
    if missing:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"frame {missing[0]} does not exist ({count} frames)"
        )
    syntax = UID(str(ds.file_meta.TransferSyntaxUID))
    if not syntax.is_compressed:
        return _native_frames(ds, numbers), ExplicitVRLittleEndian
    if _accepts(accept, syntax):
        frames = list(generate_frames(ds.PixelData, number_of_frames=count))
        return [frames[n - 1] for n in numbers], str(syntax)
    ds.decompress()
    return _native_frames(ds, numbers), ExplicitVRLittleEndian


@router.get(
    _INSTANCE + "/frames/{frames}",
    summary="WADO-RS: frames of an instance",
    responses=AUTH | errors(400, 404),
)
async def retrieve_frames(
    study: str,
    series: str,
    instance: str,
    frames: str,
    request: Request,
    principal: Reader,
    state: StateDep,
) -> Response:
    """Frames (``1`` or ``1,2,5``) as multipart/related octet streams."""
    if not _FRAME_LIST.match(frames):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"frame list {frames!r} is not 1,2,...")
    numbers = [int(n) for n in frames.split(",")]
    path = _path(state, study, series, instance)
    accept = request.headers.get("accept", "")

    def read() -> tuple[list[bytes], str]:
        return frames_of(pydicom.dcmread(path), numbers, accept)

    parts, syntax = await run_in_threadpool(read)
    audit_access(state, principal, "wado-rs frames", study, f"{instance} frames {frames}")
    body, content_type = write_related(parts, f"application/octet-stream; transfer-syntax={syntax}")
    return Response(body, media_type=content_type)


@router.get(
    _INSTANCE + "/bulkdata/{tag}",
    summary="WADO-RS: a bulk data attribute",
    responses=AUTH | errors(404),
)
def retrieve_bulkdata(
    study: str, series: str, instance: str, tag: str, principal: Reader, state: StateDep
) -> Response:
    """A top-level binary attribute (``7FE00010`` for pixel data) named by metadata."""
    path = _path(state, study, series, instance)
    ds = pydicom.dcmread(path)
    number = int(tag, 16) if re.fullmatch(r"[0-9A-Fa-f]{8}", tag) else None
    if number is None or number not in ds or ds[number].VR not in _BINARY_VRS:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no bulk data {tag} in {instance}")
    audit_access(state, principal, "wado-rs bulkdata", study, f"{instance} {tag}")
    body, content_type = write_related([bytes(ds[number].value)], "application/octet-stream")
    return Response(body, media_type=content_type)


def metadata_json(ds: Dataset, instance_url: str) -> dict[str, Any]:
    """DICOM JSON of a header read without pixels; large binary attributes as BulkDataURIs.

    Pixel data (not read) is named by URI whenever the header describes an image, and the
    transfer syntax (0002,0010) is included: viewers decode frames by it.
    """
    bulk = {
        int(element.tag): element.VR
        for element in ds
        if element.VR in _BINARY_VRS and len(element.value or b"") >= BULK_THRESHOLD
    }
    if "Rows" in ds and "PixelData" not in ds:
        bulk[0x7FE00010] = "OW" if int(ds.get("BitsAllocated", 8)) > 8 else "OB"
    inline = Dataset()
    for element in ds:
        if element.tag not in bulk:
            inline.add(element)
    out: dict[str, Any] = inline.to_json_dict(bulk_data_threshold=1 << 30)
    for tag, vr in bulk.items():
        out[f"{tag:08X}"] = {"vr": vr, "BulkDataURI": f"{instance_url}/bulkdata/{tag:08X}"}
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax:
        out["00020010"] = {"vr": "UI", "Value": [str(syntax)]}
    return dict(sorted(out.items()))

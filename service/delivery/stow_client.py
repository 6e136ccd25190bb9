"""STOW-RS client: POST instances as multipart/related to a DICOMweb endpoint."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import httpx

from service.api.multipart import write_related
from service.dimse.scu import DeliveryError


def stow(paths: Sequence[Path], url: str, bearer_token: str = "", timeout_s: float = 60) -> None:
    """Store files at ``<url>/studies``.

    Raises
    ------
    DeliveryError
        On a transport error or any status other than 200.
    """
    body, content_type = write_related([p.read_bytes() for p in paths], "application/dicom")
    headers = {"Content-Type": content_type, "Accept": "application/dicom+json"}
    if bearer_token:
        headers["Authorization"] = f"Bearer {bearer_token}"
    target = url.rstrip("/") + "/studies"
    try:
        response = httpx.post(target, content=body, headers=headers, timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise DeliveryError(f"STOW-RS to {target} failed: {exc}") from exc
    if response.status_code != 200:
        raise DeliveryError(f"STOW-RS to {target} answered {response.status_code}")

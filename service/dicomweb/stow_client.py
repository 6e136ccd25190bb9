"""The one STOW-RS client: POST instances as ``multipart/related`` to a DICOMweb endpoint.

Used by result delivery (:mod:`service.delivery.dispatcher`) and by the API client
(:mod:`service.api.client`); both name a DICOMweb base URL and this client appends ``/studies``.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from service.dicomweb.multipart import write_related
from service.errors import FedsegError


class StowError(FedsegError):
    """A STOW-RS request failed: the endpoint was unreachable or did not store every part."""

    http_status = 502


@dataclass(frozen=True)
class StowClient:
    """A DICOMweb endpoint (``url`` is its base, e.g. ``https://pacs/dicom-web``)."""

    url: str
    bearer_token: str = ""
    verify: ssl.SSLContext | bool = True
    timeout_s: float = 60.0

    @property
    def target(self) -> str:
        """The STOW-RS resource: ``<url>/studies``."""
        return self.url.rstrip("/") + "/studies"

    def store(self, paths: Sequence[Path]) -> None:
        """Store every file in one request.

        Raises
        ------
        StowError
            On a transport error or any answer other than 200 (a 202 means some parts were
            refused, so the study did not arrive whole).
        """
        if not paths:
            raise StowError(f"STOW-RS to {self.target}: no files to send")
        body, content_type = write_related([p.read_bytes() for p in paths], "application/dicom")
        headers = {"Content-Type": content_type, "Accept": "application/dicom+json"}
        if self.bearer_token:
            headers["Authorization"] = f"Bearer {self.bearer_token}"
        try:
            response = httpx.post(
                self.target,
                content=body,
                headers=headers,
                timeout=self.timeout_s,
                verify=self.verify,
            )
        except httpx.HTTPError as exc:
            raise StowError(f"STOW-RS to {self.target} failed: {exc}") from exc
        if response.status_code != 200:
            raise StowError(
                f"STOW-RS to {self.target} answered {response.status_code}: {response.text[:300]}"
            )

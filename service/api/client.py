"""A small client of the fedseg API: send a study by STOW-RS, queue it, wait for its job.

Used by ``scripts/demo_service.sh`` and ``bench/bench_latency.py``; a PACS would send by
STOW-RS or C-STORE and let the quiet period queue the job instead.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pydicom

from service.dicomweb.stow_client import StowClient
from service.errors import FedsegError


class ServiceClientError(FedsegError):
    """The server refused a request or a job did not finish in time."""


@dataclass(frozen=True)
class ServiceClient:
    """The API at ``url`` with a sender and a reader token."""

    url: str
    sender_token: str
    reader_token: str
    verify: ssl.SSLContext | bool = True
    timeout_s: float = 120.0

    def _headers(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    def _check(self, response: httpx.Response, what: str) -> Any:
        if response.status_code >= 300:
            raise ServiceClientError(f"{what}: HTTP {response.status_code} {response.text[:300]}")
        return response.json() if response.content else None

    def stow(self, paths: Sequence[Path]) -> str:
        """Store one study's files by STOW-RS; returns its StudyInstanceUID.

        Raises
        ------
        ServiceClientError
            If the files are not exactly one study.
        StowError
            If the server did not store every file (:mod:`service.dicomweb.stow_client`).
        """
        if not paths:
            raise ServiceClientError("no DICOM files to send")
        studies = {str(pydicom.dcmread(p, stop_before_pixels=True).StudyInstanceUID) for p in paths}
        if len(studies) != 1:
            raise ServiceClientError(f"send one study at a time, got {len(studies)}")
        StowClient(f"{self.url}/dicomweb", self.sender_token, self.verify, self.timeout_s).store(
            paths
        )
        return studies.pop()

    def queue(self, study_uid: str) -> str:
        """Queue a job for a stored study now (no quiet period); returns the job id."""
        response = httpx.post(
            f"{self.url}/v1/jobs",
            json={"study_instance_uid": study_uid},
            headers=self._headers(self.sender_token),
            timeout=self.timeout_s,
            verify=self.verify,
        )
        return str(self._check(response, "queue job")["id"])

    def get(self, path: str) -> Any:
        """GET a JSON route with the reader token."""
        response = httpx.get(
            f"{self.url}{path}",
            headers=self._headers(self.reader_token),
            timeout=self.timeout_s,
            verify=self.verify,
        )
        return self._check(response, f"GET {path}")

    def wait(self, job_id: str, timeout_s: float, delivered: bool = False) -> dict[str, Any]:
        """Poll a job until it finished (and, with ``delivered``, its deliveries ended)."""
        deadline = time.monotonic() + timeout_s
        while True:
            job: dict[str, Any] = self.get(f"/v1/jobs/{job_id}")
            deliveries = job.get("deliveries", [])
            if job["state"] == "failed":
                return job
            if job["state"] == "succeeded" and (
                not delivered or (deliveries and all(d["state"] != "pending" for d in deliveries))
            ):
                return job
            if time.monotonic() > deadline:
                raise ServiceClientError(f"job {job_id} still {job['state']} after {timeout_s} s")
            time.sleep(0.2)

    def measurements(self, job: dict[str, Any]) -> list[dict[str, Any]]:
        """The job's measurement reports."""
        count = len(job.get("results", {}).get("measurements", []))
        return [
            self.get(f"/v1/jobs/{job['id']}/results/measurements?index={i}") for i in range(count)
        ]


def format_measurements(reports: Sequence[dict[str, Any]]) -> str:
    """A plain-text table of segment measurements (no patient identifiers)."""
    header = f"{'model':<28} {'modality':<8} {'segment':<16} {'volume mL':>10} {'mean':>9}"
    lines = [header + f" {'SUVmax':>8}"]
    for report in reports:
        # Several models may run on one series (e.g. two CT organ models): name each row's.
        model = str(report.get("algorithm", ""))
        for segment in report.get("segments", []):
            intensity = segment.get("intensity") or {}
            pet = segment.get("pet") or {}
            lines.append(
                f"{model:<28} {report.get('modality', ''):<8} {segment['name']:<16} "
                f"{_num(segment.get('volume_ml')):>10} {_num(intensity.get('mean')):>9} "
                f"{_num(pet.get('suv_max')):>8}"
            )
    return "\n".join(lines)


def _num(value: object) -> str:
    return f"{value:.2f}" if isinstance(value, int | float) else "-"

"""Per-site pseudonyms for cases, and the map back to the patient that only the centre keeps.

A case is named ``<site>_p<subject>_<n>``: subjects are numbered in the order they are first
met, never derived from an identifier, so the name says nothing without the map. The map (a
CSV file, readable by its owner only) is read again on the next build, so a patient keeps its
pseudonym and a series its case name when the dataset is rebuilt or grows.
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from pydicom.dataset import Dataset

from service.errors import ConfigurationError

FIELDS = (
    "case_id",
    "subject",
    "patient_id",
    "patient_name",
    "birth_date",
    "study_instance_uid",
    "series_instance_uid",
    "stack",
    "source",
)
_SITE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,31}$")


def check_site_name(site: str) -> str:
    """``site`` if it can name cases (letters, digits, hyphens; at most 32).

    Raises
    ------
    ConfigurationError
        If it cannot.
    """
    if not _SITE.match(site):
        raise ConfigurationError(
            f"site name {site!r}: use 1-32 letters, digits or hyphens (e.g. 'site-a'); it names "
            "every case, so never use a patient or hospital identifier you would not publish"
        )
    return site


def _subject_key(header: Dataset) -> str:
    patient_id = str(header.get("PatientID", "")).strip()
    if patient_id:
        return f"id:{patient_id}"
    name = str(header.get("PatientName", "")).strip()
    birth = str(header.get("PatientBirthDate", "")).strip()
    if name or birth:
        return f"name:{name}|{birth}"
    return f"study:{header.get('StudyInstanceUID', '')}"


@dataclass
class PseudonymMap:
    """Case names of one site and the identifiers they stand for."""

    site: str
    rows: list[dict[str, str]] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path, site: str) -> PseudonymMap:
        """The map at ``path``, or an empty one when there is none yet.

        Raises
        ------
        ConfigurationError
            If the file belongs to another site or is not a pseudonym map.
        """
        check_site_name(site)
        if not path.is_file():
            return cls(site)
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        if rows and (set(FIELDS) - set(rows[0]) or not rows[0]["case_id"].startswith(f"{site}_")):
            raise ConfigurationError(
                f"{path} is not the pseudonym map of site {site!r}; pass the right --site or "
                "another --private folder"
            )
        return cls(site, rows)

    def case_id(self, header: Dataset, series_uid: str, stack: str, source: str) -> tuple[str, str]:
        """The case name and subject pseudonym of one image stack (made on first sight)."""
        for row in self.rows:
            if row["series_instance_uid"] == series_uid and row["stack"] == stack:
                return row["case_id"], row["subject"]
        key = _subject_key(header)
        subjects = {self._key(r): r["subject"] for r in self.rows}
        subject = subjects.get(key) or f"p{len(set(subjects.values())) + 1:04d}"
        number = sum(1 for r in self.rows if r["subject"] == subject) + 1
        case = f"{self.site}_{subject}_{number:02d}"
        self.rows.append(
            {
                "case_id": case,
                "subject": subject,
                "patient_id": str(header.get("PatientID", "")),
                "patient_name": str(header.get("PatientName", "")),
                "birth_date": str(header.get("PatientBirthDate", "")),
                "study_instance_uid": str(header.get("StudyInstanceUID", "")),
                "series_instance_uid": series_uid,
                "stack": stack,
                "source": source,
            }
        )
        return case, subject

    @staticmethod
    def _key(row: dict[str, str]) -> str:
        if row["patient_id"]:
            return f"id:{row['patient_id']}"
        if row["patient_name"] or row["birth_date"]:
            return f"name:{row['patient_name']}|{row['birth_date']}"
        return f"study:{row['study_instance_uid']}"

    def save(self, path: Path) -> Path:
        """Write the map, readable and writable by its owner only."""
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".part")
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=FIELDS)
            writer.writeheader()
            writer.writerows(self.rows)
        partial.replace(path)
        return path

"""What a dataset build found: one record per problem or decision, with a severity.

Messages name ROIs, labels, counts and case pseudonyms only. The source file a finding is about
is kept apart (``source``) and written only to the centre's private report, because a PACS
export's folder names often hold patient names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

# DICOM UIDs identify a study or series back at the source: none leave in the site folder.
_UID = re.compile(r"\b[0-9]+(\.[0-9]+){3,}\b")


class Severity(StrEnum):
    """How much a finding costs the dataset."""

    #: An object or case was left out.
    ERROR = "error"
    #: A label of a case is unknown, or some of a structure was lost; the case is kept.
    WARNING = "warning"
    #: A decision worth knowing (how a name or a pair was matched); nothing was lost.
    INFO = "info"


class Topic(StrEnum):
    """What a finding is about."""

    PAIRING = "pairing"
    READ = "read"
    ROI_NAME = "roi-name"
    DUPLICATE = "duplicate"
    OVERLAP = "overlap"
    EMPTY = "empty"
    QC = "qc"
    IMAGE = "image"


@dataclass(frozen=True)
class Finding:
    """One problem or decision of a build."""

    severity: Severity
    topic: Topic
    message: str
    case: str | None = None  # case pseudonym
    source: str | None = None  # source file or folder (private report only)

    def public(self) -> dict[str, str]:
        """The finding without its source or any UID, for the site folder."""
        message = _UID.sub("<uid>", self.message)
        out = {"severity": self.severity.value, "topic": self.topic.value, "message": message}
        if self.case:
            out["case"] = self.case
        return out

    def private(self) -> dict[str, str]:
        """The finding with its source, for the centre's own report."""
        out = self.public() | {"message": self.message}
        if self.source:
            out["source"] = self.source
        return out

    def line(self) -> str:
        """One line for the console."""
        where = f"[{self.case}] " if self.case else ""
        return f"{self.severity.value:7} {self.topic.value:9} {where}{self.message}"

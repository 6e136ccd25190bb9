"""The names QC uses: body regions, check names, outcomes and the delivery policy.

Options go through these enums, so a typo in a manifest or a label table fails at load with
the field named.
"""

from __future__ import annotations

from enum import StrEnum


class BodyRegion(StrEnum):
    """A body region a model expects in the field of view (CID 4031 values map onto these)."""

    HEAD = "head"
    NECK = "neck"
    THORAX = "thorax"
    ABDOMEN = "abdomen"
    PELVIS = "pelvis"
    UPPER_LIMB = "upper_limb"
    LOWER_LIMB = "lower_limb"


class ApplicabilityCheck(StrEnum):
    """A check of a series against a model's intended use, run before inference."""

    MODALITY = "modality"
    BODY_PART_HEADER = "body_part_header"  # BodyPartExamined, when present and trustworthy
    BODY_PRESENT = "body_present"  # is there a body in the image at all
    BODY_REGIONS_IMAGE = "body_regions_image"  # lungs (air inside the body), abdomen
    AGE = "age"
    SLICE_THICKNESS = "slice_thickness"


class StructureCheck(StrEnum):
    """A plausibility check of one segmented structure, run after inference."""

    INSIDE_BODY = "inside_body"
    INTENSITY = "intensity"
    VOLUME = "volume"
    LATERALITY = "laterality"
    POSITION = "position"
    COMPONENTS = "components"
    FOV_EDGE = "fov_edge"


class QcStatus(StrEnum):
    """Outcome of a check or of a structure (the worst of its checks)."""

    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"
    NOT_ASSESSED = "not_assessed"  # no prior, or the image cannot tell

    @property
    def rank(self) -> int:
        """Severity order: not assessed and pass < warn < fail."""
        return {"not_assessed": 0, "pass": 0, "warn": 1, "fail": 2}[self.value]


def worst(statuses: list[QcStatus]) -> QcStatus:
    """The most severe status; ``pass`` when every check passed or none could be assessed."""
    ranked = max(statuses, key=lambda s: s.rank, default=QcStatus.PASS)
    return QcStatus.PASS if ranked is QcStatus.NOT_ASSESSED else ranked


class QcPolicy(StrEnum):
    """What happens to failed structures in results sent to a PACS or planning system."""

    WITHHOLD = "withhold"  # failed structures are left out of SEG and RTSTRUCT; the SR says why
    FLAG = "flag"  # everything is sent; failed structures are marked in their descriptions
    OFF = "off"  # no structure QC at all


class Side(StrEnum):
    """The side of the patient a structure lies on (from the LPS geometry)."""

    LEFT = "left"
    RIGHT = "right"


class Relation(StrEnum):
    """A position of a structure relative to another structure or to the skeleton."""

    ABOVE = "above"  # its top is higher than the other's top, and its bottom than the other's
    BELOW = "below"
    POSTERIOR_TO_BONE = "posterior_to_bone"  # bone (vertebral bodies) lies in front of it (CT)
    POSTERIOR_HALF = "posterior_half"  # its centre lies behind the trunk's (retroperitoneum)

"""QIDO-RS: search studies, series and instances under ``/dicomweb`` (reader).

Received and result series (SEG, RTSTRUCT, SR) are searched alike. Matching, paging and
``includefield`` follow :mod:`service.api.qido`; a key fedseg cannot match answers 400 rather
than being ignored, and every search is audited with its result count.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response, status
from sqlalchemy import select

from service.api import dicom_json as dj
from service.api import qido
from service.api.deps import Reader, StateDep, audit_access
from service.api.responses import AUTH, errors
from service.api.state import ServerState
from service.db.models import Instance, InstanceOrigin

router = APIRouter(prefix="/dicomweb", tags=["dicomweb"])

DICOM_JSON = "application/dicom+json"
_VR = {**qido.SEARCH_KEYS, **qido.COMPUTED}
Entity = dict[str, Any]


def _rows(state: ServerState, study: str | None, series: str | None) -> list[Instance]:
    query = select(Instance)
    if study is not None:
        query = query.where(Instance.study_instance_uid == study)
    if series is not None:
        query = query.where(Instance.series_instance_uid == series)
    with state.factory() as session:
        return list(session.scalars(query).all())


def _flat(rows: list[Instance]) -> list[Entity]:
    """One attribute dict per instance, carrying its study's and series' attributes."""
    modalities: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        if row.modality:
            modalities[row.study_instance_uid].add(row.modality)
    return [
        dict(row.attributes or {})
        | {
            "StudyInstanceUID": row.study_instance_uid,
            "SeriesInstanceUID": row.series_instance_uid,
            "SOPInstanceUID": row.sop_instance_uid,
            "SOPClassUID": row.sop_class_uid,
            "Modality": row.modality,
            "ModalitiesInStudy": sorted(modalities[row.study_instance_uid]),
            "_received": row.origin == InstanceOrigin.RECEIVED.value,
        }
        for row in rows
    ]


def _group(items: list[Entity], key: str) -> dict[str, list[Entity]]:
    groups: dict[str, list[Entity]] = defaultdict(list)
    for item in items:
        groups[item[key]].append(item)
    return groups


def _number(value: Any) -> int:
    text = str(value or "").strip()
    return int(text) if text.lstrip("+-").isdigit() else 0


def _entities(level: qido.Level, flat: list[Entity], base: str) -> list[Entity]:
    """The study, series or instance entities (all instances), in a stable order."""
    if level is qido.Level.INSTANCE:
        out = [
            item | {"RetrieveURL": f"{base}/studies/{item['StudyInstanceUID']}/series/"
                    f"{item['SeriesInstanceUID']}/instances/{item['SOPInstanceUID']}"}
            for item in flat
        ]  # fmt: skip
        return sorted(out, key=lambda e: (_number(e.get("InstanceNumber")), e["SOPInstanceUID"]))
    key = "StudyInstanceUID" if level is qido.Level.STUDY else "SeriesInstanceUID"
    out = []
    for uid, members in _group(flat, key).items():
        # Study attributes come from a received instance when there is one (results copy them).
        first = next((m for m in members if m["_received"]), members[0])
        entity = dict(first)
        if level is qido.Level.STUDY:
            entity["NumberOfStudyRelatedSeries"] = len({m["SeriesInstanceUID"] for m in members})
            entity["NumberOfStudyRelatedInstances"] = len(members)
            entity["RetrieveURL"] = f"{base}/studies/{uid}"
        else:
            entity["NumberOfSeriesRelatedInstances"] = len(members)
            entity["RetrieveURL"] = f"{base}/studies/{first['StudyInstanceUID']}/series/{uid}"
        out.append(entity)
    if level is qido.Level.STUDY:
        # Newest first, as a worklist reads; the UID keeps paging stable.
        out.sort(key=lambda e: e["StudyInstanceUID"])
        out.sort(key=lambda e: (e.get("StudyDate", ""), e.get("StudyTime", "")), reverse=True)
        return out
    return sorted(out, key=lambda e: (_number(e.get("SeriesNumber")), e["SeriesInstanceUID"]))


def _as_json(entity: Entity, keywords: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for keyword in keywords:
        value = entity.get(keyword)
        values = value if isinstance(value, list) else [value]
        out |= dj.element(keyword, _VR[keyword], *values)
    return out


def _warning(texts: list[str]) -> dict[str, str]:
    if not texts:
        return {}
    return {"Warning": ", ".join(f'299 fedseg: "{t}"' for t in texts)}


def search(
    request: Request,
    state: ServerState,
    level: qido.Level,
    scope: tuple[str | None, str | None],
    audit: Callable[[int], None],
) -> Response:
    """Run one QIDO-RS search at ``level`` within ``scope`` (study UID, series UID)."""
    study, series = scope
    fixed = [k for k, v in (("StudyInstanceUID", study), ("SeriesInstanceUID", series)) if v]
    try:
        query = qido.parse(
            request.query_params.multi_items(), level, state.settings.qido_max_results, fixed
        )
    except qido.QueryError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from exc
    flat = _flat(_rows(state, study, series))
    matched = [e for e in flat if all(c.matches(e.get(c.keyword)) for c in query.criteria)]
    key = {qido.Level.STUDY: "StudyInstanceUID", qido.Level.SERIES: "SeriesInstanceUID",
           qido.Level.INSTANCE: "SOPInstanceUID"}[level]  # fmt: skip
    wanted = {e[key] for e in matched}
    base = state.dicomweb_url
    # Counts describe whole entities, not just the instances that matched a lower-level key.
    entities = [e for e in _entities(level, flat, base) if e[key] in wanted]
    page = entities[query.offset : query.offset + query.limit]
    warnings = list(query.warnings)
    remaining = len(entities) - query.offset - len(page)
    if remaining > 0:
        warnings.append(f"There are {remaining} additional results that can be requested")
    audit(len(page))
    keywords = query.returned()
    body = json.dumps([_as_json(e, keywords) for e in page])
    return Response(body, media_type=DICOM_JSON, headers=_warning(warnings))


_SEARCH = AUTH | errors(400)


@router.get("/studies", summary="QIDO-RS: search studies", responses=_SEARCH)
def search_studies(request: Request, principal: Reader, state: StateDep) -> Response:
    """Studies matching the query (patient, date, accession, modality, UID; see docs)."""

    def audit(n: int) -> None:
        audit_access(state, principal, "qido-rs studies", None, f"{n} studies")

    return search(request, state, qido.Level.STUDY, (None, None), audit)


@router.get("/series", summary="QIDO-RS: search series", responses=_SEARCH)
def search_all_series(request: Request, principal: Reader, state: StateDep) -> Response:
    """Series of every study matching the query."""

    def audit(n: int) -> None:
        audit_access(state, principal, "qido-rs series", None, f"{n} series")

    return search(request, state, qido.Level.SERIES, (None, None), audit)


@router.get("/studies/{study}/series", summary="QIDO-RS: a study's series", responses=_SEARCH)
def search_series(study: str, request: Request, principal: Reader, state: StateDep) -> Response:
    """The series of a study, results included (Modality SEG, RTSTRUCT, SR)."""

    def audit(n: int) -> None:
        audit_access(state, principal, "qido-rs series", study, f"{n} series")

    return search(request, state, qido.Level.SERIES, (study, None), audit)


@router.get("/instances", summary="QIDO-RS: search instances", responses=_SEARCH)
def search_all_instances(request: Request, principal: Reader, state: StateDep) -> Response:
    """Instances of every study matching the query."""

    def audit(n: int) -> None:
        audit_access(state, principal, "qido-rs instances", None, f"{n} instances")

    return search(request, state, qido.Level.INSTANCE, (None, None), audit)


@router.get("/studies/{study}/instances", summary="QIDO-RS: a study's instances", responses=_SEARCH)
def search_study_instances(
    study: str, request: Request, principal: Reader, state: StateDep
) -> Response:
    """The instances of a study."""

    def audit(n: int) -> None:
        audit_access(state, principal, "qido-rs instances", study, f"{n} instances")

    return search(request, state, qido.Level.INSTANCE, (study, None), audit)


@router.get(
    "/studies/{study}/series/{series}/instances",
    summary="QIDO-RS: a series' instances",
    responses=_SEARCH,
)
def search_series_instances(
    study: str, series: str, request: Request, principal: Reader, state: StateDep
) -> Response:
    """The instances of a series."""

    def audit(n: int) -> None:
        audit_access(state, principal, "qido-rs instances", study, f"{series}: {n} instances")

    return search(request, state, qido.Level.INSTANCE, (study, series), audit)

"""Routing rules: which models run for which series (modality, body part, description)."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, status
from pydantic import BaseModel, Field, field_validator
from sqlalchemy import select

from service.api.deps import Admin, Reader, SessionDep
from service.api.responses import AUTH, errors
from service.db.models import RoutingRule

router = APIRouter(prefix="/v1/routing-rules", tags=["routing"])


class RuleIn(BaseModel):
    """A routing rule; empty criteria match any series (regular expressions, any case)."""

    priority: int = Field(default=100, ge=-(2**63), le=2**63 - 1)
    modality: str = Field(default="", max_length=16)
    body_part: str = Field(default="", max_length=64)
    series_description: str = Field(default="", max_length=256)
    models: list[str] = Field(min_length=1)

    @field_validator("series_description", "body_part")
    @classmethod
    def _regex(cls, value: str) -> str:
        # One meaning with the manifests' series rules (service.selection): body_part must
        # match all of BodyPartExamined, series_description any part of SeriesDescription.
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from exc
        return value


class RuleOut(RuleIn):
    """A stored rule."""

    id: int


def _out(rule: RoutingRule) -> RuleOut:
    return RuleOut(
        id=rule.id,
        priority=rule.priority,
        modality=rule.modality,
        body_part=rule.body_part,
        series_description=rule.series_description,
        models=rule.models,
    )


@router.get("", summary="Routing rules", responses=AUTH)
def list_rules(_: Reader, session: SessionDep) -> list[RuleOut]:
    """Rules in the order they are tried (priority, then id)."""
    rules = session.scalars(select(RoutingRule).order_by(RoutingRule.priority, RoutingRule.id))
    return [_out(r) for r in rules]


@router.post("", status_code=status.HTTP_201_CREATED, summary="Add a rule (admin)", responses=AUTH)
def add_rule(rule: RuleIn, _: Admin, session: SessionDep) -> RuleOut:
    """Store a rule."""
    row = RoutingRule(**rule.model_dump())
    session.add(row)
    session.commit()
    return _out(row)


@router.delete(
    "/{rule_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a rule",
    responses=AUTH | errors(404),
)
def delete_rule(
    rule_id: Annotated[int, Path(ge=1, le=2**63 - 1)], _: Admin, session: SessionDep
) -> None:
    """Remove a rule."""
    row = session.get(RoutingRule, rule_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no routing rule {rule_id}")
    session.delete(row)
    session.commit()

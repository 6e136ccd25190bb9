"""Routing rules as the server stores them: read from the database at each job.

What the rules mean and how they choose models is the series-selection step's
(:mod:`service.selection`); this module only supplies the current rules.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service.db.models import RoutingRule
from service.selection import Rule

#: Returns the current rules (read at each job, so edits apply without a restart).
RuleSource = Callable[[], Sequence[Rule]]


def rule_source(factory: sessionmaker[Session]) -> RuleSource:
    """Read the rules from the database at each call."""

    def load() -> list[RoutingRule]:
        with factory() as session:
            rules = list(session.scalars(select(RoutingRule)))
            session.expunge_all()
        return rules

    return load

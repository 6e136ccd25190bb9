"""Errors of the federation layer, inside fedseg's one exception hierarchy."""

from __future__ import annotations

from service.errors import FedsegError


class FederationError(FedsegError):
    """A federated run cannot proceed (bad site declaration, no valid update, bad state)."""

    exit_code = 7


class PromotionError(FederationError):
    """A candidate model could not be compared with, or installed over, the current one."""

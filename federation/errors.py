"""Errors of the federation layer, inside fedseg's one exception hierarchy."""

from __future__ import annotations

from pydantic import ValidationError

from service.errors import FedsegError


class FederationError(FedsegError):
    """A federated run cannot proceed (bad site declaration, no valid update, bad state)."""

    exit_code = 7


class PromotionError(FederationError):
    """A candidate model could not be compared with, or installed over, the current one."""


def validation_message(exc: ValidationError) -> str:
    """``key: reason`` for each invalid value of a config, keys as the config spells them."""
    return "; ".join(
        f"{'.'.join(str(p) for p in error['loc']) or 'config'}: "
        f"{str(error['msg']).removeprefix('Value error, ')}"
        for error in exc.errors()
    )

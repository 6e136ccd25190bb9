"""Error responses that routes declare in the OpenAPI document (``responses=``).

Every status a route can answer is documented, so a client (and schemathesis, see
tests/hardening/test_openapi_fuzz.py) can rely on the document.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class ErrorDetail(BaseModel):
    """The JSON body of an error answer."""

    detail: str


_DESCRIPTIONS: dict[int, str] = {
    202: "Some instances stored, others listed in FailedSOPSequence",
    400: "Malformed multipart body (boundary, part headers or closing delimiter)",
    401: "Missing or unknown bearer token",
    403: "The token's role may not use this route",
    404: "No such resource",
    409: "Conflict: nothing storable, already installed, or not in a state that allows it",
    413: "Body exceeds the upload limit",
    415: "Unsupported media type",
    422: "Input is not acceptable",
    503: "Not ready: the database or the instance store is unavailable",
    507: "Not enough free disk space to store new data",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries for ``codes`` with their descriptions."""
    return {code: {"description": _DESCRIPTIONS[code], "model": ErrorDetail} for code in codes}


#: Routes behind a bearer token.
AUTH = errors(401, 403)

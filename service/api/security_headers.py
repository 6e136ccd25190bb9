"""Security headers of every response, chosen per route prefix.

Every answer gets ``X-Content-Type-Options: nosniff``, ``X-Frame-Options: DENY`` and a
Content-Security-Policy. API routes return data, never pages, so their policy allows nothing;
the dashboard's policy allows exactly what its page does (its own scripts and stylesheet,
``fetch`` to the API; the slice viewer draws raw value planes on a canvas, so no image source).
An app with other needs (an OHIF viewer under ``/viewer``, say) adds a :class:`HeaderRule` for
its prefix.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

#: Nothing may be loaded, framed or submitted: for JSON, DICOM and raw plane answers.
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

#: The dashboard: its own files and API calls to its origin.
DASHBOARD_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)

#: The OHIF Viewer (/viewer): its own bundles and inline bootstrap, eval (ndarray compiles its
#: SEG constructors with new Function), WebAssembly codecs, blob: workers, inline styles
#: (React), DICOMweb calls to this origin; nothing from elsewhere.
VIEWER_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' 'unsafe-eval' 'wasm-unsafe-eval' "
    "blob:; "
    "worker-src 'self' blob:; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "font-src 'self' data:; connect-src 'self' data: blob:; frame-ancestors 'none'; "
    "base-uri 'self'; form-action 'self'"
)

BASE_HEADERS: Mapping[str, str] = MappingProxyType(
    {
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
    }
)


@dataclass(frozen=True)
class HeaderRule:
    """Headers for paths starting with ``prefix`` (they override the base headers)."""

    prefix: str
    headers: Mapping[str, str]


@dataclass(frozen=True)
class HeaderPolicy:
    """Base headers for every response, then those of the longest matching prefix rule."""

    rules: tuple[HeaderRule, ...]
    base: Mapping[str, str] = field(default_factory=lambda: BASE_HEADERS)
    default_csp: str = API_CSP

    def __post_init__(self) -> None:
        prefixes = [rule.prefix for rule in self.rules]
        if len(set(prefixes)) != len(prefixes):
            raise ValueError(f"header rules repeat a prefix: {sorted(prefixes)}")
        if any(not prefix.startswith("/") for prefix in prefixes):
            raise ValueError("header rule prefixes are paths starting with '/'")

    def headers_for(self, path: str) -> dict[str, str]:
        """The headers a response to ``path`` carries."""
        chosen = {**self.base, "Content-Security-Policy": self.default_csp}
        matching = [rule for rule in self.rules if path.startswith(rule.prefix)]
        if matching:
            chosen |= max(matching, key=lambda rule: len(rule.prefix)).headers
        return chosen


DEFAULT_POLICY = HeaderPolicy(
    rules=(
        HeaderRule("/dashboard/", {"Content-Security-Policy": DASHBOARD_CSP}),
        HeaderRule("/viewer", {"Content-Security-Policy": VIEWER_CSP}),
    )
)

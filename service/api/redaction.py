"""What of an internal message a client may see: no server folders, bounded length.

Errors raised in the service name their input by path, which is what a user of ``fedseg
segment`` needs; through the API the same text would show the state folder, the instance store
and the model store to every reader. Every error detail, job error and JSON result the API
returns passes through a :class:`Redactor`, which reduces each path inside a server folder
(state, model stores, data, temporary files, the service's home and Python prefix) to its last
component and cuts long messages. API routes such as ``/v1/jobs`` in a message are kept.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from service.config import Settings

#: Longest message returned; a geometry error can list every file of a series.
MAX_MESSAGE_CHARS = 1000

# The rest of a path after a folder (which must end there, so /srv/a does not match /srv/ab):
# components up to a space, quote, comma or bracket.
_REST = r"(?![^\s/'\",;()\[\]{}<>])(?:/[^\s/'\",;()\[\]{}<>]+)*/?"


class Redactor:
    """Replaces paths inside ``folders`` with their last component."""

    def __init__(self, folders: Iterable[Path | str]) -> None:
        forms = set()
        for folder in folders:
            # os.path.expanduser leaves "~" alone when there is no home (Path raises).
            path = Path(os.path.expanduser(str(folder)))
            for form in (path, path.resolve()):
                if form.is_absolute() and len(form.parts) > 1:  # never "/" itself
                    forms.add(str(form).rstrip("/"))
        # Longest first, so a folder inside another is matched whole.
        alternatives = "|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True))
        self._pattern = re.compile(rf"(?<![\w.-])(?:{alternatives}){_REST}") if forms else None

    def message(self, text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
        """``text`` with server paths reduced to their last component, at most ``limit`` chars.

        >>> Redactor(["/srv/fedseg"]).message("/srv/fedseg/state/ab12.dcm: slices overlap")
        'ab12.dcm: slices overlap'
        """
        cleaned = self._pattern.sub(_last_component, text) if self._pattern else text
        if len(cleaned) <= limit:
            return cleaned
        return f"{cleaned[:limit]}... ({len(cleaned) - limit} more characters)"

    def json(self, value: Any) -> Any:
        """A JSON value with every string passed through :meth:`message` (not cut)."""
        if isinstance(value, str):
            return self.message(value, limit=len(value))
        if isinstance(value, list):
            return [self.json(v) for v in value]
        if isinstance(value, dict):
            return {k: self.json(v) for k, v in value.items()}
        return value


def _last_component(match: re.Match[str]) -> str:
    return match.group(0).rstrip("/").rsplit("/", 1)[-1]


def server_redactor(settings: Settings) -> Redactor:
    """The redactor of a server: its state, model stores, data, temp, home and Python prefix."""
    return Redactor(
        (
            settings.state_dir,
            settings.model_store,
            settings.shipped_models,
            settings.data,
            tempfile.gettempdir(),
            "~",
            sys.prefix,
        )
    )

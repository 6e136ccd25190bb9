"""The ROI-name mapping file a centre reviews, edits and passes back with ``--mapping``.

JSON, one entry per distinct ROI name met in the build::

    {"task": "ct-organs",
     "names": {"LUNG LT": "lung_left", "Kidney": null, "BODY": "ignore"},
     "notes": {"Kidney": "ambiguous: no side given: Kidney_L or Kidney_R (3 cases)"}}

A value is a label of the task, that label's TG-263 name, ``"ignore"`` or ``null`` (not settled:
the automatic rules apply). Only ``names`` is read back; ``notes`` explain the build's reading.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path

from service.errors import ConfigurationError
from service.labels.registry import LabelTable
from service.labels.roi_names import IGNORE, MatchStatus, RoiMatch

HELP = (
    "Set each ROI name to a label of the task, its TG-263 name, 'ignore', or null (automatic); "
    "then build again with --mapping <this file>."
)


def read_mapping(path: Path, task: str) -> dict[str, str | None]:
    """The ``names`` of a mapping file made for ``task``.

    Raises
    ------
    ConfigurationError
        If the file is missing, not JSON, for another task, or a value is not a string or null.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigurationError(f"mapping file {path} does not exist") from exc
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"mapping file {path} is not readable JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("names"), dict):
        raise ConfigurationError(f"mapping file {path}: expected an object with 'names'")
    if data.get("task", task) != task:
        raise ConfigurationError(f"mapping file {path} is for task {data['task']!r}, not {task!r}")
    names: dict[str, str | None] = {}
    for name, value in data["names"].items():
        if value is not None and not isinstance(value, str):
            raise ConfigurationError(
                f"mapping file {path}: ROI {name!r} must map to a label name, 'ignore' or null"
            )
        names[str(name)] = value
    return names


def write_mapping(
    path: Path,
    table: LabelTable,
    matches: Iterable[RoiMatch],
    given: Mapping[str, str | None],
) -> Path:
    """Write the mapping file of a build: every ROI name met, how it was read, and why."""
    seen: dict[str, RoiMatch] = {}
    counts: Counter[str] = Counter()
    for match in matches:
        key = match.roi_name.strip()
        seen.setdefault(key, match)
        counts[key] += 1
    names: dict[str, str | None] = {}
    notes: dict[str, str] = {}
    for key in sorted(set(seen) | set(given), key=str.lower):
        found = seen.get(key)
        times = f" (seen {counts[key]} time{'' if counts[key] == 1 else 's'})"
        if found is None:
            names[key] = given[key]
            notes[key] = "not met in this build"
            continue
        match = found
        if match.status is MatchStatus.MAPPED:
            names[key] = match.label
            notes[key] = f"{match.reason}{times}"
        elif match.status is MatchStatus.IGNORED:
            names[key] = IGNORE
            notes[key] = f"ignored{times}"
        else:
            names[key] = None
            could = f"; could be {' or '.join(match.candidates)}" if match.candidates else ""
            notes[key] = f"{match.status.value}: {match.reason}{could}{times}"
    data = {
        "task": table.task,
        "help": HELP,
        "labels": {e.name: e.tg263_name for e in sorted(table.labels, key=lambda e: e.number)},
        "names": names,
        "notes": notes,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path

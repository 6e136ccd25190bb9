"""Write benchmark tables into docs/benchmarks.md, one marked section per benchmark."""

from __future__ import annotations

import datetime as dt
from pathlib import Path


def replace_section(path: Path, key: str, title: str, body: str) -> None:
    """Replace (or append) the section between ``<!-- bench:key -->`` markers in ``path``."""
    start, end = f"<!-- bench:{key} -->", f"<!-- /bench:{key} -->"
    stamp = dt.date.today().isoformat()
    block = f"{start}\n## {title}\n\nMeasured {stamp}.\n\n{body}\n{end}"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        _, after = rest.split(end, 1)
        text = before + block + after
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)

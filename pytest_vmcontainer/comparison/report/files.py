"""The report's files: comparison.json, comparison.md and comparison.html, each written whole."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_vmcontainer.comparison.report.htmlpage import render_html
from pytest_vmcontainer.comparison.report.markdown import render_markdown
from pytest_vmcontainer.comparison.report.tables import Section
from pytest_vmcontainer.comparison.results import ComparisonReport


def _write_text(path: Path, text: str) -> None:
    """Write via a temporary file in the same directory, so a report is never half-written."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a report is meant to be shared
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass  # already gone
        raise


def write_reports(report: ComparisonReport, directory: Path, sections: Sequence[Section] = (),
                  extra_json: Mapping[str, Any] | None = None) -> dict[str, Path]:
    """Write comparison.json, comparison.md and comparison.html into ``directory``;
    ``extra_json`` adds top-level keys to the JSON, ``sections`` parts to the pages."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    data = {**report.to_json(), **(extra_json or {})}
    # default=str: a stray non-JSON figure (a Path, say) must not lose the whole report.
    texts = {
        "json": json.dumps(data, indent=2, sort_keys=True, default=str) + "\n",
        "markdown": render_markdown(report, sections) + "\n",
        "html": render_html(report, sections),
    }
    names = {"json": "comparison.json", "markdown": "comparison.md", "html": "comparison.html"}
    paths = {kind: directory / names[kind] for kind in texts}
    for kind, text in texts.items():
        _write_text(paths[kind], text)
    return paths

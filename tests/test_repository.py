"""The repository itself: what every tracked text file must satisfy.

A merge once left conflict markers in README.md and nothing noticed; the docs are part of what a
user gets, so they are checked like code.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"^(<{7}|>{7})( |$)|^={7}$", re.M)


def _tracked_text_files() -> list[Path]:
    out = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    paths = [ROOT / p for p in out.decode().split("\0") if p]
    return [p for p in paths if p.suffix in {".md", ".py", ".yaml", ".toml", ".j2", ".txt", ".cfg"}]


def test_no_tracked_file_holds_merge_conflict_markers() -> None:
    bad = [
        f"{p.relative_to(ROOT)}:{s.count(chr(10), 0, m.start()) + 1}"
        for p in _tracked_text_files()
        if p.is_file()
        for s in [p.read_text(errors="replace")]
        for m in [MARKER.search(s)]
        if m
    ]
    assert not bad, f"merge conflict markers in {bad}"


def test_the_marker_check_catches_a_conflict() -> None:
    text = "a\n<<<<<<< HEAD\nb\n=======\nc\n>>>>>>> i19\n"
    assert MARKER.search(text)
    assert not MARKER.search("a table row | ======= | is fine\n")

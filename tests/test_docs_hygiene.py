"""What strangers read names nothing they cannot have: no path that exists on one machine only,
and no talk of how the work on eventsignal was organised.

Read: the README and the other top-level documents, docs/, scripts/, benchmarks/, examples/ and
every source file under src/ (docstrings, comments, command help and error texts alike).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Folders that exist on one machine: a home, a scratch folder, a build or work area.
MACHINE_PATH = re.compile(r"(?<![\w.])/(?:work|tmp|root|home|Users|opt|mnt)/|[A-Z]:\\Users\\")
# Words about how the work was done rather than about the software.
INTERNAL_WORK = re.compile(
    r"\b(?:issue|ticket)s?\s*#?\d+"
    r"|\bas the (?:issue|ticket|brief|task)\b"
    r"|\bthe (?:issue|ticket|brief|lead)\s+(?:says|asks|names|describes|wants)\b"
    r"|\bhelper (?:brief|session)s?\b"
    r"|\bworktrees?\b"
    r"|\bthis session\b",
    re.IGNORECASE,
)


def _read_by_strangers() -> list[Path]:
    files = [ROOT / name for name in ("README.md", "CHANGELOG.md", "CONTRIBUTING.md")]
    files += sorted((ROOT / "docs").rglob("*.md"))
    files += sorted(p for p in (ROOT / "scripts").iterdir() if p.is_file())
    files += sorted((ROOT / "benchmarks").glob("*.py")) + sorted((ROOT / "benchmarks").glob("*.md"))
    files += sorted((ROOT / "examples").rglob("*.py"))
    files += sorted((ROOT / "src").rglob("*.py")) + sorted((ROOT / "src").rglob("*.html"))
    return [f for f in files if f.is_file()]


FILES = _read_by_strangers()


def test_the_documents_are_where_this_test_looks() -> None:
    names = {f.relative_to(ROOT).as_posix() for f in FILES}
    for expected in ("README.md", "scripts/run", "docs/guide.md", "src/eventsignal/cli/serve.py"):
        assert expected in names


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_machine_paths_and_no_talk_of_internal_work(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    found = [
        f"line {text.count(chr(10), 0, m.start()) + 1}: {m.group(0)!r}"
        for pattern in (MACHINE_PATH, INTERNAL_WORK)
        for m in pattern.finditer(text)
    ]
    assert not found, f"{path.relative_to(ROOT)}: {'; '.join(found)}"


def test_the_patterns_catch_what_they_are_for() -> None:
    assert MACHINE_PATH.search("run /work/main/.venv/bin/python")
    assert MACHINE_PATH.search("written to /tmp/out.db")
    assert not MACHINE_PATH.search("sqlite:////var/data/cart.db and ./tmp/x")
    assert INTERNAL_WORK.search("as the issue names it")
    assert INTERNAL_WORK.search("fixed in issue 17")
    assert not INTERNAL_WORK.search("policies that issue commands idempotently")

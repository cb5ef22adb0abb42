"""The README is the front door and docs/ the manual: every relative link between them resolves.

Pure file reads: no daemon, no network. Anchors follow GitHub's heading slugs (lower case, punctuation
dropped, spaces to hyphens, a repeated heading gets -1, -2, ...).
"""
from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_BYTES = 12_000   # the check is `wc -c README.md`

_FENCE = re.compile(r"^(```|~~~).*?^\1\s*$", re.S | re.M)
_CODE_SPAN = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.M)


def _prose(text: str) -> str:
    return _CODE_SPAN.sub("", _FENCE.sub("", text))


def _slug(heading: str) -> str:
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)     # a link in a heading keeps its text
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)                         # \w keeps letters of every script
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for heading in _HEADING.findall(_FENCE.sub("", path.read_text(encoding="utf-8"))):
        slug = _slug(heading)
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def broken_links(page: Path) -> list[str]:
    problems = []
    for target in _LINK.findall(_prose(page.read_text(encoding="utf-8"))):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):             # http:, https:, mailto: ...
            continue
        file_part, _, anchor = target.partition("#")
        dest = (page.parent / unquote(file_part)).resolve() if file_part else page
        if not dest.exists():
            problems.append(f"{page.relative_to(ROOT)}: {target} (no such file)")
        elif anchor and dest.suffix == ".md" and unquote(anchor) not in anchors(dest):
            problems.append(f"{page.relative_to(ROOT)}: {target} (no such heading)")
    return problems


def test_every_relative_link_in_readme_and_docs_resolves():
    assert [p for page in PAGES for p in broken_links(page)] == []


def test_readme_indexes_every_docs_page():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    linked = {Path(t.partition("#")[0]).name for t in _LINK.findall(_prose(readme)) if t.startswith("docs/")}
    pages = {p.name for p in (ROOT / "docs").glob("*.md")}
    assert pages - linked == set()


def test_readme_stays_a_front_door():
    assert len((ROOT / "README.md").read_bytes()) <= README_MAX_BYTES


def test_slugs_follow_github():
    assert _slug("MQTT JSON (`mqtt`)") == "mqtt-json-mqtt"
    assert _slug("`device_id`, `backend`, `state_dir`") == "device_id-backend-state_dir"
    assert _slug("Operations: systemd, signals, doctor") == "operations-systemd-signals-doctor"

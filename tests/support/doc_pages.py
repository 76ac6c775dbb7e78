"""The documentation as data for the tests: README.md and docs/*.md, their fenced blocks, inline code
spans, links and headings (with the anchors GitHub gives them), and the commands in their shell blocks.

`tests/test_docs.py` checks every page with these; `tests/test_readme.py` and the client tests take
their snippets from `blocks()`.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def pages() -> list[Path]:
    """The user documentation: the README, the pages behind it in docs/."""
    return [README, *sorted((ROOT / "docs").glob("*.md"))]


def linked_pages() -> list[Path]:
    """Every page whose links are checked: the documentation plus the other READMEs in the repository."""
    return [*pages(), ROOT / "service" / "README.md", ROOT / "bench" / "README.md"]


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    """1-based line of the opening fence."""
    language: str
    text: str

    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


@dataclass(frozen=True)
class Prose:
    """A page's lines outside fenced blocks, with their 1-based numbers."""

    page: Path
    lines: tuple[tuple[int, str], ...]


@cache
def _parsed(page: Path) -> tuple[tuple[Block, ...], Prose]:
    blocks: list[Block] = []
    prose: list[tuple[int, str]] = []
    fence: tuple[int, str, str, list[str]] | None = None  # (line, marker, language, lines)
    for number, line in enumerate(page.read_text().splitlines(), start=1):
        stripped = line.lstrip()
        if fence is None:
            opening = re.match(r"(`{3,})(\S*)\s*$", stripped)
            if opening:
                fence = (number, opening.group(1), opening.group(2), [])
            else:
                prose.append((number, line))
        elif stripped.startswith(fence[1]) and not stripped.strip("`"):
            blocks.append(Block(page, fence[0], fence[2], "".join(f"{text}\n" for text in fence[3])))
            fence = None
        else:
            fence[3].append(line)
    assert fence is None, f"{page.name}:{fence[0]}: a fenced block is never closed"
    return tuple(blocks), Prose(page, tuple(prose))


def blocks_of(page: Path, language: str | None = None) -> list[Block]:
    return [b for b in _parsed(page)[0] if language is None or b.language == language]


def all_blocks(language: str | None = None) -> list[Block]:
    return [b for page in pages() for b in blocks_of(page, language)]


def blocks(language: str) -> list[str]:
    """The text of every ```<language> block on every documentation page."""
    return [b.text for b in all_blocks(language)]


def prose(page: Path) -> Prose:
    return _parsed(page)[1]


def code_spans(page: Path) -> list[tuple[int, str]]:
    """Inline `code` in the prose (tables included), with its line."""
    return [(n, span) for n, line in prose(page).lines for span in re.findall(r"`([^`\n]+)`", line)]


def links(page: Path) -> list[tuple[int, str]]:
    """Targets of inline links `[text](target)` in the prose, code spans left out."""
    found = []
    for number, line in prose(page).lines:
        text = re.sub(r"`[^`\n]+`", "", line)
        found += [(number, target) for target in re.findall(r"\]\(([^)\s]+)\)", text)]
    return found


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*\*|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


@cache
def anchors(page: Path) -> frozenset[str]:
    seen: dict[str, int] = {}
    result = set()
    for _, line in prose(page).lines:
        heading = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading:
            base = slug(heading.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            result.add(base if count == 0 else f"{base}-{count}")
    return frozenset(result)


SEPARATOR = re.compile(r"\|[\s:|-]+\|\s*$")


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


def tables(page: Path) -> list[tuple[list[str], list[list[str]]]]:
    """Every Markdown table of the page: its header cells and its rows' cells."""
    found: list[tuple[list[str], list[list[str]]]] = []
    lines = [line for _, line in prose(page).lines]
    for index, line in enumerate(lines):
        if index + 1 < len(lines) and line.startswith("|") and SEPARATOR.match(lines[index + 1]):
            rows = []
            for row in lines[index + 2:]:
                if not row.startswith("|"):
                    break
                rows.append(_cells(row))
            found.append((_cells(line), rows))
    return found


def table(page: Path, first_header: str) -> list[list[str]]:
    """The rows of the page's one table whose first column is headed `first_header`."""
    (rows,) = [rows for header, rows in tables(page) if header[0] == first_header]
    return rows


def _without_substitutions(line: str) -> str:
    """`$(...)` (nesting and quotes inside included) replaced by a placeholder word, so shlex can split."""
    out, index = [], 0
    while (start := line.find("$(", index)) != -1:
        depth, end = 0, start + 1
        while end < len(line):
            depth += {"(": 1, ")": -1}.get(line[end], 0)
            if depth == 0:
                break
            end += 1
        out.append(line[index:start] + "SUBSTITUTED")
        index = end + 1
    return "".join(out) + line[index:]


def shell_commands(script: str) -> list[list[str]]:
    """The simple commands of a shell block: continuation lines joined, comments dropped, split at
    `&&`, `||`, `|` and `;`; a line that is an answer printed under a command (indented `#`) is left out."""
    commands: list[list[str]] = []
    for logical in script.replace("\\\n", " ").splitlines():
        words = shlex.split(_without_substitutions(logical), comments=True)
        current: list[str] = []
        for word in words:
            if word in ("&&", "||", "|", ";"):
                commands.append(current)
                current = []
            else:
                current.append(word)
        commands.append(current)
    return [c for c in commands if c]

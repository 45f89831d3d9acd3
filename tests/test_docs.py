"""The README and docs/ stay honest: the README is short, every relative link resolves (anchors
included), the README's test command is the one CI runs, and every command the README shows runs
and prints the lines quoted under it."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
CI_MARKER = "# --- the README's test command"
# Commands whose output is a measurement: only the first two fields of each quoted line are checked.
MEASURED = {"bench"}


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    text = heading.strip().lower().replace("`", "")
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text())
    return {slug(m.group(1)) for m in re.finditer(r"^#+\s+(.+)$", text, re.MULTILINE)}


def links(path: Path) -> list[str]:
    return LINK.findall(FENCE.sub("", path.read_text()))


def section(text: str, heading: str) -> str:
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end >= 0 else len(text)]


def test_slug_follows_githubs_rule():
    assert slug("Memory margins: what Algorithm 1's buffer buys") == "memory-margins-what-algorithm-1s-buffer-buys"
    assert slug("Run-to-completion batches (the batch-level engine)") == \
        "run-to-completion-batches-the-batch-level-engine"


def test_readme_reads_in_five_minutes():
    assert len(README.read_text().splitlines()) < 200


def test_readme_links_every_docs_file():
    linked = {(README.parent / link.split("#")[0]).resolve() for link in links(README)}
    assert [p.name for p in DOCS if p.resolve() not in linked] == []


@pytest.mark.parametrize("doc", [README, *DOCS], ids=lambda p: p.name)
def test_every_relative_link_resolves(doc):
    broken = []
    for link in links(doc):
        if re.match(r"[a-z]+:", link):
            continue  # an absolute URL (https:, mailto:)
        target, _, anchor = link.partition("#")
        path = (doc.parent / target).resolve() if target else doc
        if not path.exists():
            broken.append(f"{link}: no such file")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            broken.append(f"{link}: no heading #{anchor} in {path.name}")
    assert broken == []


def test_readme_test_command_is_the_one_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    ci_command = ci[ci.index(next(line for line in ci if line.startswith(CI_MARKER))) + 1]
    assert "python3 -m venv .venv" in ci and ". .venv/bin/activate" in ci
    setup = section(README.read_text(), "Set-up")
    commands = re.findall(r"^```bash\n(.+?)\n```", setup, re.MULTILINE)
    assert f"python3 -m venv .venv && . .venv/bin/activate && {ci_command}" in commands


def test_code_cites_only_docs_that_exist():
    """Docstrings and page text cite docs/ files (and their headings), never a design file outside the
    repository."""
    cited, stale = [], []
    for path in sorted(ROOT.glob("*.py")) + sorted(ROOT.glob("[a-z]*/**/*.py")):
        if ".venv" in path.parts or "tests" in path.parts:
            continue
        text = path.read_text()
        stale += [path.name] if re.search(r"DESIGN (section|§)", text) else []
        cited += [(path.name, m.group(1), m.group(2)) for m in re.finditer(r"docs/([\w-]+\.md)(?:#([\w-]+))?", text)]
    assert stale == []
    assert len(cited) >= 3
    for name, doc, anchor in cited:
        assert (ROOT / "docs" / doc).exists(), (name, doc)
        assert not anchor or anchor in anchors(ROOT / "docs" / doc), (name, doc, anchor)


def readme_commands() -> list[tuple[str, list[str]]]:
    """(command line, lines quoted under it) for every ``$ batchlab ...`` in the Commands section."""
    out: list[tuple[str, list[str]]] = []
    for block in re.findall(r"^```console\n(.*?)^```", section(README.read_text(), "Commands"), re.MULTILINE | re.DOTALL):
        for line in block.splitlines():
            if line.startswith("$ "):
                out.append((line[2:], []))
            else:
                out[-1][1].append(line)
    return out


def quoted_line_printed(quoted: str, printed: list[str], measured: bool) -> bool:
    if measured:
        return any(line.split()[:2] == quoted.split()[:2] for line in printed)
    if quoted.endswith("…"):
        return any(line.startswith(quoted[:-1].rstrip()) for line in printed)
    return quoted in printed


def test_a_quoted_line_matches_only_what_was_printed():
    printed = ["run 1  abc", "  requests         10 of 10 in 1.0 s"]
    assert quoted_line_printed("  requests         10 of 10 in 1.0 s", printed, measured=False)
    assert not quoted_line_printed("  requests         10 of 10 in 2.0 s", printed, measured=False)
    assert quoted_line_printed("  requests         10 of …", printed, measured=False)
    assert not quoted_line_printed("  requests         11 of …", printed, measured=False)
    assert quoted_line_printed("run 1  xyz", printed, measured=True)
    assert not quoted_line_printed("run 2  abc", printed, measured=True)


def test_readme_commands_run_and_print_what_is_quoted(tmp_path, monkeypatch):
    """Run in order on the fresh store every test has, in an empty folder (the files they write);
    ``batchlab app`` serves forever, so only its ``--help`` runs."""
    from batchlab.cli import cli

    monkeypatch.chdir(tmp_path)

    commands = readme_commands()
    assert len(commands) >= 12
    for command, quoted in commands:
        argv = shlex.split(command)
        assert argv[0] == "batchlab", command
        args = argv[1:] + (["--help"] if argv[1:] == ["app"] else [])
        res = CliRunner().invoke(cli, args, catch_exceptions=False)
        assert res.exit_code == 0, f"{command}: {res.output}"
        printed = [line.rstrip() for line in res.output.splitlines()]
        missing = [q for q in quoted if not quoted_line_printed(q.rstrip(), printed, argv[1] in MEASURED)]
        assert missing == [], f"{command} printed:\n{res.output}"

"""The documentation shows what the installed package does, and its links lead somewhere.

README's examples follow two formats, so that this module can run every one of them:

- a ```console block is a shell session: each ``$ `` line is run by bash, with the
  installed ``adder`` first on PATH and from an empty folder, and the lines after it,
  up to the next ``$ ``, are its output. A shown line starting with ``error: `` is
  expected on stderr (the rest, in order, on stdout), and the command must then exit
  non-zero; without one it must exit 0;
- a ```pycon block is a Python session (``>>> `` prompts), run as a doctest.

A ```bash block shows commands without their output and is not run; an ``adder`` line
there with an output-like comment (``# 13``) is refused, so no shown answer escapes
these checks.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
PAGES = [README, REPO / "CHANGELOG.md", *sorted((REPO / "docs").glob("**/*.md"))]
BIN = Path(sys.executable).parent  # the installed `adder` and its siblings live beside the interpreter

FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```\s*$", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)
SHOWN_OUTPUT = re.compile(r"^\s*adder\s.*#\s*[-\d{\[\"]")  # `adder "3+10"  # 13`: output shown untested


def blocks(path: Path, kind: str) -> list[str]:
    return [body for lang, body in FENCE.findall(path.read_text(encoding="utf-8")) if lang == kind]


def console_examples(path: Path) -> list[tuple[str, list[str]]]:
    """(command, shown output lines) for every ``$ `` line of every console block."""
    examples: list[tuple[str, list[str]]] = []
    for body in blocks(path, "console"):
        for line in body.splitlines():
            if line.startswith("$ "):
                examples.append((line[2:], []))
            elif examples:
                examples[-1][1].append(line)
            elif line.strip():
                raise AssertionError(f"{path.name}: console block starts with output, not a $ command: {line!r}")
    return examples


def run_shown(command: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "ADDER_MODEL"}  # a user's setting would change answers
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(
        ["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )


README_COMMANDS = console_examples(README)


def test_readme_shows_commands_with_their_output_and_a_python_session():
    """The formats above are in use: a README rewritten in another format fails here, not silently."""
    assert shutil.which("adder", path=str(BIN)), f"no installed `adder` beside {sys.executable}"
    assert len(README_COMMANDS) >= 5 and all(output for _, output in README_COMMANDS)
    assert any(command == "adder --list-models" for command, _ in README_COMMANDS)
    assert any(">>> " in body for body in blocks(README, "pycon"))


@pytest.mark.parametrize(("command", "shown"), README_COMMANDS, ids=[c for c, _ in README_COMMANDS])
def test_each_readme_command_prints_what_readme_shows(command, shown, tmp_path):
    result = run_shown(command, tmp_path)
    errors = [line for line in shown if line.startswith("error: ")]
    answers = [line for line in shown if not line.startswith("error: ")]
    assert result.stdout.splitlines() == answers, result.stderr
    assert result.stderr.splitlines() == errors
    assert (result.returncode != 0) == bool(errors), f"exit code {result.returncode}: {result.stderr}"


def test_the_readme_python_session_runs_as_shown(tmp_path):
    session = tmp_path / "readme_python.txt"
    session.write_text("\n".join(blocks(README, "pycon")), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "doctest", str(session)], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(REPO).as_posix() for p in PAGES])
def test_no_adder_output_is_shown_where_it_is_not_run(page):
    if not page.exists():
        pytest.skip(f"{page.name} does not exist")
    shown = [line for body in blocks(page, "bash") + blocks(page, "sh") for line in body.splitlines()]
    assert [line for line in shown if SHOWN_OUTPUT.match(line)] == [], "show output in a console block"


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*]|\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    prose = FENCE.sub("", path.read_text(encoding="utf-8"))
    return {slug(h) for h in HEADING.findall(prose)}


def links(path: Path) -> list[str]:
    prose = FENCE.sub("", path.read_text(encoding="utf-8"))
    prose = re.sub(r"`[^`\n]*`", "", prose)  # a link written inside code is an example, not a link
    return [target for target in LINK.findall(prose) if not re.match(r"^[a-z][a-z0-9+.-]*:", target)]


def test_the_documentation_pages_exist():
    for name in ("training", "model-format", "speed", "robustness", "web", "scale"):
        assert (REPO / "docs" / f"{name}.md").is_file(), f"docs/{name}.md is missing"
    assert (REPO / "LICENSE").is_file()


@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(REPO).as_posix() for p in PAGES])
def test_every_relative_link_points_to_a_file_that_exists(page):
    if not page.exists():
        pytest.skip(f"{page.name} does not exist")
    broken = []
    for target in links(page):
        file_part, _, anchor = target.partition("#")
        destination = (page.parent / file_part).resolve() if file_part else page
        if not destination.exists():
            broken.append(target)
        elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
            broken.append(f"{target} (no such heading)")
    assert broken == [], f"{page.name}: broken links"

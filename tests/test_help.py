"""Every command's --help, as a user on an 80-column terminal reads it."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

COMMANDS = {
    "adder": "from adder.command import run; run()",
    "adder serve": "from adder.command import run; run()",
    "adder-train": "from adder.commands.train import main; main()",
    "adder-eval": "from adder.commands.evaluate import main; main()",
    "adder-export": "from adder.commands.export import main; main()",
    "adder-plot": "from adder.commands.plot import main; main()",
}


def help_text(command: str, columns: int = 80) -> str:
    args = ["serve", "--help"] if command == "adder serve" else ["--help"]
    env = {**os.environ, "COLUMNS": str(columns), "TERMINAL_WIDTH": str(columns)}
    result = subprocess.run(
        [sys.executable, "-c", COMMANDS[command], *args], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_the_description_is_reflowed_to_the_terminal_not_broken_where_the_source_wraps(command):
    """A docstring wrapped at 88 columns, printed line for line on 80, left one word alone
    on a line ('last' of 'resumes from the last completed epoch')."""
    text = help_text(command)
    description = text.split("╭")[0].split("Usage:", 1)[1].split("\n", 1)[1]
    paragraphs = [p.splitlines() for p in re.split(r"\n[ \t]*\n", description) if p.strip()]
    assert paragraphs, text
    for lines in paragraphs:
        lines = [line.rstrip() for line in lines if line.strip()]
        assert all(len(line) > 55 for line in lines[:-1]), "\n".join(lines)  # every line but a paragraph's last is full
        assert all(len(line) <= 80 for line in lines)


def test_a_default_written_in_brackets_is_shown_not_taken_for_markup():
    text = " ".join(help_text("adder-train", columns=200).split())
    assert "(JAX): a number, or 'all'. [default: 1]" in text and "[default recipe: 24/24]" in text

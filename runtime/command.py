"""The `adder` command's entry point.

``adder "3+10"``, queries and nothing else, is what the command is run with most, and
it needs no option parsing: it is answered without importing typer and click, about
40 ms of a cold start whose floor (Python importing numpy and onnxruntime) is about
200 ms. Anything else, an option included, goes to the typer layer in adder.cli,
which answers plain queries through the same function. ``adder serve`` (that exact first
word, which no model accepts as a query) goes to the HTTP server's own typer command.
"""

from __future__ import annotations

import os
import sys

from .answer import OutputError

READS_NO_STDIN = {"--help", "--version", "--list-models", "--info"}  # these print and exit


def run() -> None:
    """The entry point: a reader that goes away (``adder ... | head -1``) or Ctrl-C ends it quietly;
    an output that cannot be written (closed, a full disk) is one error line and exit code 2."""
    try:
        dispatch()
    except BrokenPipeError:
        # Nobody reads the rest; send what Python would still flush at exit to /dev/null.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(141)  # 128 + SIGPIPE, as a shell reports a command killed by it
    except KeyboardInterrupt:
        sys.exit(130)
    except (OutputError, OSError) as exc:  # an OSError here: printing --info or --list-models, say
        reason = str(exc) if isinstance(exc, OutputError) else f"cannot write: {exc.strerror or type(exc).__name__}"
        sys.stderr.write(f"error: {reason}\n")
        if sys.stdout is not None:  # what is left in its buffer would fail again at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(2)


def dispatch() -> None:
    args = sys.argv[1:]
    if args[:1] == ["serve"]:  # only the exact first word: "serve" is no query any model accepts
        from .cli import serve_app

        run_typer(serve_app, args[1:], "adder serve")
        return
    if args and not any(arg.startswith("-") for arg in args):
        from .answer import answer_arguments

        # typer reads --model from ADDER_MODEL (and --engine from ADDER_ENGINE), an empty value counting as unset.
        environ = os.environ
        sys.exit(answer_arguments(args, environ.get("ADDER_MODEL") or None, engine=environ.get("ADDER_ENGINE") or None))
    may_read_stdin = "-" in args or all(arg.startswith("-") for arg in args)
    if may_read_stdin and not READS_NO_STDIN.intersection(args):  # see adder.lines.hold_sigterm
        from .lines import hold_sigterm

        hold_sigterm()
    from .cli import app

    run_typer(app, args, "adder")


def run_typer(app, args: list[str], name: str) -> None:
    """Run a typer app; a usage mistake (an unknown option, a value click cannot read) is one
    ``error:`` line naming the help to read, and exit code 2, not click's boxed message."""
    from typer.main import get_command

    try:
        code = get_command(app).main(args, prog_name=name, standalone_mode=False)
    except Exception as exc:
        if type(exc).__name__ == "Abort":  # click's word for Ctrl-C: exit 130 as everywhere else
            raise KeyboardInterrupt from None
        # click's UsageError (typer may carry its own copy of click, so matched by what it has)
        if getattr(exc, "exit_code", None) != 2 or not hasattr(exc, "format_message"):
            raise
        sys.stderr.write(f"error: {exc.format_message()} (see {name} --help)\n")
        sys.exit(2)
    sys.exit(code or 0)

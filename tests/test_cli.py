"""The `adder` command as a user meets it: a fresh process, arguments and stdin in, lines out."""

import json
import re

from tests.conftest import run_adder


def test_queries_print_one_answer_per_line():
    result = run_adder("3+10", "50+11")
    assert result.returncode == 0, result.stderr
    from adder import Adder

    adder = Adder()
    assert result.stdout.decode().splitlines() == [str(adder("3+10")), str(adder("50+11"))]


def test_bad_query_is_one_error_line_and_exit_code_1():
    result = run_adder("1000+1")
    assert result.returncode == 1
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "0..999" in lines[0]
    assert "Traceback" not in result.stderr.decode()


def test_stdin_gives_one_output_line_per_input_line_and_names_bad_lines():
    data = b"1+1\r\n\n1000+1\n2+2\n\xff\xfe+1\n3+3"  # CRLF, blank, out of range, bad UTF-8, no final newline
    result = run_adder("-", stdin=data)
    out = result.stdout.decode().split("\n")
    assert out[-1] == "" and len(out) - 1 == 6
    assert out[1] == "" and out[2] == "" and out[4] == ""
    assert out[0] and out[3] and out[5]
    errors = result.stderr.decode()
    assert "line 2: empty query" in errors and "line 3: " in errors and "line 5: invalid UTF-8" in errors
    assert result.returncode == 1


def test_piped_stdin_without_arguments_is_read():
    result = run_adder(stdin=b"3+10\n")
    assert result.returncode == 0 and result.stdout.decode().strip().isdigit()


def test_json_lines_carry_answers_and_errors():
    result = run_adder("--json", "-", stdin=b"3+10\nabc\n")
    rows = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert rows[0]["query"] == "3+10" and isinstance(rows[0]["answer"], int)
    assert rows[1]["query"] == "abc" and "unexpected character" in rows[1]["error"]
    assert result.returncode == 1


def test_info_prints_the_config_as_json():
    info = json.loads(run_adder("--info").stdout)
    for key in ("min_terms", "max_terms", "min_operand", "max_operand", "operators"):
        assert key in info
    assert info["max_operand"] == 999


def test_version_and_list_models():
    assert run_adder("--version").stdout.decode().startswith("adder ")
    listing = run_adder("--list-models").stdout.decode().splitlines()
    assert len(listing) == 5  # the batch and single graphs beside them are not models of their own
    assert listing[0].startswith("arith: 2-3 terms in 0..99, operators +-, brackets; LSTM ")
    assert "2 terms: 100.0000% (exhaustive)" in listing[0] and "exact-match 100.0000% (exhaustive)" in listing[0]
    assert listing[1].startswith("calc: 2 terms in 0..99, operators +-*, brackets; LSTM ")
    assert listing[2].startswith("default: 2 terms in 0..999") and "exact-match 100.0000% (exhaustive)" in listing[2]
    assert listing[3].startswith("long: 2 terms of up to 1,000 digits, operators +; LSTM 8, ")
    assert listing[4].startswith("wide: 2 terms in 0..9999999999, operators +; LSTM ")
    # the verdict that ended its run: every suite case, and pairs drawn afresh for that check
    verdict = "exact-match 100.0000% (suites of 24,093,649 fixed cases, plus 10,000,000 uniform pairs drawn afresh"
    assert verdict in listing[4]
    # the size each record holds: layers, and parameters where the record counts them
    for line in listing[:3] + listing[4:]:  # long's record holds a proof, not an evaluation (test_pairs.py)
        assert re.search(r"; LSTM \d+/\d+, [\d,]+ parameters; exact-match 100\.0000% \((exhaustive|suites)", line), line
    assert run_adder("--model", "wide", "9999999999+1").stdout.decode() == "10000000000\n"


def test_list_models_reads_sizes_only_from_a_well_formed_record():
    from adder.cli import size_of

    assert size_of({"layers": {"encoder": [24], "decoder": [24]}, "parameters": 8556}) == (
        "LSTM 24/24, 8,556 parameters; "
    )
    assert size_of({"layers": {"encoder": [64, 64], "decoder": [32]}}) == "LSTM 64,64/32; "
    for hostile in ({}, {"layers": "24/24"}, {"layers": {"encoder": [True], "decoder": [1]}}, {"parameters": "9"}):
        assert size_of(hostile) == ""


def test_the_arith_model_answers_brackets_and_negative_results():
    result = run_adder("--model", "arith", "(12-7)+30", "99-99-99", "5-9", "(0-99)", "3+10")
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().split() == ["35", "-99", "-4", "-99", "13"]
    refused = run_adder("--model", "arith", "1+2+3+4")
    assert refused.returncode == 1 and "this model adds 2 to 3 terms; got 4" in refused.stderr.decode()


def test_missing_model_is_a_one_line_error(tmp_path):
    result = run_adder("--model", str(tmp_path / "nope.onnx"), "1+1")
    assert result.returncode == 2
    assert result.stderr.decode().count("\n") == 1 and "no such file" in result.stderr.decode()


def test_model_from_environment_variable(tmp_path):
    result = run_adder("1+1", env={"ADDER_MODEL": str(tmp_path / "env.onnx")})
    assert result.returncode == 2 and "env.onnx" in result.stderr.decode()


class _Terminal:
    def __init__(self):
        self.text = ""

    def isatty(self):
        return True

    def write(self, text):
        self.text += text

    def flush(self):
        pass


class _Source:
    size = 1000
    bytes_read = 500


def test_progress_bar_is_drawn_only_on_a_terminal_for_large_input(monkeypatch):
    from adder import answer as cli

    terminal = _Terminal()
    monkeypatch.setattr(cli.sys, "stderr", terminal)
    progress = cli.Progress(_Source())
    progress.update(10)  # small input: nothing drawn
    assert terminal.text == ""
    progress.update(cli.PROGRESS_AFTER * 2)
    progress.close()
    assert (
        "50%" in terminal.text and f"{cli.PROGRESS_AFTER * 2:,} lines" in terminal.text and terminal.text.endswith("\n")
    )


def test_no_progress_bar_when_stderr_is_not_a_terminal(monkeypatch):
    from adder import answer as cli

    progress = cli.Progress(_Source())
    assert not progress.enabled or cli.sys.stderr.isatty()


def test_plain_queries_skip_the_option_parser_and_answer_the_same():
    """`adder Q...` is answered without importing typer (cold start); with an option it goes
    through typer, and both must print, complain and exit alike."""
    import subprocess
    import sys

    code = (
        "import sys; from adder import command; sys.argv = ['adder', '3+10', '1000+1']\n"
        "try:\n    command.run()\nexcept SystemExit as exit:\n"
        "    print(exit.code, 'typer' in sys.modules, 'click' in sys.modules, file=sys.stderr)"
    )
    plain = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert plain.stderr.splitlines()[-1] == "1 False False"
    fast, parsed = run_adder("3+10", "1000+1"), run_adder("--model", "default", "3+10", "1000+1")
    assert (fast.returncode, fast.stdout, fast.stderr) == (parsed.returncode, parsed.stdout, parsed.stderr)
    assert fast.stdout.decode().splitlines()[1] == "" and fast.returncode == 1


def test_model_from_environment_variable_on_both_paths(tmp_path):
    env = {"ADDER_MODEL": str(tmp_path / "env.onnx")}
    fast, parsed = run_adder("1+1", env=env), run_adder("--json", "1+1", env=env)
    assert fast.returncode == parsed.returncode == 2
    assert fast.stderr == parsed.stderr and "env.onnx" in fast.stderr.decode()
    assert run_adder("1+1", env={"ADDER_MODEL": ""}).stdout.decode().strip() == "2"

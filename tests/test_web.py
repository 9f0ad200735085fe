"""The page in web/ gives the same answers and the same refusals as the Python runtime.

Runs in headless Chromium (Debian's chromium, driven by playwright, no browser
download) against web/dist served from localhost, with every other address refused.
Needs `npm --prefix web ci && npm --prefix web run build`; skipped without chromium,
playwright or the build, unless ADDER_WEB_REQUIRED=1 (CI), where that is a failure.
"""

from __future__ import annotations

import functools
import http.server
import os
import random
import threading
from pathlib import Path

import numpy as np
import pytest

from adder import Adder, QueryError
from adder.eval.draws import sample_expressions

REPO = Path(__file__).resolve().parents[1]
DIST = REPO / "web" / "dist"
CHROMIUM = Path("/usr/bin/chromium")
REQUIRED = os.environ.get("ADDER_WEB_REQUIRED") == "1"
CHUNK = 50_000


def missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install playwright)"
    if not CHROMIUM.exists():
        return "chromium is not installed (apt-get install chromium)"
    if not (DIST / "index.html").exists():
        return "web/dist is not built (npm --prefix web ci && npm --prefix web run build)"
    return None


if missing():
    if REQUIRED:
        raise RuntimeError(f"browser tests required, but {missing()}")
    pytest.skip(missing(), allow_module_level=True)


class Quiet(http.server.SimpleHTTPRequestHandler):
    extensions_map = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".mjs": "text/javascript",
        ".js": "text/javascript",
        ".wasm": "application/wasm",
        ".json": "application/json",
    }

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    handler = functools.partial(Quiet, directory=str(DIST))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def page(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        context = browser.new_context()
        refused = []

        def offline(route):  # the network is cut off: only the page's own server answers
            if route.request.url.startswith(server):
                route.continue_()
            else:
                refused.append(route.request.url)
                route.abort()

        context.route("**/*", offline)
        page = context.new_page()
        errors = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.goto(f"{server}/index.html")
        page.wait_for_function("window.adderPage !== undefined")
        page.evaluate("window.adderPage.ready")
        page.errors, page.refused = errors, refused
        yield page
        browser.close()


def browser_results(page, model: str, queries: list[str]) -> list:
    """The page's answers: an int, or the error message, per query."""
    out = []
    for start in range(0, len(queries), CHUNK):
        rows = page.evaluate(
            "([name, qs]) => window.adderPage.model(name).then((a) => a.results(qs))",
            [model, queries[start : start + CHUNK]],
        )
        out += [row["answer"] if "answer" in row else row["error"] for row in rows]
    return out


def python_results(model: str, queries: list[str]) -> list:
    return [str(r) if isinstance(r, QueryError) else r for r in Adder(model).results(queries)]


def assert_same(model: str, queries: list[str], page) -> None:
    got, want = browser_results(page, model, queries), python_results(model, queries)
    differ = [(q, w, g) for q, w, g in zip(queries, want, got) if w != g]
    assert len(got) == len(want) and not differ, f"{len(differ)} differ, e.g. {differ[:5]}"


def test_typing_a_query_and_enter_shows_the_answer_and_bad_queries_show_an_error(page):
    box = page.locator("input").first
    for query, answer in [("50+11", "61"), ("999+999", "1998")]:
        box.fill(query)
        box.press("Enter")
        page.wait_for_function(f"document.getElementById('answer').textContent === '{answer}'")
        assert page.text_content("#error") == ""
        assert page.text_content("#meta").endswith(" ms")
    box.fill("1000+1")
    box.press("Enter")
    page.wait_for_function("document.getElementById('error').textContent !== ''")
    error = page.text_content("#error")
    assert error == "error: operand 1000 is outside this model's range 0..999"
    assert page.text_content("#answer") == ""
    page.check("input[value=arith]")
    box.fill("(12-7)+30")
    box.press("Enter")
    page.wait_for_function("document.getElementById('answer').textContent === '35'")
    if os.environ.get("ADDER_WEB_SCREENSHOT"):
        page.check("input[value=default]")
        box.fill("50+11")
        box.press("Enter")
        page.wait_for_function("document.getElementById('answer').textContent === '61'")
        page.screenshot(path=os.environ["ADDER_WEB_SCREENSHOT"])
    assert page.errors == [] and page.refused == []


def test_every_default_query_gets_the_runtimes_answer(page):
    queries = [f"{a}+{b}" for a in range(1000) for b in range(1000)]
    assert_same("default", queries, page)


def test_every_calc_query_gets_the_runtimes_answer(page):
    from adder.eval.domain import all_expressions

    queries = [e.text() for chunk in all_expressions(Adder("calc").config) for e in chunk]
    assert len(queries) == 60_000
    assert_same("calc", queries, page)


def typed_in(page, model: str, query: str, answer: str) -> str:
    """Select ``model``, type ``query`` and Enter, wait for ``answer``; the domain the page shows
    (the default selected again after)."""
    box = page.locator("input").first
    page.check(f"input[value={model}]")
    box.fill(query)
    box.press("Enter")
    page.wait_for_function(f"document.getElementById('answer').textContent === '{answer}'")
    domain = page.text_content("#domain")
    page.check("input[value=default]")
    return domain


def test_calc_is_selectable_and_multiplies(page):
    assert typed_in(page, "calc", "12*34", "408").startswith("calc: 2 terms in 0..99, operators +-*")


def test_wide_is_selectable_and_its_verification_cases_get_the_runtimes_answers(page):
    from adder.eval.suites import adderboard_pairs, carry_chain_pairs, repdigit_pairs

    domain = typed_in(page, "wide", "9999999999+1", "10000000000")
    assert domain.startswith("wide: 2 terms in 0..9999999999, operators +")
    # AdderBoard's 10,010 cases, every carry-chain case and every repdigit pair: 135,953 queries
    pairs = np.concatenate([adderboard_pairs(), carry_chain_pairs(10), repdigit_pairs(10)])
    assert_same("wide", [f"{a}+{b}" for a, b in pairs.tolist()], page)


def in_page(onnx_path, name: str):
    """A model where the page finds models, as the build writes them (its .onnx, and its config
    without the record); removed afterwards."""
    import json

    placed = [DIST / "models" / f"{name}.onnx", DIST / "models" / f"{name}.json"]
    placed[0].write_bytes(onnx_path.read_bytes())
    config = Adder(onnx_path).config.to_dict()
    config.pop("training")
    placed[1].write_text(json.dumps(config))
    yield onnx_path
    for path in placed:
        path.unlink(missing_ok=True)


@pytest.fixture
def ordinal_in_page(tiny_ordinal_model):
    yield from in_page(tiny_ordinal_model[1], "test-ordinal")


def test_an_ordinal_model_gets_the_runtimes_answers_on_every_query(page, ordinal_in_page):
    queries = [f"{a}+{b}" for a in range(10) for b in range(10)] + ["10+1", "3+", "٣+4"]
    got = browser_results(page, "test-ordinal", queries)
    want = [str(r) if isinstance(r, QueryError) else r for r in Adder(ordinal_in_page).results(queries)]
    assert got == want


@pytest.fixture
def wide_in_page(tiny_wide_model):
    yield from in_page(tiny_wide_model[1], "test-wide")


def test_ten_digit_operands_get_the_runtimes_answers_and_refusals(page, wide_in_page):
    from tests.test_suites import TEN_DIGIT_BAD, TEN_DIGIT_QUERIES

    rng = random.Random(2025)
    queries = (
        TEN_DIGIT_QUERIES
        + TEN_DIGIT_BAD
        + [f"{rng.randint(0, 10**10 - 1)}+{rng.randint(0, 10**10 - 1)}" for _ in range(2000)]
    )
    got = browser_results(page, "test-wide", queries)
    want = [str(r) if isinstance(r, QueryError) else r for r in Adder(wide_in_page).results(queries)]
    assert got == want


def test_a_seeded_arith_sample_gets_the_runtimes_answers(page):
    config = Adder("arith").config
    expressions = sample_expressions(config, 100_000, np.random.default_rng(2026), small_share=0.25)
    assert_same("arith", [e.text() for e in expressions], page)


BAD = [
    "",
    " ",
    "\t",
    "3+",
    "+3",
    "3++4",
    "3 4",
    "3+-4",
    "-3+4",
    "3.5+1",
    "1e3+1",
    "1,000+1",
    "3_0+1",
    "0x10+1",
    "٣+4",
    "３+4",
    "²+1",
    "3+4\n",
    "3+4\r",
    "\x00",
    "3\u200b+4",
    "é+1",
    "😀+1",
    "3/4",
    "3×4",
    "3^2",
    "3%2",
    "1000+1",
    "999+1000",
    "1+1+1",
    "1",
    "99999999999999999999+1",
    "1+99999999999999999999999",
    "(1+2)",
    "((1+2))",
    "(1)+2",
    "(1+2",
    "1+2)",
    ")1+2(",
    "1+(2)",
    "1+()",
    "()",
    "'",
    '"',
    "\\",
    "'\"",
    "a+b",
    "3+10 ",
    " 3 + 10 ",
    "007+3",
    "3\t+\t10",
    "1" * 257,
    "1" * 256,
    "1+" + "1" * 254,
    "12-7+30",
    "(12-7)+30",
    "99-99-99",
    "((1+2)-3)",
    "4-(5+6)",
    "1+(2+3",
    "1-(2-(3))",
    "(1+2)+(3+4)",
    "1--2",
    "1-+2",
    "(-1)+2",
    "100+1",
    "1+2*3",
    "1*2",
    "1 + ( 2 - 3 )",
    "((1-2))+3",
    "1+2+3+4",
]


def random_queries(count: int, seed: int) -> list[str]:
    """Strings from the characters a careless or hostile user types: digits, operators,
    brackets, spaces, look-alike digits, quotes, escapes, astral and invisible characters."""
    pool = list("0123456789+-*/()  \t.,e_x") + ["٣", "３", "²", "é", "😀", "\u200b", "'", '"', "\\", "\x7f", "\n"]
    rng = random.Random(seed)
    return ["".join(rng.choice(pool) for _ in range(rng.randint(0, 14))) for _ in range(count)]


@pytest.mark.parametrize("model", ["default", "arith"])
def test_bad_and_odd_queries_get_the_same_refusals_word_for_word(page, model):
    assert_same(model, BAD + random_queries(20_000, seed=7), page)


def test_long_is_selectable_and_its_long_sums_get_the_runtimes_answers_and_refusals(page):
    domain = typed_in(page, "long", "9" * 100 + "+1", "1" + "0" * 100)
    assert domain.startswith("long: 2 terms of up to 1,000 digits, operators +")
    rng = random.Random(3)
    queries = [f"{rng.randrange(10**d)}+{rng.randrange(10**e)}" for d in (1, 10, 20, 100, 999, 1000) for e in (1, 100, 1000)]
    queries += ["9" * 1000 + "+1", "1" * 1001 + "+1", "1+2+3", "1" + " " * 2100 + "+1", "12-3", "", " 7 + 8 "]
    got = page.evaluate(
        "(qs) => window.adderPage.model('long').then((a) => a.results(qs))"
        ".then((rs) => rs.map((r) => ('answer' in r ? String(r.answer) : r.error)))",
        queries,
    )
    assert got == [str(r) for r in Adder("long").results(queries)]

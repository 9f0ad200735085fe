"""A long fuzz run of the query parser, by hand (not collected by pytest, not in CI).

    python tests/fuzz_parser.py --examples 200000

Feeds arbitrary text, arbitrary bytes decoded as `adder -` decodes them, and
single-character mutations of valid queries to the parser. The properties: the
parser raises nothing but QueryError, and whatever it accepts is exactly two
ASCII-digit terms in range joined by '+', answered by the default model
(which must then also be the true sum). Prints how many inputs were tried and
how many were accepted, refused or found wrong.
"""

from __future__ import annotations

import argparse
import re
import time
from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adder import Adder, QueryError

ACCEPTED = re.compile(r"[ \t]*([0-9]+)[ \t]*\+[ \t]*([0-9]+)[ \t]*", re.ASCII)


def queries() -> st.SearchStrategy[str]:
    valid = st.builds(lambda a, b: f"{a}+{b}", st.integers(0, 999), st.integers(0, 999))
    mutated = st.builds(
        lambda q, i, c, mode: q[:i] + c + q[i + (mode == "replace") :],
        valid,
        st.integers(0, 7),
        st.characters(),
        st.sampled_from(["insert", "replace"]),
    )
    raw = st.binary(max_size=24).map(lambda b: b.decode("utf-8", errors="surrogateescape"))
    return st.one_of(st.text(max_size=24), raw, mutated, valid)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=100_000)
    args = parser.parse_args()
    adder = Adder()
    seen: Counter[str] = Counter()
    problems: list[str] = []

    @settings(max_examples=args.examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(queries())
    def check(query: str) -> None:
        seen["tried"] += 1
        try:
            answer = adder(query)
        except QueryError:
            seen["refused"] += 1
            return
        except Exception as exc:  # the property under test: nothing else may escape
            problems.append(f"{query!r}: {type(exc).__name__}: {exc}")
            return
        seen["accepted"] += 1
        match = ACCEPTED.fullmatch(query)
        if not match or not all(int(t) <= 999 for t in match.groups()):
            problems.append(f"{query!r}: accepted but outside the grammar")
        elif answer != int(match[1]) + int(match[2]):
            problems.append(f"{query!r}: answered {answer}, true sum {int(match[1]) + int(match[2])}")

    started = time.perf_counter()
    check()
    seconds = time.perf_counter() - started
    print(
        f"tried {seen['tried']:,} inputs in {seconds:.0f} s: {seen['accepted']:,} accepted, "
        f"{seen['refused']:,} refused with QueryError, {len(problems)} problems"
    )
    for problem in problems[:20]:
        print("  " + problem)


if __name__ == "__main__":
    main()

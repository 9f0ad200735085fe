"""benchmarks/error_profile.py: where a model's wrong and unsure answers fall."""

import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "error_profile.py"


def test_the_profile_counts_every_query_and_its_unsure_answers():
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "default", "--sample", "20000", "--seed", "3"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    carried = re.findall(r"^\| (\d+) \| ([\d,]+) \| ([\d,]+) \|", result.stdout.split("digits that carry")[1], re.M)
    assert sum(int(n.replace(",", "")) for _, n, _ in carried) == 20_000
    assert {int(k) for k, _, _ in carried} == {0, 1, 2, 3}  # three-digit sums carry out of 0 to 3 digits
    assert "in all: 0 wrong of 20,000" in result.stdout  # the shipped default is exact
    unsure = re.search(r"margin below 0.5 / 0.8 / 0.95\): ([\d,]+) / ([\d,]+) / ([\d,]+)$", result.stdout, re.M)
    counts = [int(n.replace(",", "")) for n in unsure.groups()]
    assert counts == sorted(counts) and 0 < counts[-1] < 20_000


def test_min_carries_needs_a_sample():
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "default", "--min-carries", "2"], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 1 and result.stderr.strip().startswith("error: --min-carries needs")

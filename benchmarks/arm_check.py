"""Fixed query sets answered by `adder -` on one machine and compared with another's: the ARM checks.

    python benchmarks/arm_check.py write DIR --set arm64     # queries and Python's answers (needs numpy + adder)
    python benchmarks/arm_check.py answer DIR x86            # `adder --model M -` for each set: DIR/M.x86
    python benchmarks/arm_check.py startup --runs 5          # cold start of `adder 3+10`: wall, CPU, peak RSS
    python benchmarks/arm_check.py compare DIR arm64 x86     # table: wrong vs Python, different from x86
    python benchmarks/arm_check.py cpu                       # the ARM features this CPU offers (SVE, NEON...)

`.ci/arm` runs `write` and `answer DIR x86` here, `answer` and `startup` inside an
emulated ARM userland (where only the standard library and the installed package are
needed), then `compare`. The sets:

- arm64: every `default` query (1,000,000) and every `calc` query (60,000); 5,000
  `arith` queries drawn uniformly over its domain (numpy seed 46); `wide`: 150 pairs of
  each verification suite (AdderBoard's, uniform, carry chains, repdigits, at most two
  nonzero digits: evenly spaced through each) and 300 of each adversarial family
  (benchmarks/adversarial_families.py, seed 46), the families its training found hardest:
  1,800 pairs. (Emulated, onnxruntime answers a few hundred arith or wide queries a second.)
- armhf: every `default` query, answered by the numpy engine (no onnxruntime there).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

SEED = 46
PER_FAMILY = 150
ARITH_SAMPLE = 5_000
SETS = {"arm64": ("default", "calc", "arith", "wide"), "armhf": ("default",)}


def sampled(name: str):
    """(query lines, true values) for one model of a set."""
    import numpy as np

    from adder import Adder
    from adder.grammar import shape_text, shape_values
    from adder.eval import suites
    from adder.eval.domain import domain_blocks, sampled_blocks

    config = Adder(name).config
    if name == "wide":
        sys.path.insert(0, str(Path(__file__).parent))
        from adversarial_families import families

        pairs = []
        for _label, (_size, blocks) in suites.suite_blocks(config, seed=suites.UNIFORM_SEED).items():
            every = np.concatenate([terms for _shape, terms in blocks])
            pairs.append(every[np.linspace(0, len(every) - 1, PER_FAMILY).astype(np.int64)])
        for a, b in families(config, PER_FAMILY, np.random.default_rng(SEED)).values():
            pairs.append(np.stack([a, b], axis=1))
        terms = np.concatenate(pairs)
        return [f"{a}+{b}" for a, b in terms.tolist()], (terms[:, 0] + terms[:, 1]).tolist()
    if config.domain_size <= 1_000_000:
        walk = domain_blocks(config)
    else:
        walk = sampled_blocks(config, ARITH_SAMPLE, np.random.default_rng(SEED))
    lines, values = [], []
    for shape, terms in walk:
        template = shape_text(shape)
        lines += [template.format(*row) for row in terms.tolist()]
        values += shape_values(shape, terms).tolist()
    return lines, values


def write(folder: Path, which: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in SETS[which]:
        lines, values = sampled(name)
        (folder / f"{name}.queries").write_text("".join(line + "\n" for line in lines))
        (folder / f"{name}.python").write_text("".join(f"{value}\n" for value in values))
        print(f"{name}: {len(lines):,} queries")


def answer(folder: Path, label: str, engine: str | None) -> None:
    """Each set's queries through `adder --model NAME -`; answers in NAME.LABEL, rates in rates.LABEL.json."""
    command = [shutil.which("adder") or "adder"] + (["--engine", engine] if engine else [])
    rates = {}
    for queries in sorted(folder.glob("*.queries")):
        name = queries.stem
        started = time.perf_counter()
        with open(queries) as source, open(folder / f"{name}.{label}", "w") as out:
            done = subprocess.run([*command, "--model", name, "-"], stdin=source, stdout=out)
        seconds = time.perf_counter() - started
        count = sum(1 for _ in open(queries))
        rates[name] = {"queries": count, "seconds": round(seconds, 1), "exit": done.returncode}
        print(f"{name}: {count:,} queries in {seconds:.1f} s ({count / seconds:,.0f}/s), exit {done.returncode}")
    (folder / f"rates.{label}.json").write_text(json.dumps(rates, indent=1))


def startup(runs: int, engine: str | None) -> None:
    """`adder 3+10` from a new process, ``runs`` times after one more not counted: medians of wall and
    CPU time (user and system), and the largest peak RSS."""
    command = [shutil.which("adder") or "adder"] + (["--engine", engine] if engine else []) + ["3+10"]
    walls, cpus, peaks = [], [], []
    subprocess.run(command, stdout=subprocess.DEVNULL, check=True)  # once first: writes Python's bytecode caches
    for _ in range(runs):
        started = time.perf_counter()
        child = subprocess.Popen(command, stdout=subprocess.PIPE)
        output = child.stdout.read()
        _pid, status, usage = os.wait4(child.pid, 0)
        walls.append(time.perf_counter() - started)
        cpus.append(usage.ru_utime + usage.ru_stime)
        peaks.append(usage.ru_maxrss)  # KiB on Linux; under qemu user-mode it counts the emulator too
        if output.strip() != b"13" or status != 0:
            raise SystemExit(f"error: adder 3+10 printed {output!r} with status {status}")
    figures = {
        "runs": runs,
        "wall_s": round(statistics.median(walls), 3),
        "cpu_s": round(statistics.median(cpus), 3),
        "peak_rss_mib": round(max(peaks) / 1024, 1),
    }
    print(json.dumps(figures))


# AT_HWCAP bits the kernels onnxruntime and numpy pick between look at (Linux's asm/hwcap.h).
HWCAP_BITS = {
    "aarch64": {1 << 1: "asimd", 1 << 20: "asimddp", 1 << 22: "sve"},
    "arm": {1 << 12: "neon", 1 << 16: "vfpv4", 1 << 17: "idiva"},
}
HWCAP2_BITS = {"aarch64": {1 << 1: "sve2", 1 << 23: "sme"}, "arm": {}}


def cpu() -> None:
    """What this process's CPU offers, from the auxiliary vector (which qemu user-mode writes for its guest)."""
    import platform
    import struct

    words = "<QQ" if sys.maxsize > 2**32 else "<II"
    aux = dict(struct.iter_unpack(words, Path("/proc/self/auxv").read_bytes()))
    arch = "aarch64" if platform.machine() == "aarch64" else "arm" if platform.machine().startswith("arm") else ""
    if not arch:
        print(f"{platform.machine()}: no ARM feature bits to read")
        return
    shown = [name if aux.get(16, 0) & bit else f"no {name}" for bit, name in HWCAP_BITS[arch].items()]
    shown += [name if aux.get(26, 0) & bit else f"no {name}" for bit, name in HWCAP2_BITS[arch].items()]
    print(", ".join(shown))


def compare(folder: Path, label: str, against: str) -> int:
    """One row per set: answers wrong against Python's arithmetic, and different from ``against``'s."""
    rates = json.loads((folder / f"rates.{label}.json").read_text())
    print(f"| model | queries | wrong (vs Python) | different from {against} | {label} queries/s |")
    print("| --- | ---: | ---: | ---: | ---: |")
    bad = 0
    for queries in sorted(folder.glob("*.queries")):
        name = queries.stem
        truth = (folder / f"{name}.python").read_text().splitlines()
        mine = (folder / f"{name}.{label}").read_text().splitlines()
        theirs = (folder / f"{name}.{against}").read_text().splitlines()
        missing = len(truth) - len(mine)
        wrong = sum(a != b for a, b in zip(mine, truth)) + max(missing, 0)
        differ = sum(a != b for a, b in zip(mine, theirs)) + abs(len(mine) - len(theirs))
        rate = rates[name]["queries"] / max(rates[name]["seconds"], 1e-9)
        print(f"| `{name}` | {len(truth):,} | {wrong:,} | {differ:,} | {rate:,.0f} |")
        bad += wrong + differ + (rates[name]["exit"] != 0)
    return 1 if bad else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("write", help="write each model's queries and Python's answers")
    p.add_argument("folder", type=Path)
    p.add_argument("--set", choices=sorted(SETS), default="arm64")
    p = commands.add_parser("answer", help="answer every set in FOLDER with `adder -`")
    p.add_argument("folder", type=Path)
    p.add_argument("label")
    p.add_argument("--engine", choices=["onnxruntime", "numpy"])
    p = commands.add_parser("startup", help="time `adder 3+10` from a cold process")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--engine", choices=["onnxruntime", "numpy"])
    commands.add_parser("cpu", help="print the ARM CPU features this process sees")
    p = commands.add_parser("compare", help="compare LABEL's answers with Python's and AGAINST's")
    p.add_argument("folder", type=Path)
    p.add_argument("label")
    p.add_argument("against")
    args = parser.parse_args()
    if args.command == "write":
        write(args.folder, args.set)
    elif args.command == "answer":
        answer(args.folder, args.label, args.engine)
    elif args.command == "cpu":
        cpu()
    elif args.command == "startup":
        startup(args.runs, args.engine)
    else:
        return compare(args.folder, args.label, args.against)
    return 0


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crash under emulation leaves no core file
    sys.exit(main())

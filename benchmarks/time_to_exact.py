"""Time to exact, from scratch: run a recipe under several seeds, one after another, and
print a table of epochs, seconds (training and checks) and the final check of each run.

    python benchmarks/time_to_exact.py --recipe default --seeds 0 1 2
    python benchmarks/time_to_exact.py --recipe arith --seeds 0 --folder runs/tte

Each run is `adder-train --recipe NAME --seed S --out FOLDER/NAME-sS.keras` as a user
types it (needs the train extra); its record is read back for the figures. A run that
is already complete in FOLDER is read, not repeated. Run it on a machine with nothing
else running: the seconds are wall-clock.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(recipe: str, seed: int, folder: Path, extra: list[str]) -> dict:
    out = folder / f"{recipe}-s{seed}.keras"
    record = out.with_suffix(".json")
    command = ["adder-train", "--recipe", recipe, "--seed", str(seed), *extra, "--out", str(out)]
    beside = Path(sys.executable).with_name("adder-train")  # the environment this script runs in
    program = [str(beside)] if beside.exists() else command[:1]
    wall = None
    if not (record.exists() and not out.with_name(out.name + ".ckpt").exists()):
        started = time.perf_counter()
        with open(out.with_suffix(".log"), "w") as log:
            subprocess.run([*program, *command[1:]], stdout=log, stderr=subprocess.STDOUT, check=False)
        wall = time.perf_counter() - started
    training = json.loads(record.read_text())["training"]
    history = training["history"]
    evaluation = training.get("evaluation", {})
    return {
        "recipe": recipe,
        "seed": seed,
        "parameters": training.get("parameters"),
        "epochs": max(h["epoch"] for h in history),
        "cycles": max(h.get("cycle", 1) for h in history),
        "train_seconds": training["train_seconds"],
        "check_seconds": round(sum(h.get("full_check_seconds", 0) for h in history), 1),
        "wall_seconds": round(wall, 1) if wall else None,
        "exact": training.get("exact"),
        "wrong": evaluation.get("wrong"),
        "total": evaluation.get("total"),
        "command": " ".join(command),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="default")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--folder", type=Path, default=None, help="where the runs go (default: a temporary folder)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args, extra = parser.parse_known_args()
    folder = args.folder or Path(tempfile.mkdtemp(prefix="tte-"))
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    print("| recipe | seed | parameters | epochs | cycles | seconds to exact (checks) | final check |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for seed in args.seeds:
        row = run(args.recipe, seed, folder, extra)
        rows.append(row)
        verdict = f"{row['wrong']:,} wrong of {row['total']:,}" if row["total"] else "not checked"
        print(
            f"| {row['recipe']} | {seed} | {row['parameters']:,} | {row['epochs']} | {row['cycles']} | "
            f"{row['train_seconds']:,.0f} ({row['check_seconds']:,.0f}) | {verdict} |",
            flush=True,
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    sys.exit(0 if all(r["exact"] for r in rows) else 1)


if __name__ == "__main__":
    main()

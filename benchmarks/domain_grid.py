"""Own domains, unattended: `adder-train` with only domain options on a grid of domains, one
after another, and a table of what each derived, how long it took and its final check.

    python benchmarks/domain_grid.py --folder runs/grid            # every domain, resumable
    python benchmarks/domain_grid.py --folder runs/grid --only 0 3  # some of them

Each run is `adder-train DOMAIN --out FOLDER/NAME.keras` exactly as a user types it, with
no other option (needs the train extra); its record is read back for the figures. A run
already complete in FOLDER is read, not repeated; an unfinished one resumes from its
checkpoint. The seconds are the record's (training and checks), on whatever else runs.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

DOMAINS = [
    ("0..9", "--largest 9"),
    ("0..10", "--largest 10"),
    ("0..99", "--largest 99"),
    ("0..99 +-", "--largest 99 --ops +-"),
    ("0..99 *", "--largest 99 --ops *"),
    ("3 terms 0..9", "--terms 3 --largest 9"),
    ("2-3 terms 0..9 +- ()", "--terms 2-3 --largest 9 --ops +- --brackets"),
    ("0..19 +-* ()", "--largest 19 --ops +-* --brackets"),
    ("3 terms 0..49", "--terms 3 --largest 49"),
    ("0..999 +-", "--largest 999 --ops +-"),
    ("0..9999", "--largest 9999"),
    # held out: no run of these was looked at while the rule was fitted
    ("0..50 -", "--largest 50 --ops -"),
    ("4 terms 0..9 +-", "--terms 4 --largest 9 --ops +-"),
    ("0..199 + ()", "--largest 199 --brackets"),
]


def run(name: str, options: str, folder: Path) -> dict:
    out = folder / (name.replace(" ", "_").replace("..", "-").replace("*", "x").replace("()", "br") + ".keras")
    record = out.with_suffix(".json")
    done = record.exists() and not out.with_name(out.name + ".ckpt").exists()
    beside = Path(sys.executable).with_name("adder-train")  # the environment this script runs in
    if not done:
        with open(out.with_suffix(".log"), "a") as log:
            subprocess.run([str(beside), *shlex.split(options), "--out", str(out)], stdout=log, stderr=subprocess.STDOUT)
    if not record.exists():
        return {"domain": name, "options": options, "exact": None}
    training = json.loads(record.read_text())["training"]
    evaluation = training.get("evaluation", {})
    first = out.with_suffix(".log").read_text().splitlines()[0] if out.with_suffix(".log").exists() else ""
    return {
        "domain": name,
        "options": options,
        "queries": None,
        "arch": training["arch"],
        "grew": [step["arch"] for step in training.get("growth", [])],
        "parameters": training["parameters"],
        "epochs": sum(step["epochs"] for step in training.get("growth", []))
        + max(h["epoch"] for h in training["history"]),
        "seconds": training["train_seconds"],
        "exact": training["exact"],
        "check": f"{evaluation.get('wrong'):,} wrong of {evaluation.get('total'):,} ({evaluation.get('method')})",
        "derived": first,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", type=Path, required=True)
    parser.add_argument("--only", type=int, nargs="*", help="indices into the grid")
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    picked = [DOMAINS[i] for i in args.only] if args.only else DOMAINS
    rows = []
    for name, options in picked:
        rows.append(run(name, options, args.folder))
        (args.folder / "grid.json").write_text(json.dumps(rows, indent=2))
    print("| domain | `adder-train` options | derived, grown | parameters | epochs | seconds | final check |")
    print("| --- | --- | --- | ---: | ---: | ---: | --- |")
    for r in rows:
        if r["exact"] is None:
            print(f"| {r['domain']} | `{r['options']}` | (no record yet) | | | | |")
            continue
        grown = r["arch"] + (f" (grew from {', '.join(r['grew'])})" if r["grew"] else "")
        print(
            f"| {r['domain']} | `{r['options']}` | {grown} | {r['parameters']:,} | {r['epochs']} | "
            f"{r['seconds']:.0f} | {'exact: ' if r['exact'] else 'not exact: '}{r['check']} |"
        )


if __name__ == "__main__":
    main()

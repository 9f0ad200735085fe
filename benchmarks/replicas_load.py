"""Two Ray Serve replicas against one, and against `adder serve` itself, in one run on 127.0.0.1.

Starts one local Ray cluster holding two Serve applications of the same models, `one`
(1 replica, at /one) and `two` (2 replicas, at /two), behind Ray's one HTTP proxy, and
`adder serve --port 0` beside it (needs the replicas extra). In interleaved rounds, each
target gets the same v2 infer requests from 8 and from 64 keep-alive clients: single
queries, and requests of 100. Every reply is compared byte for byte with the protocol's
reply for the true sums (the model is checked exact on them first), and replies are
counted by the replica that sent them (x-adder-replica). Prints a table of medians.
Not a test; run by hand:

    python benchmarks/replicas_load.py

Bounded: every measurement stops after --requests requests or --seconds seconds,
whichever comes first; everything started is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field

from adder import Adder
from adder.v2 import InferRequest, infer_reply

HOST = "127.0.0.1"
LAUNCH_RAY = (
    "import signal, socket, sys\n"
    "import ray\n"
    "from ray import serve\n"
    "from adder.replicas import deploy\n"
    "ray.init(include_dashboard=False, log_to_driver=False, object_store_memory=100_000_000, logging_level='WARNING')\n"
    "with socket.create_server(('127.0.0.1', 0)) as probe:\n"
    "    port = probe.getsockname()[1]\n"
    "serve.start(http_options={'host': '127.0.0.1', 'port': port})\n"
    "cpus = float(sys.argv[1])\n"
    "deploy(None, 1, cpus, name='one', route_prefix='/one')\n"
    "deploy(None, 2, cpus, name='two', route_prefix='/two')\n"
    "print(f'ray at http://127.0.0.1:{port}', file=sys.stderr, flush=True)\n"
    "signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))\n"
    "try:\n"
    "    signal.pause()\n"
    "finally:\n"
    "    serve.shutdown()\n"
    "    ray.shutdown()\n"
)


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    wrong: int = 0
    replicas: Counter = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds

    def percentile(self, share: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def started(command: list[str], pattern: str, env: dict | None = None) -> tuple[subprocess.Popen, int]:
    """A server process and the port its first matching stderr line names."""
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
    seen = []
    for line in process.stderr:
        seen.append(line)
        if found := re.search(pattern, line):
            return process, int(found.group(1))
    process.kill()
    raise SystemExit("did not start:\n" + "".join(seen))


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value for name, value in (line.split(": ", 1) for line in lines[1:] if line)}
    body = await reader.readexactly(int(headers["content-length"]))
    return int(lines[0].split()[1]), headers, body


async def client(port: int, requests: list[tuple[bytes, bytes]], deadline: float, tally: Tally) -> None:
    """One keep-alive connection sending its requests one after another until done or the deadline."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        for request, expected in requests:
            if time.perf_counter() > deadline:
                break
            begun = time.perf_counter()
            writer.write(request)
            status, headers, body = await read_response(reader)
            tally.latencies.append(time.perf_counter() - begun)
            tally.wrong += status != 200 or body != expected
            tally.replicas[headers.get("x-adder-replica", "-")] += 1
    finally:
        writer.close()


async def load(port: int, plan: list[list[tuple[bytes, bytes]]], seconds: float) -> Tally:
    tally = Tally()
    begun = time.perf_counter()
    await asyncio.gather(*(client(port, requests, begun + seconds, tally) for requests in plan))
    tally.seconds = time.perf_counter() - begun
    return tally


def infer_request(prefix: str, queries: list[str]) -> bytes:
    body = json.dumps({"inputs": [{"name": "queries", "datatype": "BYTES", "shape": [len(queries)], "data": queries}]})
    head = f"POST {prefix}/v2/models/default/infer HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: {len(body)}\r\n\r\n"
    return (head + body).encode()


def plan_for(prefix: str, lists: list[tuple[list[str], list[int]]], clients: int, total: int):
    outputs = (("answers", False), ("errors", False))
    encoded = [
        (infer_request(prefix, queries), infer_reply("default", InferRequest(queries, outputs), answers, "INT64")[0])
        for queries, answers in lists
    ]
    per = max(1, total // clients)
    return [[encoded[(c * per + i) % len(encoded)] for i in range(per)] for c in range(clients)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[8, 64])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 100], help="queries in one request")
    parser.add_argument("--requests", type=int, default=20_000, help="most requests in one measurement")
    parser.add_argument("--seconds", type=float, default=3.0, help="longest one measurement runs")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the table gives medians")
    parser.add_argument("--cpus", type=float, default=(os.cpu_count() or 1) / 3, help="Ray CPUs a replica asks for")
    args = parser.parse_args()

    adder, rng = Adder(), random.Random(0)
    lists = {}
    for size in args.sizes:
        pairs = [[(rng.randint(0, 999), rng.randint(0, 999)) for _ in range(size)] for _ in range(2000 // size + 20)]
        lists[size] = [([f"{a}+{b}" for a, b in p], [a + b for a, b in p]) for p in pairs]
        if any(adder.batch(queries) != answers for queries, answers in lists[size]):
            raise SystemExit("the model is not exact on these queries: 'wrong' would not be the server's doing")

    ray_tmp = tempfile.mkdtemp(prefix="ray")  # short: Ray's socket paths must fit in 107 bytes
    ray, ray_port = started(
        [sys.executable, "-c", LAUNCH_RAY, str(args.cpus)],
        r"ray at http://127\.0\.0\.1:(\d+)",
        os.environ | {"RAY_TMPDIR": ray_tmp},
    )
    plain, plain_port = started([sys.executable, "-m", "adder", "serve", "--port", "0"], r"http://127\.0\.0\.1:(\d+);")
    targets = {
        "adder serve (one process)": (plain_port, ""),
        "Ray Serve, 1 replica": (ray_port, "/one"),
        "Ray Serve, 2 replicas": (ray_port, "/two"),
    }
    rows: dict[tuple, list[Tally]] = {}
    try:
        for port, prefix in targets.values():  # warm-up
            asyncio.run(load(port, plan_for(prefix, lists[args.sizes[0]], 8, 400), 2.0))
        for _ in range(args.rounds):
            for size in args.sizes:
                for clients in args.clients:
                    for name, (port, prefix) in targets.items():
                        plan = plan_for(prefix, lists[size], clients, args.requests // size)
                        rows.setdefault((size, clients, name), []).append(asyncio.run(load(port, plan, args.seconds)))
    finally:
        codes = []
        for process in (plain, ray):
            process.send_signal(signal.SIGTERM)
            codes.append(process.wait(timeout=90))
    report(args, rows, codes)


def report(args, rows, codes) -> None:
    print(f"v2 infer on {HOST} ({os.cpu_count()} cores), medians of {args.rounds} interleaved rounds, each at most")
    print(f"{args.requests:,} queries or {args.seconds:g} s; Ray replicas ask for {args.cpus:.2f} CPU each")
    print()
    print(
        "| queries a request | clients | server | requests/s | queries/s | p50 ms | p99 ms | wrong "
        "| replies by replica |"
    )
    print("| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for (size, clients, name), tallies in rows.items():
        rate = statistics.median(t.rate for t in tallies)
        p50 = 1000 * statistics.median(t.percentile(0.5) for t in tallies)
        p99 = 1000 * statistics.median(t.percentile(0.99) for t in tallies)
        wrong = sum(t.wrong for t in tallies)
        spread = sum((t.replicas for t in tallies), Counter())
        shares = " / ".join(f"{count:,}" for _, count in spread.most_common()) if "-" not in spread else "-"
        print(
            f"| {size} | {clients} | {name} | {rate:,.0f} | {rate * size:,.0f} | {p50:.2f} | {p99:.2f} | {wrong} "
            f"| {shares} |"
        )
    print()
    print(f"exit codes: adder serve {codes[0]}, Ray {codes[1]}")


if __name__ == "__main__":
    main()

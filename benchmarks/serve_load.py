"""Load on `adder serve`, all measured in one run against one server on 127.0.0.1.

Starts `adder serve --port 0` (needs the serve extra), then, in interleaved rounds:
  * 1, 8 and 64 keep-alive clients sending single-query GET /add: requests a second,
    p50 and p99 latency, wrong answers (every reply compared byte for byte with the
    JSON of the true sum), and the mean number of queries in the model call that
    answered each request (the server's x-batch-queries header);
  * the same clients on GET /health: the HTTP stack alone, the ceiling for GET /add;
  * POST /add of 1,000 queries from 1 and from 4 clients, in slices alternating with
    Adder.batch on the same 1,000-query lists in this process (the server idle).
Prints tables and the ratios against the targets (64 clients: GET /add at 0.5x or
more of /health; POSTs of 1,000 at 0.7x or more of Adder.batch). Not a test; run by hand:

    python benchmarks/serve_load.py

Bounded: every measurement stops after --requests requests or --seconds seconds,
whichever comes first, and the server is stopped at the end. Traffic goes to
127.0.0.1 only. --wait runs the server with a batching wait other than the shipped one,
through the same app (to measure the choice), and --plain without uvloop and httptools.
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
import time
from dataclasses import dataclass, field

from adder import Adder

HOST = "127.0.0.1"
POST_QUERIES = 1000
LAUNCH_APP = (
    "import sys\n"
    "from adder.batching import BatchSettings\n"
    "from adder.server import build_app, listen, open_models, run\n"
    "models, default = open_models(sys.argv[2] or None)\n"
    "sock = listen('127.0.0.1', 0)\n"
    "print(f'adder serve: at http://127.0.0.1:{sock.getsockname()[1]};', file=sys.stderr, flush=True)\n"
    "app = build_app(models, default, batching=BatchSettings(wait=float(sys.argv[1])))\n"
    "run(app, sock, *sys.argv[3:])\n"
)


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    wrong: int = 0
    batch_sizes: list[int] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds

    def percentile(self, share: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def start_server(model: str | None, wait: float | None, plain: bool = False) -> tuple[subprocess.Popen, int]:
    if wait is None and not plain:
        command = [sys.executable, "-m", "adder", "serve", "--host", HOST, "--port", "0"]
        if model:
            command += ["--model", model]
    else:
        command = [sys.executable, "-c", LAUNCH_APP, str(wait or 0), model or ""]
        command += ["asyncio", "h11"] if plain else []
    server = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    line = server.stderr.readline()
    found = re.search(r"http://127\.0\.0\.1:(\d+)", line)
    if not found:
        server.kill()
        raise SystemExit(f"the server did not start: {line.strip() or server.stderr.read()}")
    return server, int(found.group(1))


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = dict(line.split(": ", 1) for line in lines[1:] if line)
    headers = {name.lower(): value for name, value in headers.items()}
    body = await reader.readexactly(int(headers["content-length"]))
    return status, headers, body


async def client(port: int, requests: list[tuple[bytes, bytes]], deadline: float, tally: Tally) -> None:
    """One keep-alive connection sending its requests one after another until done or the deadline."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        for request, expected in requests:
            if time.perf_counter() > deadline:
                break
            started = time.perf_counter()
            writer.write(request)
            status, headers, body = await read_response(reader)
            tally.latencies.append(time.perf_counter() - started)
            if not check(status, body, expected):
                tally.wrong += 1
            if "x-batch-queries" in headers:
                tally.batch_sizes.append(int(headers["x-batch-queries"]))
    finally:
        writer.close()


def get_request(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()


def post_request(queries: list[str]) -> bytes:
    body = json.dumps({"queries": queries}).encode()
    head = (
        f"POST /add HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def expected_body(payload: object) -> bytes:
    """The exact reply a right answer gets: comparing bytes checks every answer, and costs the
    client far less than parsing the JSON would (the client shares the machine)."""
    return json.dumps(payload).encode()


def check(status: int, body: bytes, expected: bytes) -> bool:
    return status == 200 and body == expected


async def load(port: int, clients: int, per_client: list[list[tuple[bytes, bytes]]], seconds: float) -> Tally:
    tally = Tally()
    started = time.perf_counter()
    deadline = started + seconds
    await asyncio.gather(*(client(port, per_client[i], deadline, tally) for i in range(clients)))
    tally.seconds = time.perf_counter() - started
    return tally


def sums(rng: random.Random, count: int, config) -> list[tuple[str, int]]:
    """Queries any model of the config's domain accepts, with their true value."""
    low, high = config.min_operand, config.max_operand
    pairs = []
    for _ in range(count):
        terms = [rng.randint(low, high) for _ in range(config.min_terms)]
        pairs.append(("+".join(map(str, terms)), sum(terms)))
    return pairs


def get_plan(queries: list[tuple[str, int]], clients: int, total: int) -> list[list[tuple[bytes, object]]]:
    per = total // clients
    encoded = [
        (get_request("/add?q=" + q.replace("+", "%2B")), expected_body({"query": q, "answer": value}))
        for q, value in queries
    ]
    return [[encoded[(c * per + i) % len(encoded)] for i in range(per)] for c in range(clients)]


def health_plan(clients: int, total: int) -> list[list[tuple[bytes, object]]]:
    request = get_request("/health")
    return [[(request, expected_body({"status": "ok"}))] * (total // clients) for _ in range(clients)]


def batch_rate(adder: Adder, lists: list[list[str]], seconds: float) -> float:
    """Adder.batch on 1,000-query lists, queries a second, over at most ``seconds``."""
    done, started = 0, time.perf_counter()
    for queries in lists:
        adder.batch(queries)
        done += len(queries)
        if time.perf_counter() - started > seconds:
            break
    return done / (time.perf_counter() - started)


def compare_posts(port: int, adder: Adder, lists, expected, args, slices: int = 6) -> tuple[dict[int, Tally], float]:
    """POSTs of 1,000 queries (from each number of clients) and Adder.batch in alternating slices
    of one measurement's time: background load that comes and goes weighs on every side alike."""
    merged = {clients: Tally() for clients in args.post_clients}
    batch_queries, batch_seconds = 0.0, 0.0
    for _ in range(slices):
        for clients, total in merged.items():
            plan = [
                [(post_request(lists[j]), expected[j]) for j in range(c, len(lists), clients)] for c in range(clients)
            ]
            tally = asyncio.run(load(port, clients, plan, args.seconds / slices))
            total.latencies += tally.latencies
            total.wrong += tally.wrong
            total.seconds += tally.seconds
        started = time.perf_counter()
        rate = batch_rate(adder, lists, args.seconds / slices)
        batch_queries += rate * (time.perf_counter() - started)
        batch_seconds += time.perf_counter() - started
    return merged, batch_queries / batch_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a shipped model's name or a path (default: the server's default)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--requests", type=int, default=20_000, help="most requests in one measurement")
    parser.add_argument("--seconds", type=float, default=3.0, help="longest one measurement runs")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the table gives medians")
    parser.add_argument("--post-clients", type=int, nargs="+", default=[1, 4], help="clients posting 1,000 queries")
    parser.add_argument("--wait", type=float, help="the server's batching wait in seconds (default: as shipped)")
    parser.add_argument("--plain", action="store_true", help="uvicorn on asyncio and h11, without uvloop and httptools")
    args = parser.parse_args()

    adder = Adder(args.model)
    rng = random.Random(0)
    pool = sums(rng, 20_000, adder.config)
    posted = [sums(rng, POST_QUERIES, adder.config) for _ in range(400)]
    post_lists = [[q for q, _ in pairs] for pairs in posted]
    if any(adder.batch([q for q, _ in pairs]) != [v for _, v in pairs] for pairs in [pool, *posted]):
        raise SystemExit("the model is not exact on these queries: 'wrong' would not be the server's doing")
    post_expected = [expected_body({"results": [{"query": q, "answer": v} for q, v in pairs]}) for pairs in posted]

    server, port = start_server(args.model, args.wait, args.plain)
    rows: dict[tuple[int, str], list[Tally]] = {}
    posts: dict[int, list[Tally]] = {}
    batch_rates: list[float] = []
    try:
        asyncio.run(load(port, 8, get_plan(pool, 8, 800), 2.0))  # warm-up
        for _ in range(args.rounds):
            for clients in args.clients:
                plans = {"/add": get_plan(pool, clients, args.requests), "/health": health_plan(clients, args.requests)}
                for endpoint, plan in plans.items():
                    rows.setdefault((clients, endpoint), []).append(
                        asyncio.run(load(port, clients, plan, args.seconds))
                    )
            post, batch = compare_posts(port, adder, post_lists, post_expected, args)
            for clients, tally in post.items():
                posts.setdefault(clients, []).append(tally)
            batch_rates.append(batch)
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=30)
    report(args, rows, posts, batch_rates, code)


def median(values: list[float]) -> float:
    return statistics.median(values)


def report(args, rows, posts, batch_rates, server_exit: int) -> None:
    print(f"adder serve under load on {HOST} ({os.cpu_count()} cores); medians of {args.rounds} interleaved rounds,")
    print(
        f"each measurement at most {args.requests:,} requests or {args.seconds:g} s; wait: {args.wait or 'as shipped'}"
        + ("; uvicorn on asyncio and h11" if args.plain else "")
    )
    print()
    print(f"| {'clients':>7} | {'endpoint':<8} | {'requests/s':>10} | {'p50 ms':>7} | {'p99 ms':>7} | wrong | batch |")
    print(f"|{'-' * 9}|{'-' * 10}|{'-' * 12}|{'-' * 9}|{'-' * 9}|{'-' * 7}|{'-' * 7}|")
    for (clients, endpoint), tallies in rows.items():
        rate = median([t.rate for t in tallies])
        p50 = 1000 * median([t.percentile(0.5) for t in tallies])
        p99 = 1000 * median([t.percentile(0.99) for t in tallies])
        wrong = sum(t.wrong for t in tallies)
        sizes = [size for t in tallies for size in t.batch_sizes]
        batch = f"{statistics.fmean(sizes):5.1f}" if sizes else "    -"
        print(f"| {clients:>7} | {endpoint:<8} | {rate:>10,.0f} | {p50:>7.2f} | {p99:>7.2f} | {wrong:>5} | {batch} |")
    print()
    batch = median(batch_rates)
    print(
        f"POST /add of {POST_QUERIES:,} queries beside Adder.batch on the same lists in this process ({batch:,.0f}/s):"
    )
    print()
    print(f"| {'clients':>7} | {'queries/s':>10} | {'p50 ms':>7} | {'p99 ms':>7} | wrong | x Adder.batch |")
    print(f"|{'-' * 9}|{'-' * 12}|{'-' * 9}|{'-' * 9}|{'-' * 7}|{'-' * 15}|")
    for clients, tallies in posts.items():
        rate = median([t.rate * POST_QUERIES for t in tallies])
        p50 = 1000 * median([t.percentile(0.5) for t in tallies])
        p99 = 1000 * median([t.percentile(0.99) for t in tallies])
        ratio = median([t.rate * POST_QUERIES / b for t, b in zip(tallies, batch_rates)])
        wrong = sum(t.wrong for t in tallies)
        print(f"| {clients:>7} | {rate:>10,.0f} | {p50:>7.2f} | {p99:>7.2f} | {wrong:>5} | {ratio:>13.2f} |")
    print()
    if (1, "/add") in rows:
        lone = [1000 * (a.percentile(0.5) - h.percentile(0.5)) for a, h in zip(rows[1, "/add"], rows[1, "/health"])]
        print(f"1 client: GET /add's p50 is {median(lone):.2f} ms above /health's (the model, batching and JSON)")
    # Ratios are taken within each round (the two sides measured seconds apart), then the median.
    top = max(args.clients)
    if (top, "/add") in rows:
        ratios = [a.rate / h.rate for a, h in zip(rows[top, "/add"], rows[top, "/health"])]
        verdict = "met" if median(ratios) >= 0.5 else "NOT met"
        print(
            f"{top} clients: GET /add at {median(ratios):.2f}x the /health rate "
            f"(rounds {min(ratios):.2f}-{max(ratios):.2f}; target 0.5x or more: {verdict})"
        )
    # One client posting one list after another is the shape of the Adder.batch loop it is held to.
    one = min(posts)
    ratios = [t.rate * POST_QUERIES / b for t, b in zip(posts[one], batch_rates)]
    verdict = "met" if median(ratios) >= 0.7 else "NOT met"
    print(
        f"POSTs of {POST_QUERIES:,}, {one} client: {median(ratios):.2f}x Adder.batch "
        f"(rounds {min(ratios):.2f}-{max(ratios):.2f}; target 0.7x or more: {verdict})"
    )
    print(f"server stopped by SIGTERM, exit code {server_exit}")


if __name__ == "__main__":
    main()

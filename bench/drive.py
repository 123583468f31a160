#!/usr/bin/env python3
"""Send each URL path of a list exactly ONCE to one HTTP server, and time it.

Why this exists next to oha: oha's --urls-from-file picks a random URL for
every request (with replacement), so it can neither warm the cache with every
host nor measure "the first request of each host" (the cold-cache case, where
every request must be a replica load). This driver walks the list in order,
each path once, in one of two modes:

  --rate R       OPEN LOOP: request i is due at t0 + i/R whatever happened to
                 the earlier ones (a new keep-alive connection is opened when
                 all are busy). Latency is measured from the INTENDED send time,
                 so a stall of the server or of this driver shows up in the
                 numbers instead of silently lowering the rate (no coordinated
                 omission). The service time (from the actual send) is reported
                 as well.
  --concurrency C
                 CLOSED LOOP with C connections: as fast as the server answers.
                 Used to warm the cache and to sum the body sizes.

Python's event loop adds its own delay (tens to hundreds of microseconds) to
every measurement; enc.sh runs the same driver against /healthz at the same
rate so that overhead is visible as a baseline. Standard library only.

Prints one JSON object (counts, status codes, body bytes, latency percentiles
in milliseconds) on stdout.
"""

import argparse
import asyncio
import json
import resource
import sys
import time


class Conn:
    """One HTTP/1.1 keep-alive connection."""

    def __init__(self, reader, writer):
        self.reader = reader
        self.writer = writer

    async def get(self, host_header, path):
        self.writer.write(
            f"GET {path} HTTP/1.1\r\nHost: {host_header}\r\nAccept: */*\r\n\r\n".encode()
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        body = await self.reader.readexactly(length) if length else b""
        return status, len(body)


class Pool:
    """Idle connections are reused; a new one is opened when none is idle."""

    def __init__(self, host, port):
        self.host, self.port = host, port
        self.idle = []
        self.opened = 0

    async def take(self):
        if self.idle:
            return self.idle.pop()
        reader, writer = await asyncio.open_connection(self.host, self.port)
        self.opened += 1
        return Conn(reader, writer)

    def give(self, conn):
        self.idle.append(conn)

    def close(self):
        for conn in self.idle:
            conn.writer.close()


def percentile(sorted_values, p):
    """Nearest-rank percentile of an already sorted list (p in 0..100)."""
    if not sorted_values:
        return None
    rank = max(1, -(-len(sorted_values) * p // 100))  # ceil(n * p / 100)
    return sorted_values[int(rank) - 1]


def summary(values_s):
    values = sorted(v * 1000.0 for v in values_s)
    out = {f"p{p}": percentile(values, p) for p in (50, 90, 99, 99.9)}
    out["max"] = values[-1] if values else None
    out["mean"] = sum(values) / len(values) if values else None
    return out


async def run(args, paths):
    pool = Pool(args.host, args.port)
    host_header = f"{args.host}:{args.port}"
    timeline = []   # (intended send, offset from the start in s, latency in ms, path)
    latencies = []  # from the intended send time (open loop) or the send
    service = []    # from the actual send
    statuses = {}
    body_bytes = 0
    errors = []
    stale_retries = 0
    max_lag = 0.0
    loop = asyncio.get_running_loop()

    async def one(path, intended):
        nonlocal body_bytes, max_lag, stale_retries
        sent = loop.time()
        max_lag = max(max_lag, sent - intended)
        try:
            reused = bool(pool.idle)
            conn = await pool.take()
            try:
                status, n = await conn.get(host_header, path)
            except asyncio.IncompleteReadError as e:
                # The server closed an idle keep-alive connection just as
                # this request went out on it (actix closes idle ones after
                # 5 s): like any HTTP client, send the idempotent GET once
                # more on a new connection. Counted.
                if not reused or e.partial:
                    raise
                stale_retries += 1
                reader, writer = await asyncio.open_connection(pool.host, pool.port)
                pool.opened += 1
                conn = Conn(reader, writer)
                status, n = await conn.get(host_header, path)
            pool.give(conn)
        except (OSError, asyncio.IncompleteReadError, ValueError) as e:
            errors.append(f"{path}: {e!r}")
            return
        done = loop.time()
        timeline.append((intended - started, (done - intended) * 1000.0, path))
        latencies.append(done - intended)
        service.append(done - sent)
        statuses[status] = statuses.get(status, 0) + 1
        if status == 200:
            body_bytes += n

    started = loop.time()
    if args.rate:
        # Open loop: one task per request, started at its scheduled time.
        tasks = []
        interval = 1.0 / args.rate
        for i, path in enumerate(paths):
            intended = started + i * interval
            delay = intended - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(one(path, intended)))
        await asyncio.gather(*tasks)
    else:
        # Closed loop: C workers take the next path as soon as they are free.
        queue = iter(paths)

        async def worker():
            for path in queue:
                await one(path, loop.time())

        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    elapsed = loop.time() - started
    pool.close()
    if args.timeline:
        # One line per request, in send order: where in the run the slow ones are.
        with open(args.timeline, "w") as f:
            for offset, latency_ms, path in sorted(timeline):
                f.write(f"{offset:.6f} {latency_ms:.3f} {path}\n")
    return {
        "mode": f"open loop {args.rate:g} req/s" if args.rate else f"closed loop, {args.concurrency} connections",
        "requests": len(paths),
        "answered": len(latencies),
        "errors": len(errors),
        "stale_connection_retries": stale_retries,
        "first_errors": errors[:5],
        "status": {str(k): v for k, v in sorted(statuses.items())},
        "body_bytes_200": body_bytes,
        "elapsed_s": elapsed,
        "achieved_rps": len(latencies) / elapsed if elapsed else None,
        "connections_opened": pool.opened,
        "max_schedule_lag_ms": max_lag * 1000.0,
        "latency_ms": summary(latencies),
        "service_time_ms": summary(service),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--paths", required=True, help="file: one URL path per line (/node/x?format=yml)")
    parser.add_argument("--repeat", type=int, default=1, help="send the list this many times (for /healthz)")
    parser.add_argument("--timeline", help="also write 'offset_s latency_ms path' per request to this file")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--rate", type=float, help="open loop at this many requests per second")
    mode.add_argument("--concurrency", type=int, help="closed loop with this many connections")
    args = parser.parse_args()
    # An overloaded open-loop run keeps one connection per request in flight.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with open(args.paths) as f:
        paths = [line.strip() for line in f if line.strip()] * args.repeat
    result = asyncio.run(run(args, paths))
    json.dump(result, sys.stdout, indent=2)
    print()
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())

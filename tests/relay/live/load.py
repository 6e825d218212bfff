"""A bounded hostile load on a relay, run as its own process: ``python -m tests.relay.live.load``.

Holds ``--slow`` connections that trickle their request headers (one byte every half second,
never finishing), while ``--flood`` webhooks (each a distinct contact) go out ``--parallel`` at a
time, plus a few oversized headers. Prints one JSON line: the answers by status and reason, how
many slow connections the relay closed, transport errors. Every connection has a deadline, so the
run is bounded whatever the relay does.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from collections import Counter

import httpx

from relay.app import WEBHOOK_PATH
from tests.relay.conftest import webhook_body


async def _slow_client(host: str, port: int, deadline: float) -> str:
    """Send a request head one byte at a time; 'closed' when the relay hangs up first."""
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        return "refused"
    head = f"POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: relay\r\nX-Slow: " + "a" * 10_000
    try:
        for byte in head.encode():
            if time.monotonic() > deadline:
                return "held"
            writer.write(bytes([byte]))
            with contextlib.suppress(TimeoutError):
                # EOF (or a 4xx/503 answer) means the relay gave the slot back.
                if await asyncio.wait_for(reader.read(1), 0.5) == b"":
                    return "closed"
                return "answered"
        return "held"
    except (ConnectionError, OSError):
        return "closed"
    finally:
        writer.close()


async def _flood(url: str, key: str, count: int, parallel: int) -> tuple[Counter[str], int]:
    outcomes: Counter[str] = Counter()
    errors = 0
    gate = asyncio.Semaphore(parallel)
    limits = httpx.Limits(max_connections=parallel, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=url, timeout=30.0, limits=limits) as client:

        async def one(n: int) -> None:
            nonlocal errors
            headers = {"x-padding": "p" * 40_000} if n % 50 == 0 else {}
            async with gate:
                try:
                    response = await client.post(
                        WEBHOOK_PATH, params={"code": key}, json=webhook_body(), headers=headers
                    )
                except httpx.TransportError:
                    errors += 1
                    return
            try:
                reason = response.json().get("reason") or response.json().get("status")
            except ValueError:
                reason = "text"
            outcomes[f"{response.status_code} {reason}"] += 1

        await asyncio.gather(*(one(n) for n in range(count)))
    return outcomes, errors


async def _main(args: argparse.Namespace) -> dict[str, object]:
    host, port = args.url.removeprefix("http://").split(":")
    deadline = time.monotonic() + args.seconds
    slow = [asyncio.create_task(_slow_client(host, int(port), deadline)) for _ in range(args.slow)]
    await asyncio.sleep(0.5)  # the slow ones take their slots first
    started = time.monotonic()
    outcomes, errors = await _flood(args.url, args.key, args.flood, args.parallel)
    flood_seconds = time.monotonic() - started
    slow_results = Counter(await asyncio.gather(*slow))
    return {
        "answers": dict(outcomes),
        "transport_errors": errors,
        "slow": dict(slow_results),
        "flood_seconds": round(flood_seconds, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--slow", type=int, default=50)
    parser.add_argument("--flood", type=int, default=500)
    parser.add_argument("--parallel", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30.0, help="bound of the slow clients")
    print(json.dumps(asyncio.run(_main(parser.parse_args()))))


if __name__ == "__main__":
    main()

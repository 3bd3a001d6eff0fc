"""A Python function as a portway handler: run on the engine's worker pool, limited,
chained into a pipeline, fed through an ordered bounded map.

    python examples/python/worker_pool.py
"""

from __future__ import annotations

import hashlib
import time

import portway


def digest(payload: bytes) -> bytes:
    """CPU work (hashlib releases the GIL on large inputs)."""
    return hashlib.sha256(payload * 1000).hexdigest().encode()


def shout(payload: bytes) -> bytes:
    if not payload:
        raise ValueError("empty payload")
    return payload.upper()


def main() -> None:
    with portway.Engine(pool_workers=2) as eng:
        eng.register("digest", digest)
        eng.register("shout", shout)
        eng.set_concurrency("digest", 2)  # at most two digests at once
        eng.pipeline("digest-shout", ["digest", "shout"])

        t0 = time.perf_counter()
        n = 0
        for c in eng.map("digest-shout", (f"item-{i}".encode() for i in range(2000)), window=64):
            n += 1
            if n <= 3:
                print(c.data[:16].decode(), "...")
        print(f"{n} pipeline runs in {time.perf_counter() - t0:.2f}s")

        try:
            eng.submit("shout", b"").result()
        except portway.HandlerError as exc:
            print("handler error is typed:", exc)

        s = eng.stats()
        print("completed OK:", s["completed"]["OK"], "handler errors:", s["completed"]["HANDLER_ERROR"])


if __name__ == "__main__":
    main()

import time

from eod_settler.ratelimit import TokenBucket


async def test_bucket_spaces_requests_at_the_configured_rate() -> None:
    waits: list[float] = []
    bucket = TokenBucket(rate_per_min=1200, burst=1, on_wait=waits.append)  # one per 50 ms
    t0 = time.monotonic()
    for _ in range(6):
        await bucket.acquire()
    elapsed = time.monotonic() - t0
    assert 0.24 <= elapsed < 0.4
    assert len(waits) == 5


async def test_burst_allows_that_many_at_once() -> None:
    bucket = TokenBucket(rate_per_min=60, burst=3)
    t0 = time.monotonic()
    for _ in range(3):
        await bucket.acquire()
    assert time.monotonic() - t0 < 0.05

"""Queue depth is the work waiting for a worker thread, read from the executor at scrape time."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from porter_identity import metrics


def _depth() -> float:
    value = metrics.REGISTRY.get_sample_value("porter_identity_queue_depth")
    assert value is not None
    return value


def test_queue_depth_counts_calls_waiting_for_a_worker() -> None:
    release = threading.Event()
    started = threading.Event()

    def busy() -> None:
        started.set()
        release.wait(10)

    with ThreadPoolExecutor(max_workers=1) as executor:
        metrics.watch_queue(executor)
        executor.submit(busy)
        started.wait(5)
        waiting = [executor.submit(lambda: None) for _ in range(3)]
        assert _depth() == 3, "one call runs, three wait"
        release.set()
        for future in waiting:
            future.result(5)
        assert _depth() == 0

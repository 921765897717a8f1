"""The token buckets of speed limits (issue 19), on a clock the test moves: what a stream
must wait is booked, never measured."""

from __future__ import annotations

import threading

from transports.throttle import BURST, Rate, Throttle


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_no_limit_never_waits() -> None:
    rate = Rate(0, Clock())
    assert [rate.book(1 << 30) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert rate.taken == 3 << 30


def test_streams_queue_in_debt_and_the_debt_is_paid_at_the_rate() -> None:
    clock = Clock()
    rate = Rate(1000, clock)
    assert rate.book(500) == 0.5
    assert rate.book(500) == 1.0  # the second stream waits behind the first
    clock.now += 1.0
    assert rate.book(0) == 0.0  # paid off
    clock.now += 100.0  # idle: no more than a short burst is saved up
    assert rate.book(1000) == 1 - BURST


def test_a_new_rate_applies_in_place() -> None:
    clock = Clock()
    rate = Rate(1000, clock)
    assert rate.book(1000) == 1.0
    rate.set(100)  # lowered: the debt is paid slower
    assert rate.book(0) == 10.0
    rate.set(0)  # lifted
    assert rate.book(10**9) == 0.0
    rate.set(10)  # set again from none: starts from empty, not from old debt
    assert rate.book(10) <= 1.0


def test_the_lowest_of_a_jobs_and_the_agents_rate_applies() -> None:
    clock = Clock()
    job, agent = Rate(1000, clock), Rate(500, clock)
    throttle = Throttle([job, agent])
    assert throttle.limit == 500
    assert throttle.book(500) == 1.0  # the agent's is the one waited for
    assert job.taken == agent.taken == 500  # both counted what moved
    agent.set(0)
    assert throttle.limit == 1000
    assert Throttle([Rate(0), Rate(0)]).limit == 0


def test_threads_share_one_rate_and_a_stop_ends_a_wait() -> None:
    rate = Rate(1)  # a byte a second: every take below would wait for ages
    throttle = Throttle([rate])
    stop = threading.Event()
    stop.set()
    threads = [threading.Thread(target=throttle.take, args=(1000, stop)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert rate.taken == 8000  # every take counted, none lost to a race


def test_a_booking_waiting_follows_a_new_rate() -> None:
    clock = Clock()
    rate = Rate(100, clock)
    mark = rate.reserve(1000)
    assert rate.due(mark) == 10.0
    clock.now += 1.0
    rate.set(1000)  # raised while the stream waits: the rest is paid at the new rate
    assert rate.due(mark) == 0.9
    rate.set(10)
    assert rate.due(mark) == 90.0

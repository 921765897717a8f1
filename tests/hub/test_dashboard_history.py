"""The dashboard's in-memory metrics history: one bounded ring per agent, the last hour."""

from __future__ import annotations

import math

from hub.dashboard.history import SLOTS, STEP, WINDOW, MetricsHistory, sample_of

METRICS = {"c": 2, "l": 10.0, "m": 20.0, "mpf": 1, "mpt": 2, "mvf": 0, "mvt": 0,
           "in": {"s": 1.25}, "out": {"s": -1.0}, "la": [0.5, 0.2, 0.1]}


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_sample_takes_what_the_sparklines_draw() -> None:
    assert sample_of(METRICS)[:4] == (10.0, 20.0, 0.5, 1.25)
    assert math.isnan(sample_of(METRICS)[4])  # -1.0: not measured
    odd = sample_of({"l": "high", "la": [], "in": 3})  # junk never raises
    assert all(math.isnan(v) for v in odd)


def test_the_ring_keeps_one_sample_a_step_for_an_hour() -> None:
    clock = Clock()
    history = MetricsHistory(clock)
    for n in range(3):  # check-ins closer than STEP: the newest wins, in one sample
        history.add("a", {**METRICS, "l": float(n)})
        clock.now += STEP / 4
    got = history.of(["a"])["a"]
    assert got["cpu"] == [2.0] and got["net_out"] == [None]
    for n in range(SLOTS + 10):
        clock.now += STEP
        history.add("a", {**METRICS, "l": float(n)})
    got = history.of(["a", "unknown"])
    assert list(got) == ["a"]
    assert len(got["a"]["t"]) <= SLOTS and got["a"]["cpu"][-1] == float(SLOTS + 9)
    assert got["a"]["t"] == sorted(got["a"]["t"]) and got["a"]["t"][0] >= clock.now - WINDOW


def test_agents_silent_for_the_window_are_forgotten() -> None:
    clock = Clock()
    history = MetricsHistory(clock)
    history.add("gone", METRICS)
    clock.now += WINDOW / 2
    history.add("here", METRICS)
    clock.now += WINDOW * 0.75
    assert list(history.of(["gone", "here"])) == ["here"]  # older than the hour: not shown
    history.add("here", METRICS)  # a sweep runs once the window has passed
    assert len(history) == 1

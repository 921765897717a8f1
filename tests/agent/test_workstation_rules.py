"""A workstation's rules, judged purely: schedule windows (weekdays, midnight, the week's
end), bad windows and sections named by their key, the clock file, the activity file,
logind's idle hints, and the CPU others keep busy against ``cpu_above``."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from agent.availability import Clock, Judge, cpu_verdict
from agent.config import AgentConfig, NimbyConfig, ScheduleConfig
from agent.nimby import (
    CpuSample,
    Logind,
    activity_file,
    others_busy,
    sample_cpu,
    sessions_active,
)
from agent.schedule import Schedule, parse_window
from core import config
from core.errors import ConfigError

# 2026-12-07 is a Monday
MON, TUE, FRI, SAT, SUN = 7, 8, 11, 12, 13


def at(day: int, hhmm: str) -> datetime:
    hours, minutes = map(int, hhmm.split(":"))
    return datetime(2026, 12, day, hours, minutes)


def test_a_window_crossing_midnight_runs_into_the_next_morning() -> None:
    nights = Schedule.parse(["mon-fri 19:00-07:00"])
    assert not nights.open_at(at(MON, "06:59"))  # Sunday night is not in it
    assert not nights.open_at(at(MON, "18:59"))
    assert nights.open_at(at(MON, "19:00")) and nights.open_at(at(MON, "23:59"))
    assert nights.open_at(at(TUE, "00:00")) and nights.open_at(at(TUE, "06:59"))
    assert not nights.open_at(at(TUE, "07:00"))
    assert nights.open_at(at(SAT, "06:30"))  # Friday night runs into Saturday
    assert not nights.open_at(at(SAT, "19:30"))
    assert nights.next_opening(at(TUE, "07:00")) == at(TUE, "19:00")
    assert nights.next_opening(at(FRI, "23:00")) == at(MON + 7, "19:00")


def test_sunday_night_runs_into_monday_and_weekends_are_whole_days() -> None:
    schedule = Schedule.parse(["sun 22:00-02:00", "sat,sun 00:00-24:00"])
    assert schedule.open_at(at(MON + 7, "01:59"))  # Sunday's night, past the week's end
    assert not schedule.open_at(at(MON + 7, "02:00"))
    assert schedule.open_at(at(SAT, "00:00")) and schedule.open_at(at(SUN, "23:59"))
    assert not schedule.open_at(at(FRI, "23:59"))
    assert schedule.next_opening(at(MON, "12:00")) == at(SAT, "00:00")


def test_days_in_lists_ranges_that_wrap_and_every_day() -> None:
    assert parse_window("fri-mon 09:00-17:00").days == {4, 5, 6, 0}
    assert parse_window("Mon,WED-thu 09:00-17:00").days == {0, 2, 3}
    assert parse_window("9:00-17:30").days == set(range(7))
    assert parse_window("9:00-17:30").length == 8 * 60 + 30
    daily = Schedule.parse(["08:00-09:00"])
    assert all(daily.open_at(at(day, "08:30")) for day in range(MON, MON + 7))


@pytest.mark.parametrize("window, needle", [
    ("mon-fri", "expected DAYS HH:MM-HH:MM"),
    ("mon-fry 19:00-07:00", "'mon-fry' is not a day"),
    ("monday 19:00-07:00", "'monday' is not a day"),
    ("mon-fri 25:00-07:00", "'25:00' is not a time of day"),
    ("mon 19:60-20:00", "'19:60' is not a time of day"),
    ("mon 24:30-20:00", "'24:30' is not a time of day"),
    ("mon 24:00-06:00", "starts at 23:59 at the latest"),
    ("mon 10:00-10:00", "write 00:00-24:00"),
    ("mon 1900-0700", "expected DAYS"),
])
def test_a_bad_window_is_named_with_its_key(tmp_path: Path, window: str, needle: str) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text("application:\n  hub: http://h:1\n  schedule:\n"
                    f"    windows: ['sat,sun 00:00-24:00', '{window}']\n")
    with pytest.raises(ConfigError) as info:
        config.load(path, AgentConfig)
    assert info.value.key == "application.schedule.windows"
    assert repr(window) in str(info.value) and needle in str(info.value)


@pytest.mark.parametrize("section, key, needle", [
    ("schedule: {windows: []}", "application.schedule.windows", "length >= 1"),
    ("schedule: {}", "application.schedule", "missing required field `windows`"),
    ("schedule: {windows: ['9:00-17:00'], timezone: Mars/Olympus}",
     "application.schedule.timezone", "'Mars/Olympus' is not a time zone"),
    ("schedule: {windows: ['9:00-17:00'], running: stop}", "application.schedule.running",
     "'stop'"),
    ("schedule: {windows: ['9:00-17:00'], grace: -1}", "application.schedule.grace", ">= 0"),
    ("schedule: {windows: ['9:00-17:00'], hours: 3}", "application.schedule.hours",
     "unknown key"),
    ("nimby: {user_active: false}", "application.nimby.user_active", "nothing to watch"),
    ("nimby: {cpu_above: 150}", "application.nimby.cpu_above", "<= 100"),
    ("nimby: {then: handback}", "application.nimby.then", "unknown key"),
])
def test_bad_sections_name_the_key(tmp_path: Path, section: str, key: str, needle: str) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(f"application: {{hub: 'http://h:1', {section}}}\n")
    with pytest.raises(ConfigError) as info:
        config.load(path, AgentConfig)
    assert info.value.key == key, str(info.value)
    assert needle in str(info.value)


def schedule(tmp_path: Path, **extra: Any) -> ScheduleConfig:
    return ScheduleConfig(windows=["mon-fri 19:00-07:00"], clock=str(tmp_path / "clock"),
                          **extra)


def test_the_clock_file_stands_for_now(tmp_path: Path) -> None:
    clock = Clock(schedule(tmp_path, timezone="Europe/Paris"))
    before = clock.now()
    assert before.tzinfo is not None and abs(before.timestamp() - time.time()) < 60
    (tmp_path / "clock").write_text("2026-12-07T20:15:00\n")  # naive: the schedule's zone
    assert clock.now() == datetime(2026, 12, 7, 20, 15)
    (tmp_path / "clock").write_text("2026-12-07T20:15:00+00:00")  # 21:15 in Paris
    assert clock.now().hour == 21
    (tmp_path / "clock").write_text("half past eight")  # unreadable: the real time
    assert abs(clock.now().timestamp() - time.time()) < 60


def test_the_schedule_names_the_next_window_and_its_rule(tmp_path: Path) -> None:
    judge = Judge(schedule(tmp_path, running="handback", grace=12), None)
    (tmp_path / "clock").write_text("2026-12-08T08:00:00")  # a Tuesday morning
    verdict = judge.verdict()
    assert verdict is not None
    assert verdict.reason == "outside schedule (next window tue 19:00)"
    assert (verdict.running, verdict.grace) == ("handback", 12)
    (tmp_path / "clock").write_text("2026-12-08T19:00:00")
    assert judge.verdict() is None


def test_the_activity_file_says_active_idle_or_counts_by_its_age(tmp_path: Path) -> None:
    path = tmp_path / "activity"
    now = time.time()
    assert not activity_file(path, 300, now)  # nothing says the user is there
    path.write_text("active\n")
    assert activity_file(path, 300, now)
    path.write_text("IDLE")
    assert not activity_file(path, 300, now)
    path.write_text("")  # touched: its age counts
    assert activity_file(path, 300, time.time())
    os.utime(path, (now - 400, now - 400))
    assert not activity_file(path, 300, now)
    judge = Judge(None, NimbyConfig(activity=str(path)))
    path.write_text("active")
    verdict = judge.verdict()
    assert verdict is not None and verdict.reason == "user active (nimby)"
    assert (verdict.running, verdict.grace) == ("finish", 30)
    path.write_text("idle")
    assert judge.verdict() is None


def show(sid: str, cls: str = "user", remote: str = "no", idle: str = "no",
         since: float = 0) -> str:
    return (f"Id={sid}\nClass={cls}\nRemote={remote}\nActive=yes\nIdleHint={idle}\n"
            f"IdleSinceHint={int(since * 1e6)}\n")


def test_logind_local_sessions_count_and_remote_ones_do_not() -> None:
    now = time.time()
    assert sessions_active([show("2")], 300, now)
    assert not sessions_active([show("3", remote="yes")], 300, now)  # over ssh
    assert not sessions_active([show("c1", cls="greeter")], 300, now)
    assert not sessions_active([show("2", idle="yes", since=now - 600)], 300, now)
    assert sessions_active([show("2", idle="yes", since=now - 60)], 300, now)
    assert not sessions_active([], 300, now)  # nobody logged in


def test_others_busy_leaves_out_the_agents_own_work() -> None:
    before = CpuSample(at=100.0, busy=1000.0, own=50.0)
    # 10 s on 4 cores: 40 core-seconds; 30 busy, 20 of them the agent's lanes
    after = CpuSample(at=110.0, busy=1030.0, own=70.0)
    assert others_busy(before, after, 4) == pytest.approx(25.0)
    assert others_busy(before, CpuSample(110.0, 1030.0, 90.0), 4) == 0.0  # never below 0
    assert others_busy(before, before, 4) == 0.0


def test_cpu_above_the_threshold_holds_work_back() -> None:
    nimby = NimbyConfig(user_active=False, cpu_above=50, running="handback", grace=5)
    assert cpu_verdict(None, nimby) is None  # nothing measured yet
    assert cpu_verdict(50.0, nimby) is None
    verdict = cpu_verdict(83.4, nimby)
    assert verdict is not None and verdict.reason == "cpu busy 83% > 50% (nimby)"
    assert (verdict.running, verdict.grace) == ("handback", 5)


def test_the_judge_measures_the_cpu_between_samples() -> None:
    readings = iter([CpuSample(0.0, 0.0, 0.0), CpuSample(10.0, 18.0, 2.0),
                     CpuSample(20.0, 22.0, 4.0)])
    judge = Judge(None, NimbyConfig(user_active=False, cpu_above=50, interval=0.1),
                  cpu=lambda: next(readings), cores=2)
    assert judge.verdict() is None  # one sample: nothing to compare yet
    time.sleep(0.15)
    verdict = judge.verdict()  # (16 of 20 core-seconds)
    assert verdict is not None and verdict.reason == "cpu busy 80% > 50% (nimby)"
    assert judge.verdict() == verdict  # between measurements, the last one holds
    time.sleep(0.15)
    assert judge.verdict() is None  # 2 of 20: 10 %


def test_what_the_agent_starts_counts_as_its_own() -> None:
    """A real sample: a child's CPU (a lane's task is one) is the agent's, not another's."""
    before = sample_cpu()
    subprocess.run([sys.executable, "-c", "sum(range(20_000_000))"], check=True)
    after = sample_cpu()
    own = after.own - before.own
    assert own > 0.1  # the child's work, reaped
    assert after.busy - before.busy >= own - 0.05  # the machine saw it too (clock ticks)


def test_logind_answers_or_says_it_cannot() -> None:
    answer = Logind().user_active(300)  # no systemd here: None, and the user counts as away
    assert answer in (None, True, False)

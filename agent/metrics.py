"""Live host metrics for check-ins (the ``metrics`` record of clients.rst)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import msgspec
import psutil

from lanes.docker_spec import detect_gpus
from protocol import Gpu, Metrics, NetRate

MB = 1_000_000


class MetricsSampler:
    """Samples the host. CPU load and network rates are over the time since the last sample."""

    def __init__(self, transfer_bytes: Callable[[], tuple[int, int]] | None = None) -> None:
        """``transfer_bytes``: the bytes Ferry's own transfers took in and sent so far."""
        psutil.cpu_percent(interval=None)  # the first reading only primes the counter
        self._started = time.monotonic()
        counters = psutil.net_io_counters()
        self._first = (counters.bytes_recv, counters.bytes_sent)
        self._last = self._first
        self._last_at = self._started
        self.transfer_bytes = transfer_bytes
        self._moved = transfer_bytes() if transfer_bytes else (0, 0)
        # GPUs do not come and go while the agent runs: looked for once
        self.gpus = [msgspec.convert(g, Gpu) for g in detect_gpus()] or None

    def sample(self) -> Metrics:
        vm = psutil.virtual_memory()
        swap = psutil.swap_memory()
        now = time.monotonic()
        counters = psutil.net_io_counters()
        recv, sent = counters.bytes_recv, counters.bytes_sent
        span = now - self._last_at
        total = now - self._started
        in_rate = out_rate = in_avg = out_avg = -1.0
        if span > 0.5:
            in_rate = round(max(recv - self._last[0], 0) / span / MB, 3)
            out_rate = round(max(sent - self._last[1], 0) / span / MB, 3)
        if total > 0.5:
            in_avg = round(max(recv - self._first[0], 0) / total / MB, 3)
            out_avg = round(max(sent - self._first[1], 0) / total / MB, 3)
        self._last, self._last_at = (recv, sent), now
        t_in = t_out = -1.0  # no transfer engine here: not measured
        if self.transfer_bytes is not None:
            moved = self.transfer_bytes()
            if span > 0.5:
                t_in = round(max(moved[0] - self._moved[0], 0) / span / MB, 3)
                t_out = round(max(moved[1] - self._moved[1], 0) / span / MB, 3)
            self._moved = moved
        try:
            load = [round(x, 2) for x in os.getloadavg()]
        except (AttributeError, OSError):
            load = None
        return Metrics(
            c=psutil.cpu_count(logical=True) or 1,
            l=min(max(psutil.cpu_percent(interval=None), 0.0), 100.0),
            m=vm.percent,
            mpf=vm.available,
            mpt=vm.total,
            mvf=swap.free,
            mvt=swap.total,
            in_=NetRate(s=in_rate, s_a=in_avg, s_t=t_in),
            out=NetRate(s=out_rate, s_a=out_avg, s_t=t_out),
            la=load,
            gpus=self.gpus,
        )

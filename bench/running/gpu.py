"""GPU metering through NVML: GPU-seconds and energy over a span of work.

`GpuMonitor` samples the device's utilisation in a background thread while the work runs and
integrates it over wall time, so `gpu_s` is kernel-active GPU-seconds: NVML's utilisation is the share of
time in which at least one kernel was running, whatever share of the GPU's cores it kept busy, so a tiny
kernel that occupies the device counts as fully as a large one. It is an upper bound on a busy-GPU time
and a measure of how long the device was held, not of its arithmetic load; `gpu_energy_j`, beside it,
says how hard it worked. Energy comes from the device's cumulative energy counter where the driver
exposes one, otherwise from integrating sampled power draw.

Where NVML is missing (no driver, no GPU, a CPU-only machine) the monitor never raises: the
reading says `available=False` with the reason, and `as_metrics()` leaves the GPU numbers out
rather than reporting zeros that would look like a measurement.

NVML updates its utilisation figure every 1/6 s to 1 s depending on the device, so sampling
at >= 10 Hz catches every update; faster sampling only repeats values, it does not add detail.
"""

from __future__ import annotations

import importlib
import itertools
import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

log = logging.getLogger(__name__)

# 10 Hz is the slowest rate that still sees every NVML utilisation update (the fastest
# devices refresh it every ~1/6 s); anything slower would integrate stale values.
MAX_INTERVAL_S = 0.1

_thread_ids = itertools.count()


@dataclass(frozen=True)
class GpuReading:
    """What a `GpuMonitor` measured between `start()` and `stop()`.

    `gpu_s` is kernel-active GPU-seconds (NVML utilisation, the share of time any kernel ran, integrated over
    wall time); `gpu_energy_j` is the energy the device drew over the span. Either is None when it could not be
    measured.
    """

    available: bool
    gpu_s: float | None
    gpu_energy_j: float | None
    wall_s: float
    samples: int
    unavailable_reason: str | None
    device_name: str | None

    def as_metrics(self) -> dict[str, float]:
        """Numeric metrics for logging; a value that was not measured is absent, never 0."""
        metrics = {"gpu_available": 1.0 if self.available else 0.0}
        if self.gpu_s is not None:
            metrics["gpu_s"] = float(self.gpu_s)
        if self.gpu_energy_j is not None:
            metrics["gpu_energy_j"] = float(self.gpu_energy_j)
        return metrics


def _describe(exc: BaseException) -> str:
    """A reason string that keeps the exception type (NVMLError_NotSupported says a lot)."""
    message = str(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _load_nvml(nvml: object | None) -> Any:
    # Imported lazily so that a missing package is an "unavailable" reading, not an import
    # error for every module that merely imports bench.running.gpu.
    return nvml if nvml is not None else importlib.import_module("pynvml")


def trapezoid(times: Sequence[float], values: Sequence[float]) -> float:
    """Integral of a sampled signal by the trapezoidal rule (0 for fewer than two samples)."""
    if len(times) != len(values):
        raise ValueError(f"{len(times)} timestamps but {len(values)} values")
    total = 0.0
    for i in range(1, len(times)):
        total += (times[i] - times[i - 1]) * (values[i] + values[i - 1]) / 2.0
    return total


class GpuMonitor:
    """Meters one GPU over a span of work: `start()`, run the work, `stop()` -> `GpuReading`.

    Also a context manager: `with GpuMonitor() as mon: ...` then `mon.reading`. One monitor
    measures one span; `start()` a second time raises. `nvml` is any object with pynvml's
    function names (tests pass a fake); by default pynvml itself.
    """

    def __init__(self, device_index: int = 0, interval_s: float = 0.05, nvml: object | None = None) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        if interval_s > MAX_INTERVAL_S:
            raise ValueError(
                f"interval_s={interval_s} is too slow: GPU utilisation must be sampled at >= 10 Hz"
            )
        self.device_index = device_index
        self.interval_s = float(interval_s)
        self._nvml_override = nvml
        # Guards the start/stop state machine so concurrent callers see one start and one stop.
        self._lock = threading.Lock()
        self._started = False
        self._reading: GpuReading | None = None
        self._t_start = 0.0
        self._nvml: Any = None
        self._initialised = False  # nvmlInit succeeded and nvmlShutdown is still owed
        self._handle: Any = None
        self._device_name: str | None = None
        self._unavailable_reason: str | None = None
        self._energy_start_mj: float | None = None
        self._sample_power = False
        # Sample series: appended by the sampler thread only while it runs, read only after
        # it has been joined, so they need no lock of their own.
        self._times: list[float] = []
        self._util: list[float] = []
        self._power_times: list[float] = []
        self._power_w: list[float] = []
        self._power_error: str | None = None
        self._sampler_error: str | None = None
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None

    # -- public API -----------------------------------------------------------------------

    @property
    def reading(self) -> GpuReading | None:
        """The reading from `stop()` (or the `with` block), None while still measuring."""
        return self._reading

    @property
    def available(self) -> bool:
        """Whether NVML came up in `start()` (the sampler may still fail later)."""
        return self._started and self._unavailable_reason is None

    def start(self) -> GpuMonitor:
        """Bring NVML up and start sampling; on any NVML failure, record why and carry on."""
        with self._lock:
            if self._started:
                raise RuntimeError("GpuMonitor.start() called twice; use one monitor per span")
            self._started = True
            self._t_start = time.perf_counter()
            try:
                self._open_device()
            except Exception as exc:  # ImportError, NVMLError_*, anything a fake raises
                self._unavailable_reason = _describe(exc)
                log.debug("GPU metering unavailable: %s", self._unavailable_reason)
                self._shutdown()
                return self
            self._thread = threading.Thread(
                target=self._run, name=f"GpuMonitor-sampler-{next(_thread_ids)}", daemon=True
            )
            self._thread.start()
            return self

    def stop(self) -> GpuReading:
        """Stop sampling (the thread is joined before this returns) and return the reading.

        Idempotent: a second call returns the same reading.
        """
        with self._lock:
            if not self._started:
                raise RuntimeError("GpuMonitor.stop() called before start()")
            if self._reading is not None:
                return self._reading
            try:
                self._reading = self._finish()
            finally:
                self._shutdown()
            return self._reading

    def __enter__(self) -> GpuMonitor:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- internals ------------------------------------------------------------------------

    def _open_device(self) -> None:
        nvml = _load_nvml(self._nvml_override)
        nvml.nvmlInit()
        self._nvml = nvml
        self._initialised = True
        self._handle = nvml.nvmlDeviceGetHandleByIndex(self.device_index)
        try:
            name = nvml.nvmlDeviceGetName(self._handle)
            self._device_name = name.decode() if isinstance(name, bytes) else str(name)
        except Exception as exc:  # the name is a label only; metering works without it
            log.debug("nvmlDeviceGetName failed: %s", _describe(exc))
        try:
            self._energy_start_mj = float(nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle))
        except Exception as exc:
            # Pre-Volta devices (and some vGPU/MIG setups) lack the counter: integrate power.
            log.debug("energy counter unsupported (%s); integrating power instead", _describe(exc))
            self._energy_start_mj = None
            self._sample_power = True
        # The first sample is taken here, not in the thread, so that a device whose
        # utilisation is unreadable (e.g. a MIG slice) is reported unavailable at once.
        self._sample()

    def _sample(self) -> None:
        """One utilisation sample (and a power sample in fallback mode), timestamped."""
        now = time.perf_counter()
        util = float(self._nvml.nvmlDeviceGetUtilizationRates(self._handle).gpu)
        self._times.append(now)
        self._util.append(util)
        if self._sample_power:
            try:
                power_mw = float(self._nvml.nvmlDeviceGetPowerUsage(self._handle))
            except Exception as exc:
                # Power is only needed for energy; losing it must not cost the GPU-seconds.
                self._sample_power = False
                self._power_error = _describe(exc)
                log.warning("GPU power reading failed, energy will not be reported: %s", self._power_error)
            else:
                self._power_times.append(now)
                self._power_w.append(power_mw / 1000.0)

    def _run(self) -> None:
        """Sampler thread: one sample per interval on a fixed schedule until told to stop."""
        next_t = self._times[-1] + self.interval_s
        try:
            while not self._stop_event.wait(max(0.0, next_t - time.perf_counter())):
                self._sample()
                next_t += self.interval_s
                now = time.perf_counter()
                if next_t < now:
                    # Fell behind (a stalled NVML call, a busy host): resume the cadence from
                    # now instead of firing a burst of back-to-back catch-up samples.
                    next_t = now + self.interval_s
        except Exception as exc:
            # Recorded and surfaced by stop() as an unavailable reading, never dropped silently.
            self._sampler_error = _describe(exc)
            log.warning("GPU sampler thread failed: %s", self._sampler_error)

    def _finish(self) -> GpuReading:
        if self._thread is not None:
            self._stop_event.set()
            self._thread.join()  # no timeout: the thread must not outlive stop()
        if self._unavailable_reason is None and self._sampler_error is None:
            try:
                self._sample()  # closes the integral exactly at stop time
            except Exception as exc:
                self._sampler_error = _describe(exc)
        energy_j = (
            self._energy_j() if self._unavailable_reason is None and self._sampler_error is None else None
        )
        wall_s = time.perf_counter() - self._t_start

        if self._unavailable_reason is not None or self._sampler_error is not None:
            reason = self._unavailable_reason or f"sampler failed: {self._sampler_error}"
            return GpuReading(
                available=False,
                gpu_s=None,
                gpu_energy_j=None,
                wall_s=wall_s,
                samples=len(self._times),
                unavailable_reason=reason,
                device_name=self._device_name,
            )
        gpu_s = trapezoid(self._times, [u / 100.0 for u in self._util])
        return GpuReading(
            available=True,
            gpu_s=gpu_s,
            gpu_energy_j=energy_j,
            wall_s=wall_s,
            samples=len(self._times),
            unavailable_reason=None,
            device_name=self._device_name,
        )

    def _energy_j(self) -> float | None:
        if self._energy_start_mj is not None:
            try:
                end_mj = float(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle))
            except Exception as exc:
                log.warning("GPU energy counter failed at stop, energy not reported: %s", _describe(exc))
                return None
            if end_mj < self._energy_start_mj:  # counter reset (driver reload): no honest value
                log.warning("GPU energy counter went backwards, energy not reported")
                return None
            return (end_mj - self._energy_start_mj) / 1000.0
        if self._power_error is None and len(self._power_w) >= 2:
            return trapezoid(self._power_times, self._power_w)
        return None

    def _shutdown(self) -> None:
        if self._initialised:
            self._initialised = False
            try:
                self._nvml.nvmlShutdown()
            except Exception as exc:  # nothing left to measure; shutting down is best effort
                log.debug("nvmlShutdown failed: %s", _describe(exc))


def nvml_status(nvml: object | None = None) -> str | None:
    """None if NVML initialises and sees at least one GPU here, else the reason why not.

    Cheap: one init, one device count, one shutdown; nothing is sampled.
    """
    try:
        lib = _load_nvml(nvml)
        lib.nvmlInit()
    except Exception as exc:
        return _describe(exc)
    try:
        count = int(lib.nvmlDeviceGetCount())
        return None if count > 0 else "NVML initialised but reports no GPU"
    except Exception as exc:
        return _describe(exc)
    finally:
        try:
            lib.nvmlShutdown()
        except Exception as exc:
            log.debug("nvmlShutdown failed: %s", _describe(exc))


def nvml_index(torch_index: int) -> int:
    """NVML's number of the GPU torch calls `torch_index`: NVML numbers devices physically while torch numbers the
    visible ones, so the index is mapped through CUDA_VISIBLE_DEVICES when that lists plain indices."""
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    if torch_index < len(visible) and visible[torch_index].isdigit():
        return int(visible[torch_index])
    return torch_index

"""Tests for bench.running.gpu: a scripted fake NVML for the arithmetic, real pynvml for the no-GPU path."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest

from bench.running.gpu import GpuMonitor, GpuReading, nvml_status, trapezoid

STEP_S = 0.5  # the fake GPU runs at 50% (100 W) until STEP_S after nvmlInit, then 100% (200 W)
LOW_UTIL, HIGH_UTIL = 50.0, 100.0
LOW_W, HIGH_W = 100.0, 200.0


class FakeNvmlError(Exception):
    """Stands in for pynvml.NVMLError (the monitor must not depend on the real class)."""


class FakeNvml:
    """Module-like NVML double: utilisation and power follow a step in time, energy integrates power."""

    def __init__(
        self, energy_supported: bool = True, power_supported: bool = True, fail_after_s: float | None = None
    ):
        self.energy_supported = energy_supported
        self.power_supported = power_supported
        self.fail_after_s = fail_after_s  # utilisation starts raising this long after init
        self.t0: float | None = None
        self.inits = 0
        self.shutdowns = 0
        self.util_calls = 0

    def _elapsed(self) -> float:
        assert self.t0 is not None, "NVML used before nvmlInit"
        return time.perf_counter() - self.t0

    def nvmlInit(self) -> None:
        self.inits += 1
        self.t0 = time.perf_counter()

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def nvmlDeviceGetCount(self) -> int:
        return 1

    def nvmlDeviceGetHandleByIndex(self, index: int) -> object:
        if index != 0:
            raise FakeNvmlError("Invalid Argument")
        return "handle-0"

    def nvmlDeviceGetName(self, handle: object) -> bytes:
        return b"Fake GPU"

    def nvmlDeviceGetUtilizationRates(self, handle: object) -> SimpleNamespace:
        self.util_calls += 1
        t = self._elapsed()
        if self.fail_after_s is not None and t > self.fail_after_s:
            raise FakeNvmlError("GPU is lost")
        return SimpleNamespace(gpu=LOW_UTIL if t < STEP_S else HIGH_UTIL, memory=0)

    def nvmlDeviceGetPowerUsage(self, handle: object) -> int:
        if not self.power_supported:
            raise FakeNvmlError("Not Supported")
        return int(1000 * (LOW_W if self._elapsed() < STEP_S else HIGH_W))

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: object) -> int:
        if not self.energy_supported:
            raise FakeNvmlError("Not Supported")
        return int(round(5_000_000 + 1000 * expected_energy_j(self._elapsed())))


def expected_gpu_s(t: float) -> float:
    """Analytic GPU-seconds of the fake over [0, t]."""
    return (LOW_UTIL * min(t, STEP_S) + HIGH_UTIL * max(t - STEP_S, 0.0)) / 100.0


def expected_energy_j(t: float) -> float:
    """Analytic joules of the fake over [0, t]."""
    return LOW_W * min(t, STEP_S) + HIGH_W * max(t - STEP_S, 0.0)


def sampler_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("GpuMonitor-sampler")]


def run_for(monitor: GpuMonitor, seconds: float) -> GpuReading:
    monitor.start()
    time.sleep(seconds)
    return monitor.stop()


def test_trapezoid_is_exact_on_piecewise_linear() -> None:
    assert trapezoid([0.0, 1.0, 3.0], [0.0, 1.0, 1.0]) == pytest.approx(2.5)
    assert trapezoid([0.0], [1.0]) == 0.0
    with pytest.raises(ValueError):
        trapezoid([0.0, 1.0], [1.0])


def test_gpu_seconds_energy_and_rate_match_the_script() -> None:
    fake = FakeNvml()
    monitor = GpuMonitor(interval_s=0.05, nvml=fake)
    reading = run_for(monitor, 1.0)

    assert reading.available and reading.unavailable_reason is None
    assert reading.device_name == "Fake GPU"
    assert reading.wall_s == pytest.approx(1.0, abs=0.1)
    # The trapezoid smears the 50->100% step over one interval: error <= 0.25 * interval.
    assert reading.gpu_s == pytest.approx(expected_gpu_s(reading.wall_s), abs=0.25 * 0.05 + 0.01)
    # The counter difference is exact; only the microseconds between clock reads differ.
    assert reading.gpu_energy_j == pytest.approx(expected_energy_j(reading.wall_s), abs=1.0)
    assert reading.samples / reading.wall_s >= 10.0
    assert reading.samples == fake.util_calls
    assert fake.inits == fake.shutdowns == 1
    assert monitor.reading is reading

    metrics = reading.as_metrics()
    assert metrics == {"gpu_available": 1.0, "gpu_s": reading.gpu_s, "gpu_energy_j": reading.gpu_energy_j}


def test_energy_falls_back_to_power_integration() -> None:
    fake = FakeNvml(energy_supported=False)
    reading = run_for(GpuMonitor(interval_s=0.02, nvml=fake), 1.0)

    assert reading.available
    assert reading.gpu_energy_j is not None
    # Power is sampled like utilisation, so the 100->200 W step costs <= 0.25 * interval * 100 W.
    assert reading.gpu_energy_j == pytest.approx(
        expected_energy_j(reading.wall_s), abs=0.25 * 0.02 * 100 + 1.0
    )
    assert reading.gpu_s == pytest.approx(expected_gpu_s(reading.wall_s), abs=0.25 * 0.02 + 0.01)


def test_no_energy_when_neither_counter_nor_power_is_supported() -> None:
    fake = FakeNvml(energy_supported=False, power_supported=False)
    reading = run_for(GpuMonitor(interval_s=0.05, nvml=fake), 0.2)

    assert reading.available
    assert reading.gpu_energy_j is None
    assert reading.gpu_s is not None
    assert "gpu_energy_j" not in reading.as_metrics()
    assert "gpu_s" in reading.as_metrics()


def test_thread_is_gone_after_stop_and_context_manager_works() -> None:
    before = set(sampler_threads())
    fake = FakeNvml()
    with GpuMonitor(interval_s=0.02, nvml=fake) as monitor:
        time.sleep(0.1)
        thread = monitor._thread
        assert thread is not None and thread.is_alive() and thread.daemon
        assert monitor.reading is None
    assert thread not in threading.enumerate()
    assert set(sampler_threads()) == before
    assert monitor.reading is not None and monitor.reading.available
    assert monitor.stop() is monitor.reading  # stop() is idempotent
    assert fake.shutdowns == 1


def test_sampler_exception_is_recorded_not_swallowed() -> None:
    fake = FakeNvml(fail_after_s=0.1)
    monitor = GpuMonitor(interval_s=0.02, nvml=fake)
    reading = run_for(monitor, 0.3)

    assert not reading.available
    assert reading.unavailable_reason is not None
    assert "GPU is lost" in reading.unavailable_reason and "FakeNvmlError" in reading.unavailable_reason
    assert reading.gpu_s is None and reading.gpu_energy_j is None
    assert reading.as_metrics() == {"gpu_available": 0.0}
    assert monitor._thread not in threading.enumerate()
    assert fake.inits == fake.shutdowns == 1


def test_bad_device_index_is_unavailable_not_raised() -> None:
    fake = FakeNvml()
    reading = run_for(GpuMonitor(device_index=3, nvml=fake), 0.01)
    assert not reading.available
    assert "Invalid Argument" in (reading.unavailable_reason or "")
    assert fake.inits == fake.shutdowns == 1  # an init that led nowhere is still shut down


@pytest.mark.parametrize("interval_s", [0.2, 0.11, 1.0, 0.0, -0.05])
def test_interval_must_sample_at_10_hz_or_faster(interval_s: float) -> None:
    with pytest.raises(ValueError):
        GpuMonitor(interval_s=interval_s, nvml=FakeNvml())


def test_interval_of_exactly_10_hz_is_accepted() -> None:
    assert GpuMonitor(interval_s=0.1, nvml=FakeNvml()).interval_s == 0.1


def test_start_twice_and_stop_before_start_raise() -> None:
    monitor = GpuMonitor(nvml=FakeNvml())
    with pytest.raises(RuntimeError):
        monitor.stop()
    monitor.start()
    with pytest.raises(RuntimeError):
        monitor.start()
    monitor.stop()


def test_nvml_status_with_fake() -> None:
    assert nvml_status(FakeNvml()) is None


def test_real_nvml_degrades_gracefully() -> None:
    """Real pynvml: on a machine without a GPU this must report why, not raise or invent numbers."""
    monitor = GpuMonitor()
    monitor.start()
    reading = monitor.stop()
    assert reading.wall_s >= 0.0
    assert monitor._thread is None or monitor._thread not in threading.enumerate()
    status = nvml_status()
    if status is None:
        pytest.skip("NVML works here; the no-GPU path is covered where it does not")
    assert isinstance(status, str) and status
    assert not reading.available
    assert reading.unavailable_reason
    assert reading.gpu_s is None and reading.gpu_energy_j is None
    metrics = reading.as_metrics()
    assert metrics == {"gpu_available": 0.0}
    assert "gpu_s" not in metrics and "gpu_energy_j" not in metrics


_NVML_STATUS = nvml_status()


@pytest.mark.skipif(_NVML_STATUS is not None, reason=f"NVML unavailable: {_NVML_STATUS}")
def test_real_gpu_is_metered() -> None:
    torch = pytest.importorskip("torch")
    with GpuMonitor(interval_s=0.05) as monitor:
        if torch.cuda.is_available():
            a = torch.randn(2048, 2048, device="cuda")
            deadline = time.perf_counter() + 0.5
            while time.perf_counter() < deadline:
                a = (a @ a).clamp_(-1.0, 1.0)
            torch.cuda.synchronize()
        else:
            time.sleep(0.3)
    reading = monitor.reading
    assert reading is not None and reading.available, reading
    assert reading.gpu_s is not None and reading.gpu_s >= 0.0
    assert reading.gpu_energy_j is None or reading.gpu_energy_j >= 0.0
    assert reading.samples / reading.wall_s >= 10.0

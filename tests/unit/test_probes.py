"""Probe logic with stand-in targets: what runs where, in which order, and what is reused."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_vmcontainer.comparison import probes
from pytest_vmcontainer.comparison.measure import Comparison
from pytest_vmcontainer.errors import ProbeError, TargetError
from pytest_vmcontainer.runtime.timing import plain_timer
from pytest_vmcontainer.targets.base import CommandResult


class StandIn:
    """A target that answers the CPU script with a fixed time and logs each run."""

    def __init__(self, kind: str, seconds: float, log: list[str]) -> None:
        self.kind, self.seconds, self.log = kind, seconds, log
        self.mode = "tcg" if kind == "vm" else "container"
        self.mode_reason = "stand-in"

    def run(self, command: str) -> CommandResult:
        self.log.append(self.kind)
        return CommandResult(0, f"{int(self.seconds * 1e9)}\n", "")


class StandInInstances:
    def __init__(self, targets: dict[str, Any], failing: tuple[str, ...] = ()) -> None:
        self.targets, self.failing, self.asked = targets, failing, []

    def get(self, kind: str) -> Any:
        self.asked.append(kind)
        if kind in self.failing:
            raise TargetError(f"the {kind} did not come up", "look at its log")
        return self.targets[kind]


@pytest.fixture
def log(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    runs: list[str] = []

    def host_run(script: str) -> str:
        runs.append("host")
        return f"{int(1e9)}\n"

    monkeypatch.setattr(probes, "run_host", host_run)
    return runs


def _comparison(instances: Any, kinds: tuple[str, ...], rounds: int = 3) -> Comparison:
    settings = probes.MeasureSettings(rounds=rounds, warmup=1)
    return Comparison(instances, settings, kinds=kinds)


def test_one_measurement_interleaves_every_selected_target_and_the_second_reuses_it(
        log: list[str]) -> None:
    vm, container = StandIn("vm", 3.0, log), StandIn("container", 1.1, log)
    instances = StandInInstances({"vm": vm, "container": container})
    comparison = _comparison(instances, ("vm", "container"))
    vm_figures = comparison.measure("performance", vm)  # type: ignore[arg-type]
    assert log == ["host", "container", "vm"] * 4  # a warm-up round, then 3 rounds
    assert instances.asked == ["container"]
    measured = comparison.figures["performance"]
    assert set(measured) == {"vm", "container", "host"}  # the container's share is kept too
    assert measured["container"]["mode"] == "container" and vm_figures["mode"] == "tcg"
    assert all(len(measured[who]["rounds_s"]) == 3 and measured[who]["paired"]
               for who in ("vm", "container", "host"))
    assert measured["host"]["round_order"] == "host, container, vm"
    assert vm_figures["ratio_to_native"] == pytest.approx(3.0)
    assert vm_figures["ratio_to_container"] == pytest.approx(3.0 / 1.1)
    assert vm_figures["ratio_to_native_ci95"] == pytest.approx([3.0, 3.0])

    log.clear()
    again = comparison.measure("performance", container)  # type: ignore[arg-type]
    assert log == []  # no second measurement
    assert again["ratio_to_native"] == pytest.approx(1.1)
    report = comparison.report({})
    performance = next(row for row in report.rows if row.id == "performance")
    assert performance.verdict is not None and "95% CI" in performance.verdict.reason


def test_with_only_the_container_selected_it_pairs_host_and_container(log: list[str]) -> None:
    container = StandIn("container", 1.0, log)
    instances = StandInInstances({"container": container})
    comparison = _comparison(instances, ("container",), rounds=2)
    figures = comparison.measure("performance", container)  # type: ignore[arg-type]
    assert log == ["host", "container"] * 3 and instances.asked == []
    assert set(comparison.figures["performance"]) == {"container", "host"}
    assert figures["ratio_to_native_ci95"] is None  # 2 rounds: no interval
    assert "ratio_to_container" not in figures


def test_a_target_that_did_not_come_up_is_left_out_of_the_pairing(log: list[str]) -> None:
    container = StandIn("container", 1.0, log)
    instances = StandInInstances({"container": container}, failing=("vm",))
    comparison = _comparison(instances, ("vm", "container"))
    comparison.measure("performance", container)  # type: ignore[arg-type]
    assert set(log) == {"host", "container"}
    with pytest.raises(ProbeError, match="was not up when the CPU rounds"):
        comparison.measure("performance", StandIn("vm", 3.0, log))  # type: ignore[arg-type]


def test_the_plain_timer_keeps_the_rounds_aligned_after_the_warm_up() -> None:
    calls: list[str] = []
    timer = plain_timer(3, 2)
    timer(lambda: calls.append("work"), setup=lambda: calls.append("setup"))
    assert calls == ["setup", "work"] * 5


# --- storage ------------------------------------------------------------------------------------

def test_the_storage_script_runs_for_real_and_parses(tmp_path: Any) -> None:
    output = probes.run_host(probes.storage_script(str(tmp_path / "io"), 4, 8))
    figures = probes.parse_storage(output)
    assert all(figures[key] > 0 for key in ("write_mb_s", "read_mb_s", "sync_write_iops"))
    assert list((tmp_path / "io").iterdir()) == []  # its files are removed


def test_a_filesystem_that_refuses_o_direct_is_reported_not_measured_otherwise() -> None:
    output = "dd: failed to open '/x/vmc-io.bin': Invalid argument\n"
    with pytest.raises(ProbeError, match="refuses"):
        probes.parse_storage(output, "the container at /x")


def test_the_storage_working_set_cannot_be_shrunk_below_256_mib() -> None:
    from pytest_vmcontainer.errors import UsageError

    assert probes.MeasureSettings().storage_mib == 256
    with pytest.raises(UsageError, match="at least 256 MiB"):
        probes.MeasureSettings(storage_mib=64)


DD_OUTPUT = ("268435456 bytes (268 MB, 256 MiB) copied, 1.0 s, 268 MB/s\n"
             "268435456 bytes (268 MB, 256 MiB) copied, 0.5 s, 537 MB/s\n"
             "1048576 bytes (1.0 MB, 1.0 MiB) copied, 0.1 s, 10.5 MB/s\n")


class StorageInstance:
    def __init__(self, kind: str, overrides: dict[str, Any], log: list[str]) -> None:
        self.kind, self.overrides, self.log = kind, overrides, log
        self.resource_name = f"vmc-test-{kind}-storage"

    def up(self) -> None:
        self.log.append("up")

    def run(self, command: str) -> CommandResult:
        self.log.append("run /vmc-volume" if "/vmc-volume" in command else "run /var/tmp")
        return CommandResult(0, DD_OUTPUT, "")

    def disk_cache_mode(self) -> str | None:
        return self.overrides.get("disk_cache")


class StorageInstances:
    def __init__(self, tmp_path: Any) -> None:
        self.log: list[str] = []
        self.made: list[StorageInstance] = []
        self.tmp_path = tmp_path

    def extra(self, kind: str, label: str, **overrides: Any) -> StorageInstance:
        self.made.append(StorageInstance(kind, overrides, self.log))
        return self.made[-1]

    def discard(self, target: Any) -> None:
        self.log.append("discard")

    def scratch_dir(self, name: str) -> Any:
        return self.tmp_path


def test_storage_runs_on_its_own_instance_with_a_volume_or_an_uncached_disk(
        log: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.setattr(probes, "run_host", lambda script: log.append("host") or DD_OUTPUT)
    instances = StorageInstances(tmp_path)
    comparison = _comparison(instances, ("vm", "container"), rounds=2)
    container = comparison.measure("storage", StandIn("container", 1, log))  # type: ignore[arg-type]
    assert instances.made[0].overrides == {"volumes": {"data": "/vmc-volume"}}
    assert instances.log == ["up", *["run /var/tmp", "run /vmc-volume"] * 3, "discard"]
    assert container["disk_cache"] is None and container["write_mb_s"] == pytest.approx(268.4,
                                                                                      rel=1e-3)
    assert container["volume_read_rounds_mb_s"] == pytest.approx([536.9] * 2, rel=1e-3)
    assert "O_DIRECT" in container["method"] and container["working_set_mib"] == 256
    vm = comparison.measure("storage", StandIn("vm", 1, log))  # type: ignore[arg-type]
    assert instances.made[1].overrides == {"disk_cache": "none"}
    assert vm["disk_cache"] == "none" and "volume_write_mb_s" not in vm
    assert log.count("host") == 2  # the host's rounds are taken once per run
    assert comparison.figures["storage"]["host"]["method"] == vm["method"]

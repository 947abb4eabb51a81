"""Probe logic with stand-in targets: what runs where, in which order, and what is reused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_vmcontainer.comparison import probes
from pytest_vmcontainer.comparison.measure import Comparison
from pytest_vmcontainer.errors import ProbeError, TargetError
from pytest_vmcontainer.runtime.timing import plain_timer
from pytest_vmcontainer.targets.base import CommandResult, TargetSpec


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
        self.targets, self.failing = targets, failing
        self.asked: list[str] = []

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


class ExportingStandIn(StandIn):
    """A StandIn whose backend can export, as the storage row needs (its instances are faked
    by StorageInstances, so neither method is called)."""

    def export(self, directory: Any, timer: Any = None) -> Any:
        raise AssertionError("StorageInstances makes the instances")

    def instance_from_export(self, spec: Any) -> Any:
        raise AssertionError("StorageInstances makes the instances")


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
    def run_host(script: str) -> str:
        log.append("host")
        return DD_OUTPUT

    monkeypatch.setattr(probes, "run_host", run_host)
    instances = StorageInstances(tmp_path)
    comparison = _comparison(instances, ("vm", "container"), rounds=2)
    container = comparison.measure("storage", ExportingStandIn("container", 1, log))  # type: ignore[arg-type]
    assert instances.made[0].overrides == {"volumes": {"data": "/vmc-volume"}}
    assert instances.log == ["up", *["run /var/tmp", "run /vmc-volume"] * 3, "discard"]
    assert container["disk_cache"] is None and container["write_mb_s"] == pytest.approx(268.4,
                                                                                      rel=1e-3)
    assert container["volume_read_rounds_mb_s"] == pytest.approx([536.9] * 2, rel=1e-3)
    assert "O_DIRECT" in container["method"] and container["working_set_mib"] == 256
    vm = comparison.measure("storage", ExportingStandIn("vm", 1, log))  # type: ignore[arg-type]
    assert instances.made[1].overrides == {"disk_cache": "none", "vm_restore": True}
    assert vm["disk_cache"] == "none" and "volume_write_mb_s" not in vm
    assert log.count("host") == 2  # the host's rounds are taken once per run
    assert comparison.figures["storage"]["host"]["method"] == vm["method"]


class Restarted:
    """A run's target, stopped and started again by the warm boot probe."""

    kind = "container"

    def __init__(self, spec: TargetSpec, fail: bool = False) -> None:
        self.spec, self.fail = spec, fail
        self.waited_for: list[str | None] = []

    def stop(self) -> None:
        pass

    def start(self, ready_path: str | None = None) -> None:
        self.waited_for.append(ready_path or self.spec.ready_path)
        if self.fail:
            raise TargetError("the container did not come back", "look at its log")


class Exported:
    def export(self, kind: str) -> None:
        pass


@pytest.mark.parametrize("fail", [False, True])
def test_warm_boots_wait_for_http_200_and_leave_the_runs_spec_alone(
        tmp_path: Path, fail: bool) -> None:
    run_spec = TargetSpec("1a2b", tmp_path / "work", tmp_path / "Vagrantfile",
                          tmp_path / "Dockerfile", ready_path="/health")
    target = Restarted(run_spec, fail)
    ctx = probes.ProbeContext(Exported(), probes.MeasureSettings(boot_rounds=2),  # type: ignore[arg-type]
                              plain_timer(2, 0))
    if fail:
        with pytest.raises(TargetError):
            probes.probe_boot(ctx, target, "warm")  # type: ignore[arg-type]
    else:
        figures, _ = probes.probe_boot(ctx, target, "warm")  # type: ignore[arg-type]
        assert len(figures["warm_rounds_s"]) == 2
    assert target.waited_for == ["/"] * (1 if fail else 2)
    assert target.spec is run_spec and target.spec.ready_path == "/health"


# --- portability ----------------------------------------------------------------------------------

def _tar_bytes(tmp_path: Any, size: int = 3_000_000) -> Any:
    """A tar of text-like content, so that compression level matters."""
    import tarfile

    source = tmp_path / "content.txt"
    words = [f"line {i} of the export, {i * 7919 % 1000} {'x' * (i % 13)}\n" for i in range(60000)]
    source.write_text("".join(words)[:size])
    path = tmp_path / "export.tar"
    with tarfile.open(path, "w") as tar:
        tar.add(source, arcname="content.txt")
    return path


def test_gzip1_of_a_plain_tar_matches_gzip_minus_1(tmp_path: Any) -> None:
    import shutil
    import subprocess

    path = _tar_bytes(tmp_path)
    packed = probes.gzip1(path)
    assert not packed.was_gzip and packed.raw_bytes == path.stat().st_size
    if shutil.which("gzip"):
        real = len(subprocess.run(["gzip", "-1", "-c", str(path)], capture_output=True,
                                  check=True).stdout)
        assert abs(packed.gzip1_bytes - real) / real < 0.02, (packed.gzip1_bytes, real)
    assert packed.gzip1_bytes < packed.raw_bytes and packed.gzip1_seconds > 0


def test_gzip1_of_a_gzip_box_decompresses_then_recompresses_at_level_1(tmp_path: Any) -> None:
    import gzip

    path = _tar_bytes(tmp_path)
    plain = probes.gzip1(path)
    box = tmp_path / "app.box"
    # Two gzip members, as concatenated archives have: both must be read.
    content = path.read_bytes()
    box.write_bytes(gzip.compress(content[:1_000_000], 9) + gzip.compress(content[1_000_000:], 9))
    packed = probes.gzip1(box)
    assert packed.was_gzip and packed.raw_bytes == len(content)
    assert packed.gzip1_bytes == plain.gzip1_bytes  # the same content at the same level
    assert box.stat().st_size < packed.gzip1_bytes  # level 9 as made: not alike


def test_final_base_follows_stages_and_ignores_scratch(tmp_path: Any) -> None:
    from pytest_vmcontainer.targets.docker.images import final_base

    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM pytest-vmcontainer/debian:bookworm\nRUN true\n")
    assert final_base(dockerfile) == "pytest-vmcontainer/debian:bookworm"
    dockerfile.write_text("FROM --platform=linux/amd64 debian:12 AS build\nRUN make\n"
                          "from build\nCOPY . /\n")
    assert final_base(dockerfile) == "debian:12"
    dockerfile.write_text("FROM scratch\nCOPY app /\n")
    assert final_base(dockerfile) is None


def _saved_image(tmp_path: Any, oci: bool) -> Any:
    """A docker-save-like tar: config, three layers (the third a link to the first)."""
    import io
    import json
    import tarfile

    path = tmp_path / ("oci.tar" if oci else "legacy.tar")
    names = ([f"blobs/sha256/{c * 64}" for c in "abc"] if oci else
             [f"{c * 64}/layer.tar" for c in "abc"])
    with tarfile.open(path, "w") as tar:
        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        add("config.json", b'{"rootfs": {}}')
        add(names[0], b"base layer " * 100)
        add(names[1], b"app layer " * 50)
        link = tarfile.TarInfo(names[2])  # a layer stored once, linked from the second use
        if oci:
            link.type, link.linkname = tarfile.LNKTYPE, names[0]
        else:
            link.type, link.linkname = tarfile.SYMTYPE, "../" + names[0]
        tar.addfile(link)
        add("manifest.json", json.dumps([{"Config": "config.json", "RepoTags": ["app:1"],
                                          "Layers": names}]).encode())
    return path, names


@pytest.mark.parametrize("oci", [False, True], ids=["legacy", "oci"])
def test_copy_layers_keeps_the_layers_above_the_base(tmp_path: Any, oci: bool) -> None:
    import json
    import tarfile

    from pytest_vmcontainer.targets.docker.export import copy_layers

    saved, names = _saved_image(tmp_path, oci)
    out = tmp_path / "delta.tar"
    assert copy_layers(saved, out, skip=1) == 2
    with tarfile.open(out) as delta:
        assert sorted(delta.getnames()) == sorted(["config.json", *names[1:], "manifest.json"])
        manifest = json.load(delta.extractfile("manifest.json"))  # type: ignore[arg-type]
        assert manifest[0]["Layers"] == names[1:]
        linked = delta.extractfile(names[2])
        assert linked is not None and linked.read() == b"base layer " * 100  # resolved


def test_a_damaged_export_is_a_probe_error_with_a_remedy(tmp_path: Any) -> None:
    box = tmp_path / "app.box"
    box.write_bytes(probes.GZIP_MAGIC + b"\x08\x00 not really gzip" * 10)

    class Exports:
        def export(self, kind: str, timer: Any = None) -> Any:
            from pytest_vmcontainer.targets.base import Export

            return Export(box, box.stat().st_size, 1.0, "vagrant package (libvirt box, gzip tar)")

    ctx = probes.ProbeContext(Exports(), probes.MeasureSettings(),  # type: ignore[arg-type]
                              plain_timer(1, 0))
    with pytest.raises(ProbeError, match=r"cannot read the vm.s export .*app\.box.*run again"):
        probes.probe_export(ctx, StandIn("vm", 1, []))  # type: ignore[arg-type]

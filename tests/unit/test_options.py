"""Resolution of the plugin's settings: precedence, sources, parsing and file checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_vmcontainer import options
from pytest_vmcontainer.errors import SettingError
from pytest_vmcontainer.options import BY_NAME, Resolved, check_files, resolve


class FakeSources:
    """Raw command-line and ini values, as the plugin's pytest adapter would give them."""

    def __init__(self, cli: dict[str, str] | None = None,
                 ini: dict[str, str] | None = None) -> None:
        self._cli = cli or {}
        self._ini = ini or {}

    def cli(self, name: str) -> str | None:
        return self._cli.get(name)

    def ini(self, name: str) -> str | None:
        return self._ini.get(name)


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    invocation, ini = tmp_path / "invocation", tmp_path / "ini"
    invocation.mkdir()
    ini.mkdir()
    return invocation, ini


def _resolve(dirs: tuple[Path, Path], cli: dict[str, str] | None = None,
             env: dict[str, str] | None = None,
             ini: dict[str, str] | None = None) -> dict[str, Resolved]:
    return resolve(FakeSources(cli, ini), env or {}, *dirs)


@pytest.mark.parametrize(("cli", "env", "ini", "value", "source"), [
    ("vm", "container", "container", "vm", "command line"),
    (None, "container", "vm", "container", "env VMC_TARGET"),
    (None, None, "vm", "vm", "ini vmc_target"),
    (None, None, None, "both", "default"),
])
def test_precedence_cli_env_ini_default(dirs: tuple[Path, Path], cli: str | None,
                                        env: str | None, ini: str | None, value: str,
                                        source: str) -> None:
    resolved = _resolve(dirs, {"vmc_target": cli} if cli else None,
                        {"VMC_TARGET": env} if env else None,
                        {"vmc_target": ini} if ini else None)["vmc_target"]
    assert (resolved.value, resolved.source) == (value, source)
    assert resolved.raw == (cli or env or ini or "both")


def test_every_default_parses(dirs: tuple[Path, Path]) -> None:
    resolved = _resolve(dirs)
    assert set(resolved) == set(BY_NAME)
    assert all(r.source == "default" for r in resolved.values())
    # Ports come from the Dockerfile and the Vagrantfile; --vmc-ports only adds to them.
    assert resolved["vmc_ports"].value == ()
    assert resolved["vmc_ready_path"].value is None
    assert resolved["vmc_reuse"].value is False
    assert resolved["vmc_host_setup"].value is True
    assert resolved["vmc_boot_timeout"].value == 600.0


def test_paths_from_cli_and_env_are_relative_to_the_invocation_dir(
        dirs: tuple[Path, Path]) -> None:
    invocation, _ = dirs
    resolved = _resolve(dirs, cli={"vmc_vagrantfile": "vm/Vagrantfile"},
                        env={"VMC_DOCKERFILE": "ct/Dockerfile",
                             "VMC_PROVISION_INPUTS": "a, b"})
    assert resolved["vmc_vagrantfile"].value == (invocation / "vm/Vagrantfile").resolve()
    assert resolved["vmc_dockerfile"].value == (invocation / "ct/Dockerfile").resolve()
    assert resolved["vmc_provision_inputs"].value == (
        (invocation / "a").resolve(), (invocation / "b").resolve())


def test_paths_from_ini_and_default_are_relative_to_the_ini_dir(dirs: tuple[Path, Path]) -> None:
    _, ini = dirs
    resolved = _resolve(dirs, ini={"vmc_vagrantfile": "boxes/Vagrantfile"})
    assert resolved["vmc_vagrantfile"].value == (ini / "boxes/Vagrantfile").resolve()
    assert resolved["vmc_dockerfile"].value == (ini / "Dockerfile").resolve()
    assert resolved["vmc_provision_inputs"].value == ((ini / "fixtures").resolve(),)


def test_absolute_path_is_kept(dirs: tuple[Path, Path], tmp_path: Path) -> None:
    absolute = tmp_path / "elsewhere" / "Vagrantfile"
    resolved = _resolve(dirs, ini={"vmc_vagrantfile": str(absolute)})
    assert resolved["vmc_vagrantfile"].value == absolute.resolve()


@pytest.mark.parametrize(("where", "source"), [
    ("cli", "command line"), ("env", "env VMC_TARGET"), ("ini", "ini vmc_target")])
def test_invalid_target_names_allowed_values_and_source(dirs: tuple[Path, Path], where: str,
                                                        source: str) -> None:
    kwargs = {"cli": {"cli": {"vmc_target": "bogus"}}, "env": {"env": {"VMC_TARGET": "bogus"}},
              "ini": {"ini": {"vmc_target": "bogus"}}}[where]
    with pytest.raises(SettingError) as raised:
        _resolve(dirs, **kwargs)
    message = str(raised.value)
    assert message.startswith(f"--target (from {source}): invalid value 'bogus'")
    assert "allowed: both, vm, container" in message


def test_invalid_keep_lists_its_choices(dirs: tuple[Path, Path]) -> None:
    with pytest.raises(SettingError, match=r"--vmc-keep \(from env VMC_KEEP\).*"
                                           r"allowed: never, on-failure, always"):
        _resolve(dirs, env={"VMC_KEEP": "sometimes"})


def test_values_are_stripped(dirs: tuple[Path, Path]) -> None:
    assert _resolve(dirs, env={"VMC_TARGET": "  vm \n"})["vmc_target"].value == "vm"


@pytest.mark.parametrize(("raw", "value"), [
    ("1", True), ("true", True), ("YES", True), ("On", True),
    ("0", False), ("false", False), ("No", False), ("off", False), ("", False)])
def test_bool_parsing(raw: str, value: bool) -> None:
    assert BY_NAME["vmc_reuse"].parse(raw, "env VMC_REUSE", Path("/")) is value


def test_bad_bool(dirs: tuple[Path, Path]) -> None:
    with pytest.raises(SettingError, match=r"--vmc-reuse \(from env VMC_REUSE\): 'maybe' is not "
                                           r"a boolean; use 1/0, true/false"):
        _resolve(dirs, env={"VMC_REUSE": "maybe"})


@pytest.mark.parametrize(("raw", "value"), [
    ("80", (80,)), ("80,8080", (80, 8080)), (" 22  443 ", (22, 443)), ("1, 65535", (1, 65535)),
    ("", ())])
def test_ports_parsing(raw: str, value: tuple[int, ...]) -> None:
    assert BY_NAME["vmc_ports"].parse(raw, "command line", Path("/")) == value


@pytest.mark.parametrize(("raw", "message"), [
    ("80,http", "is not a list of port numbers"),
    ("8.5", "is not a list of port numbers"),
    ("0", "needs ports between 1 and 65535"),
    ("80 65536", "needs ports between 1 and 65535"),
    ("-1", "needs ports between 1 and 65535"),
])
def test_bad_ports(raw: str, message: str) -> None:
    with pytest.raises(SettingError) as raised:
        BY_NAME["vmc_ports"].parse(raw, "ini vmc_ports", Path("/"))
    assert str(raised.value).startswith("--vmc-ports (from ini vmc_ports): ")
    assert message in str(raised.value)


def test_positive_number(dirs: tuple[Path, Path]) -> None:
    assert _resolve(dirs, cli={"vmc_boot_timeout": "1.5"})["vmc_boot_timeout"].value == 1.5
    for raw, message in (("0", "must be a positive number, got 0"),
                         ("-3", "must be a positive number, got -3"),
                         ("soon", "'soon' is not a number")):
        with pytest.raises(SettingError, match=message) as raised:
            _resolve(dirs, cli={"vmc_boot_timeout": raw})
        assert "--vmc-boot-timeout (from command line)" in str(raised.value)


def test_int_kind_rejects_fractions() -> None:
    setting = options.Setting("n", "--n", "N", "1", "a count", kind="int")
    assert setting.parse("3", "default", Path("/")) == 3
    with pytest.raises(SettingError, match=r"'2\.5' is not a number"):
        setting.parse("2.5", "default", Path("/"))


def test_nan_is_not_a_positive_number() -> None:
    with pytest.raises(SettingError):
        BY_NAME["vmc_boot_timeout"].parse("nan", "command line", Path("/"))


def _files(dirs: tuple[Path, Path], **env: str) -> dict[str, Resolved]:
    return _resolve(dirs, env=env)


def test_check_files_missing_vagrantfile_only_matters_for_the_vm(dirs: tuple[Path, Path]) -> None:
    invocation, _ = dirs
    (invocation / "Dockerfile").write_text("FROM scratch\n")
    resolved = _files(dirs, VMC_VAGRANTFILE="missing/Vagrantfile", VMC_DOCKERFILE="Dockerfile")

    def readable(path: Path) -> bool:
        return path.is_file()

    check_files(resolved, ("container",), readable)  # the VM is not selected: no error
    for kinds in (("vm",), ("vm", "container")):
        with pytest.raises(SettingError) as raised:
            check_files(resolved, kinds, readable)
        message = str(raised.value)
        assert message.startswith("--vagrantfile (from env VMC_VAGRANTFILE): ")
        assert str((invocation / "missing/Vagrantfile").resolve()) in message
        assert "does not exist or is not readable" in message
        assert "--target=container" in message


def test_check_files_missing_dockerfile_suggests_the_vm(dirs: tuple[Path, Path]) -> None:
    resolved = _files(dirs, VMC_DOCKERFILE="nope/Dockerfile")
    check_files(resolved, ("vm",), lambda path: path.name == "Vagrantfile")
    with pytest.raises(SettingError, match=r"--dockerfile \(from env VMC_DOCKERFILE\): .*"
                                           r"nope/Dockerfile .*--target=vm"):
        check_files(resolved, ("container",), lambda path: path.name == "Vagrantfile")


def test_check_files_passes_each_selected_path_to_readable(dirs: tuple[Path, Path]) -> None:
    _, ini = dirs
    seen: list[Path] = []

    def readable(path: Path) -> bool:
        seen.append(path)
        return True

    check_files(_files(dirs), ("vm", "container"), readable)
    assert seen == [(ini / "Vagrantfile").resolve(), (ini / "Dockerfile").resolve()]


@pytest.mark.parametrize(("raw", "value"), [
    ("", None), ("none", None), ("NONE", None), ("/", (None, "/")),
    ("/health?x=1", (None, "/health?x=1")), ("8080:/health", (8080, "/health"))])
def test_ready_path_parsing(raw: str, value: tuple[int | None, str] | None) -> None:
    assert BY_NAME["vmc_ready_path"].parse(raw, "command line", Path("/")) == value


@pytest.mark.parametrize("raw", ["health", "http:/x", "0:/x", "70000:/x", "8080:health"])
def test_bad_ready_path(raw: str) -> None:
    with pytest.raises(SettingError, match=r"--vmc-ready-path \(from env VMC_READY_PATH\): .* "
                                           r"is not a path or PORT:PATH; give e\.g\. /health"):
        BY_NAME["vmc_ready_path"].parse(raw, "env VMC_READY_PATH", Path("/"))


@pytest.mark.parametrize(("raw", "expected"), [
    ("20G", 20 * 2**30), ("512M", 512 * 2**20), ("1.5T", int(1.5 * 2**40)), ("100", 100),
    ("64KiB", 64 * 1024), ("2gb", 2 * 2**30),
])
def test_a_size_reads_bytes_or_a_unit(raw: str, expected: int) -> None:
    assert options.parse_size(raw, "--vmc-vm-cache-size (from command line)") == expected


def test_a_size_that_is_not_one_says_how_to_write_it() -> None:
    with pytest.raises(SettingError, match=r"'twenty' is not a size.*e\.g\. 20G"):
        options.parse_size("twenty", "--vmc-vm-cache-size (from command line)")

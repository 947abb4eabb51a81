"""The typed settings object: one attribute per option, the types the options parse to."""

from __future__ import annotations

import types
from pathlib import Path
from typing import Union, get_args, get_origin, get_type_hints

import pytest

from pytest_vmcontainer import options
from pytest_vmcontainer.comparison.probes.context import MeasureSettings
from pytest_vmcontainer.harness import HarnessConfig
from pytest_vmcontainer.settings import PREFIX, RunSettings, attribute, attributes

# Values other than the defaults, so that every tuple has members to check.
SAMPLE = {"vmc_target": "vm", "vmc_ports": "80,8080", "vmc_ready_path": "8080:/health",
          "vmc_report": "out", "vmc_scan_paths": "/srv/app /opt",
          "vmc_scan_expect": "file /etc/x a reason\nuser app another", "vmc_reuse": "yes",
          "vmc_vm_cache_size": "1G", "vmc_http_seconds": "2.5"}


class Sources:
    def __init__(self, cli: dict[str, str]) -> None:
        self._cli = cli

    def cli(self, name: str) -> str | None:
        return self._cli.get(name)

    def ini(self, name: str) -> str | None:
        return None


def _settings(tmp_path: Path, cli: dict[str, str] | None = None,
              env: dict[str, str] | None = None) -> RunSettings:
    return RunSettings.from_resolved(
        options.resolve(Sources(cli or {}), env or {}, tmp_path, tmp_path))


def test_every_setting_has_an_attribute_and_every_attribute_a_setting() -> None:
    """A new option needs its typed attribute (and a removed one loses it)."""
    assert all(setting.name.startswith(PREFIX) for setting in options.SETTINGS)
    assert {attribute(setting.name) for setting in options.SETTINGS} == attributes()


def _conforms(value: object, hint: object) -> bool:
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        return any(_conforms(value, arg) for arg in args)
    if origin is tuple:
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_conforms(member, args[0]) for member in value)
        return len(value) == len(args) and all(map(_conforms, value, args))
    if hint is type(None):
        return value is None
    if hint is float:  # an int is a float to the type checker
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    assert isinstance(hint, type), hint
    return isinstance(value, hint)


@pytest.mark.parametrize("cli", [{}, SAMPLE], ids=["defaults", "sample"])
def test_each_value_has_its_attribute_s_type(tmp_path: Path, cli: dict[str, str]) -> None:
    settings = _settings(tmp_path, cli)
    hints = get_type_hints(RunSettings)
    wrong = {name: getattr(settings, name) for name in attributes()
             if not _conforms(getattr(settings, name), hints[name])}
    assert wrong == {}


def test_a_wrong_type_would_be_found() -> None:
    hints = get_type_hints(RunSettings)
    assert not _conforms(("80",), hints["ports"])
    assert not _conforms(True, hints["rounds"])
    assert not _conforms((8080, "/health", 1), hints["ready_path"])
    assert _conforms((None, "/health"), hints["ready_path"])


def test_values_are_the_parsed_ones(tmp_path: Path) -> None:
    settings = _settings(tmp_path, SAMPLE)
    assert settings.target == "vm" and settings.kinds == ("vm",)
    assert settings.ports == (80, 8080)
    assert settings.ready_path == (8080, "/health")
    assert settings.report == tmp_path / "out"
    assert settings.vm_cache_size == 1024 ** 3
    assert settings.reuse is True
    assert settings.vagrantfile == tmp_path / "Vagrantfile"


def test_where_each_value_came_from_is_kept(tmp_path: Path) -> None:
    settings = _settings(tmp_path, {"vmc_target": "vm"}, {"VMC_REPORT": "out"})
    assert settings.sources["vmc_target"] == "command line"
    assert settings.sources["vmc_keep"] == "default"
    assert settings.where("vmc_report") == "--vmc-report (from env VMC_REPORT)"


def test_by_name_lists_every_setting_with_its_value(tmp_path: Path) -> None:
    settings = _settings(tmp_path, SAMPLE)
    shown = settings.by_name()
    assert list(shown) == [setting.name for setting in options.SETTINGS]
    assert shown["vmc_http_seconds"] == 2.5
    assert shown["vmc_ports"] == (80, 8080)


def test_an_engine_url_is_shown_without_its_password(tmp_path: Path) -> None:
    settings = _settings(tmp_path, {"vmc_docker_host": "ssh://ci:hunter2@engines.example"})
    assert settings.by_name()["vmc_docker_host"] == "ssh://ci@engines.example"
    assert settings.docker_host == "ssh://ci:hunter2@engines.example"  # used as given


def test_engines_given_on_the_command_line_or_in_the_ini_go_into_the_environment(
        tmp_path: Path) -> None:
    """Where the docker SDK and CLI, virsh and Vagrant read them; the environment's own and
    the defaults stay as they are."""
    environ = {"DOCKER_HOST": "unix:///from/the/env.sock"}
    given = _settings(tmp_path, {"vmc_docker_host": "ssh://ci@engines.example:2222"})
    given.export_engines(environ)
    assert environ == {"DOCKER_HOST": "ssh://ci@engines.example:2222"}
    from_env: dict[str, str] = {"DOCKER_HOST": "ssh://ci@other.example"}
    _settings(tmp_path, env=from_env).export_engines(from_env)
    assert from_env == {"DOCKER_HOST": "ssh://ci@other.example"}
    untouched: dict[str, str] = {}
    defaults = _settings(tmp_path)
    defaults.export_engines(untouched)
    assert untouched == {} and defaults.libvirt_uri == "qemu:///system"


def test_the_harness_config_from_the_defaults_is_the_harness_s_default(tmp_path: Path) -> None:
    config = _settings(tmp_path).harness_config()
    assert config == HarnessConfig(tmp_path / "Vagrantfile", tmp_path / "Dockerfile",
                                   provision_inputs=(tmp_path / "fixtures",))


def test_the_harness_config_takes_its_settings(tmp_path: Path) -> None:
    cli = {**SAMPLE, "vmc_keep": "always", "vmc_boot_timeout": "30", "vmc_ready_timeout": "5",
           "vmc_vm_cache": "no", "vmc_vm_restore": "no", "vmc_rebuild_bases": "yes",
           "vmc_host_setup": "no", "vmc_provision_inputs": "a b"}
    config = _settings(tmp_path, cli).harness_config()
    assert (config.guest_ports, config.ready_port, config.ready_path) == ((80, 8080), 8080,
                                                                          "/health")
    assert (config.keep, config.reuse, config.boot_timeout, config.ready_timeout) == (
        "always", True, 30.0, 5.0)
    assert (config.vm_cache, config.vm_cache_bytes, config.vm_restore) == (False, 1024 ** 3,
                                                                          False)
    assert (config.rebuild_bases, config.setup_host) == (True, False)
    assert config.provision_inputs == (tmp_path / "a", tmp_path / "b")


def test_a_ready_path_without_a_port_leaves_the_port_to_the_harness(tmp_path: Path) -> None:
    config = _settings(tmp_path, {"vmc_ready_path": "/health"}).harness_config()
    assert (config.ready_port, config.ready_path) == (None, "/health")


def test_the_measure_settings_from_the_defaults_are_the_probes_defaults(tmp_path: Path) -> None:
    assert _settings(tmp_path).measure_settings() == MeasureSettings()


def test_the_measure_settings_take_their_settings(tmp_path: Path) -> None:
    cli = {"vmc_rounds": "5", "vmc_warmup": "0", "vmc_boot_rounds": "4", "vmc_density_vms": "3",
           "vmc_density_containers": "7", "vmc_http_requests": "100", "vmc_http_seconds": "2.5"}
    assert _settings(tmp_path, cli).measure_settings() == MeasureSettings(
        rounds=5, warmup=0, boot_rounds=4, density_vms=3, density_containers=7,
        http_requests=100, http_seconds=2.5)

"""The container target on another host's Docker engine (DOCKER_HOST=ssh://), for real.

The other host is a container of its own running sshd and dockerd (``enginehost``), reached
over SSH on 127.0.0.1 only. The shipped parity suite passes on its engine over TLS (over SSH,
with the VM there too: ``test_remote_libvirt``); nothing is left on either side; each bad
engine is one line. With ``VMC_TEST_BENCH=1`` the SSH hop's cost is
measured beside the local engine's (``bench/remote_hop.py``) on the same engine host.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration import enginehost
from tests.integration.conftest import ROOT, engines_share, error_line, run_cli, run_process


@pytest.fixture(scope="module", autouse=True)
def _engines_for_the_module() -> Iterator[None]:
    """The engine host lives across this module's tests: no daemon restarts meanwhile."""
    with engines_share(exclusive=False):
        yield


@pytest.fixture(scope="module")
def engine_image(docker_client: Any, docker_base: None,
                 tmp_path_factory: pytest.TempPathFactory) -> str:
    """Kept after the run, as the bases are (``enginehost.build``)."""
    return enginehost.build(docker_client, tmp_path_factory.mktemp("engine-image"))


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("keys")
    return {name: enginehost.keypair(directory / name) for name in ("accepted", "refused")}


@pytest.fixture(scope="module")
def engine_host(docker_client: Any, engine_image: str, keys: dict[str, Path],
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[enginehost.EngineHost]:
    """The second engine host, with the Debian base loaded (the app image is the run's)."""
    with enginehost.running(docker_client, engine_image, keys["accepted"],
                            tmp_path_factory.mktemp("engine-host")) as host:
        enginehost.preload_base(host)
        yield host


def test_the_comparison_is_refused_with_the_container_on_another_machine(
        engine_host: enginehost.EngineHost, keys: dict[str, Path], leak_check: None) -> None:
    """A VM here and a container there: each row refused in one line, and nothing started."""
    result = run_process(
        [sys.executable, "-m", "pytest", "--target=both", "suites/test_comparison.py",
         "-p", "no:cacheprovider", "-n", "0"], ROOT, timeout=300,
        env=engine_host.ssh_env(keys["accepted"]))
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-2000:]
    refusals = [line for line in result.stdout.splitlines()
                if line.startswith("comparison rows need both targets on one machine")]
    assert len(refusals) == result.stdout.count("ERROR at setup of") > 0
    assert refusals[0].startswith(
        "comparison rows need both targets on one machine, and this run puts the vm on this "
        f"host, the container on the Docker engine at {engine_host.docker_host}: ")
    assert " passed" not in result.stdout and "up in" not in result.stdout
    assert enginehost.owned_there(engine_host) == []


@pytest.fixture(scope="module")
def tls_engine_host(docker_client: Any, engine_image: str, keys: dict[str, Path],
                    tmp_path_factory: pytest.TempPathFactory
                    ) -> Iterator[tuple[enginehost.EngineHost, Path]]:
    """An engine host whose engine's API also listens over TLS (published on 127.0.0.1), and
    the client certificates that verify it."""
    server, client = enginehost.tls_certificates(tmp_path_factory.mktemp("tls"))
    directory = tmp_path_factory.mktemp("tls-engine-host")
    host = enginehost.EngineHost(f"vmc-test-engine-host-{secrets.token_hex(3)}", 0, directory)
    try:
        enginehost.start(docker_client, engine_image, host, keys["accepted"], tls=server)
        enginehost.preload_base(host)
        yield host, client
    finally:
        for removal in host.made:
            removal()


def test_the_parity_suite_passes_on_an_engine_over_tls(
        tls_engine_host: tuple[enginehost.EngineHost, Path], keys: dict[str, Path],
        tmp_path: Path, leak_check: None) -> None:
    """DOCKER_HOST=tcp:// with DOCKER_TLS_VERIFY and DOCKER_CERT_PATH, as docker reads them,
    and VMC_DOCKER_SSH for the ports: built, run and tested there; nothing left."""
    host, client = tls_engine_host
    env = host.tls_env(keys["accepted"], client)
    result = run_process([sys.executable, "-m", "pytest", "--target=container",
                          "suites/test_parity.py", "-p", "no:cacheprovider"], ROOT, timeout=900,
                         env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert f"(CONTAINER: on the Docker engine at {env['DOCKER_HOST']} (TLS; ports over SSH), " \
        "up in" in result.stdout, result.stdout[-3000:]
    assert enginehost.owned_there(host) == []
    assert enginehost.forwarders(host.port) == []


def test_an_engine_over_tls_that_does_not_trust_us_is_one_line(
        tls_engine_host: tuple[enginehost.EngineHost, Path], keys: dict[str, Path],
        tmp_path: Path, own_home: Path, leak_check: None,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Client certificates of another CA: the TLS handshake fails, named in one line."""
    host, _ = tls_engine_host
    _, strangers = enginehost.tls_certificates(tmp_path / "another-ca")
    result = run_cli("up", "--target=container", env=host.tls_env(keys["accepted"], strangers),
                     timeout=120)
    assert result.returncode != 0
    line = error_line(result.stderr)
    assert f"the TLS handshake with the Docker engine at tcp://127.0.0.1:{host.tls_port} " \
        "failed" in line and "DOCKER_CERT_PATH" not in line, line
    assert str(strangers) in line  # where the certificates it used are
    with capsys.disabled():
        print(f"\nan engine over TLS that does not trust us: {line}")
    assert "Traceback" not in result.stderr
    assert list((own_home / "sessions").iterdir()) == []
    assert enginehost.forwarders(host.port) == []


BAD_ENGINE = {"unreachable": "no SSH server answers there",
              "refused key": "refused every key offered",
              "no docker there": "has no docker command"}


@pytest.mark.parametrize("case", list(BAD_ENGINE))
def test_a_bad_engine_is_one_line_and_leaves_nothing(
        case: str, docker_client: Any, engine_image: str, keys: dict[str, Path],
        tmp_path: Path, own_home: Path, leak_check: None,
        capsys: pytest.CaptureFixture[str]) -> None:
    with enginehost.bad_host(case, docker_client, engine_image, keys, tmp_path,
                             docker=case != "no docker there") as (host, key):
        result = run_cli("up", "--target=container", env=host.ssh_env(key), timeout=120)
    enginehost.check_one_line_left_nothing(case, result, BAD_ENGINE[case], host.docker_host,
                                           host, own_home, capsys)


@pytest.mark.skipif(os.environ.get("VMC_TEST_BENCH") != "1",
                    reason="a measurement, not a check (a minute): VMC_TEST_BENCH=1 runs it")
def test_the_ssh_hop_costs(engine_host: enginehost.EngineHost, keys: dict[str, Path],
                           docker_client: Any, tmp_path: Path, record_property: Any,
                           capsys: pytest.CaptureFixture[str]) -> None:
    """Bring-up, a testinfra call and an HTTP GET, local engine against remote, alternating."""
    figures = tmp_path / "hop.json"
    shipped = {"label": f"pytest-vmcontainer.dockerfile={ROOT / 'Dockerfile'}"}
    before = {image.id for image in docker_client.images.list(filters=shipped)}
    try:
        _measure(engine_host, keys, figures, record_property, capsys)
    finally:  # the app image the local rounds built, unless it was there before
        for image in docker_client.images.list(filters=shipped):
            if image.id not in before:
                docker_client.images.remove(image.id)


def _measure(engine_host: enginehost.EngineHost, keys: dict[str, Path], figures: Path,
             record_property: Any, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_process(
        [sys.executable, str(ROOT / "bench" / "remote_hop.py"), "--rounds", "2", "--calls",
         "10", "--json", str(figures)], ROOT, timeout=900,
        env=engine_host.ssh_env(keys["accepted"]))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    with capsys.disabled():
        print(f"\n{result.stdout}", end="")
    record_property("vmc.remote_hop", json.loads(figures.read_text()))
    assert enginehost.owned_there(engine_host) == []
    assert os.environ.get("DOCKER_HOST") is None  # the bench's engines were its own business

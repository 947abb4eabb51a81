"""The engine DOCKER_HOST names, and the one-line errors of an engine over SSH."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from pytest_vmcontainer.errors import HostSetupError
from pytest_vmcontainer.host import engine, setup
from pytest_vmcontainer.runtime.progress import quiet

SSH = "ssh://deploy@build-7.example:2222"


@pytest.fixture(autouse=True)
def _nothing_reached() -> None:
    engine._reached.clear()


def test_an_unset_docker_host_is_the_local_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    local = engine.current()
    assert (local.scheme, local.over_ssh, local.over_tcp_elsewhere) == ("unix", False, False)
    assert local.described() == ""


def test_an_ssh_engine_is_reached_with_its_user_and_port() -> None:
    remote = engine.Engine.parse(SSH)
    assert remote.over_ssh
    assert remote.ssh_destination() == ["-l", "deploy", "-p", "2222", "--", "build-7.example"]
    assert engine.Engine.parse("ssh://host").ssh_destination() == ["--", "host"]
    assert remote.described() == f"on the Docker engine at {SSH}"


def test_a_password_in_the_url_is_never_shown() -> None:
    assert engine.shown("ssh://deploy:s3cret@host:22") == "ssh://deploy@host:22"
    assert "s3cret" not in engine.Engine.parse("ssh://deploy:s3cret@host").described()
    assert engine.shown(SSH) == SSH


def test_a_bad_port_is_one_line() -> None:
    with pytest.raises(HostSetupError, match="has no valid port"):
        engine.Engine.parse("ssh://host:notaport")


def test_tcp_is_local_only_on_loopback() -> None:
    assert not engine.Engine.parse("tcp://127.0.0.1:2375").over_tcp_elsewhere
    assert engine.Engine.parse("tcp://docker:2376").over_tcp_elsewhere
    with pytest.raises(HostSetupError, match="over plain TCP: whoever reaches that port is "
                       "root there") as caught:
        engine.require_reachable(engine.Engine.parse("tcp://docker:2376"))
    assert "DOCKER_HOST=ssh://USER@docker" in caught.value.remedy
    assert "VMC_DOCKER_SSH=USER@HOST" in caught.value.remedy
    with pytest.raises(HostSetupError, match="over plain TCP"):  # an SSH login does not help
        engine.require_reachable(engine.Engine.parse("tcp://docker:2376", ssh_via="ci@docker"))
    with pytest.raises(HostSetupError, match="only through SSH forwards") as caught:
        engine.require_reachable(engine.Engine.parse("tcp://docker:2376", tls=True))
    assert "VMC_DOCKER_SSH=USER@docker" in caught.value.remedy


def test_an_engine_over_tls_has_its_ports_forwarded_through_the_ssh_login(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:32800")
    monkeypatch.setenv(engine.TLS_VERIFY_ENV, "1")
    monkeypatch.setenv(engine.SSH_VIA_ENV, "root@127.0.0.1:32799")
    tls = engine.current()
    assert tls.tls and tls.over_ssh and not tls.over_tcp_elsewhere  # loopback, but elsewhere
    assert tls.ssh_destination() == ["-l", "root", "-p", "32799", "--", "127.0.0.1"]
    assert tls.ssh_machine == "127.0.0.1:32799"
    assert tls.described() == "on the Docker engine at tcp://127.0.0.1:32800 (TLS; ports over SSH)"
    monkeypatch.setenv(engine.SSH_VIA_ENV, "@:22")
    with pytest.raises(HostSetupError, match="VMC_DOCKER_SSH=@:22 names no host"):
        engine.current()


@pytest.mark.parametrize(("raised", "cause", "remedy"), [
    ("HTTPSConnectionPool(host='h', port=2376): Max retries exceeded with url: /version "
     "(Caused by SSLError(SSLCertVerificationError(1, '[SSL: CERTIFICATE_VERIFY_FAILED] "
     "certificate verify failed: unable to get local issuer certificate (_ssl.c:1006)')))",
     "the TLS handshake with the Docker engine at tcp://h:2376 failed ([SSL: "
     "CERTIFICATE_VERIFY_FAILED] certificate verify failed: unable to get local issuer "
     "certificate)", "check the CA, cert and key in /certs/client"),
    ("HTTPSConnectionPool(host='h', port=2376): Max retries exceeded with url: /version "
     "(Caused by NewConnectionError(\"HTTPSConnection(host='h', port=2376): Failed to "
     "establish a new connection: [Errno 111] Connection refused\"))",
     "the Docker engine at tcp://h:2376 does not answer over TLS ([Errno 111] Connection "
     "refused)", "dockerd listens there with --tlsverify"),
])
def test_an_engine_over_tls_that_fails_is_one_line(monkeypatch: pytest.MonkeyPatch, raised: str,
                                                   cause: str, remedy: str) -> None:
    def refused(timeout: int) -> Any:
        raise RuntimeError(raised)

    monkeypatch.setattr(engine, "_tls_version_answer", refused)
    monkeypatch.setenv(engine.CERT_PATH_ENV, "/certs/client")
    with pytest.raises(HostSetupError) as caught:
        engine.tls_version(engine.Engine.parse("tcp://h:2376", tls=True, ssh_via="ci@h"))
    assert caught.value.cause == cause
    assert remedy in caught.value.remedy


def test_over_tls_the_ssh_login_is_probed_then_the_api(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []

    def ssh(argv: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        calls.append(argv)
        return subprocess.CompletedProcess(argv, 255, "", "ci@h: Permission denied (publickey).")

    monkeypatch.setattr(subprocess, "run", ssh)
    tls = engine.Engine.parse("tcp://h:2376", tls=True, ssh_via="ci@h")
    with pytest.raises(HostSetupError) as caught:
        engine.require_reachable(tls)
    assert calls[0][-1] == "true" and calls[0][-3:-1] == ["--", "h"]
    assert caught.value.cause.startswith("the SSH server at ssh://ci@h (the SSH login for the "
                                         "ports of tcp://h:2376) refused every key offered")
    monkeypatch.setattr(subprocess, "run", lambda argv, **_: subprocess.CompletedProcess(
        argv, 0, "", ""))
    monkeypatch.setattr(engine, "tls_version", lambda found: "20.10.24")
    engine.require_reachable(tls)  # the login answers, then the API: reached


@pytest.mark.parametrize(("returncode", "stderr", "cause", "remedy"), [
    (255, "ssh: connect to host 10.9.9.9 port 22: Connection refused", "no SSH server answers",
     "sshd runs there"),
    (255, "ssh: connect to host h port 22: Connection timed out", "no SSH server answers",
     "host and port"),
    (255, "ssh: Could not resolve hostname nohost: Name or service not known",
     "does not resolve", "fix the host"),
    (255, "deploy@h: Permission denied (publickey).", "refused every key offered",
     "ssh-add"),
    (255, "Host key verification failed.", "not in known_hosts", "accept it once"),
    (127, "bash: line 1: docker: command not found", "has no docker command",
     "apt-get install docker.io"),
    (1, "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker "
        "daemon running?", "does not answer", "start dockerd there"),
    (1, "permission denied while trying to connect to the Docker daemon socket at "
        "unix:///var/run/docker.sock", "may not use that host's Docker engine", "docker group"),
    (255, "something new", "failed (something new)", "to see why"),
])
def test_each_failure_is_named_with_its_remedy(returncode: int, stderr: str, cause: str,
                                               remedy: str) -> None:
    found_cause, found_remedy = engine.explain(engine.Engine.parse(SSH), returncode, stderr)
    assert cause in found_cause
    assert remedy in found_remedy
    assert SSH in found_cause
    assert "\n" not in found_cause + found_remedy


def _fake_ssh(monkeypatch: pytest.MonkeyPatch, returncode: int, stdout: str = "",
              stderr: str = "") -> list[list[str]]:
    calls: list[list[str]] = []

    def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        calls.append(argv)
        return subprocess.CompletedProcess(argv, returncode, stdout, stderr)

    monkeypatch.setattr("pytest_vmcontainer.host.engine.subprocess.run", run)
    return calls


def test_the_probe_runs_docker_there_in_batch_mode_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fake_ssh(monkeypatch, 0, "20.10.24\n")
    monkeypatch.setenv("DOCKER_HOST", SSH)
    engine.require_reachable()
    engine.require_reachable()  # passed once: not asked again in this process
    assert len(calls) == 1
    argv = calls[0]
    assert argv[0] == "ssh" and "BatchMode=yes" in argv and "ForwardAgent=no" in argv
    assert argv[-2:] == ["build-7.example", engine.PROBE_COMMAND]


def test_a_failed_probe_raises_and_is_asked_again(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fake_ssh(monkeypatch, 255, stderr="Permission denied (publickey).")
    monkeypatch.setenv("DOCKER_HOST", SSH)
    for _ in range(2):
        with pytest.raises(HostSetupError, match="refused every key"):
            engine.require_reachable()
    assert len(calls) == 2


def test_the_sdk_shells_out_to_ssh_after_the_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    import docker

    _fake_ssh(monkeypatch, 0, "20.10.24\n")
    made: list[dict[str, Any]] = []

    def from_env(**kwargs: Any) -> str:
        made.append(kwargs)
        return "client"

    monkeypatch.setattr(docker, "from_env", from_env)
    monkeypatch.setenv("DOCKER_HOST", SSH)
    assert engine.client(timeout=7) == "client"
    monkeypatch.delenv("DOCKER_HOST")
    engine.client()
    assert made == [{"timeout": 7, "use_ssh_client": True},
                    {"timeout": 120, "use_ssh_client": False}]


def test_host_setup_names_why_a_remote_engine_does_not_answer(
        monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_ssh(monkeypatch, 255, stderr="ssh: connect to host h port 1: Connection refused")
    monkeypatch.setenv("DOCKER_HOST", SSH)
    monkeypatch.setattr(setup, "missing_packages", lambda packages: [])
    with pytest.raises(HostSetupError, match="no SSH server answers there"):
        setup.ensure_host(quiet(), {"docker"})


def test_over_tls_the_probe_asks_the_engine_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The answer that would pick a client's API version has the engine's version: the probe
    asks ``/version`` once, through a session that reads no CA bundle from the environment."""
    import docker

    asked: list[bool] = []

    class OneAnswer:
        def __init__(self, **_: Any) -> None:
            self.trust_env = True

        def version(self, api_version: bool = True) -> dict[str, str]:
            asked.append(self.trust_env)
            return {"Version": "24.0.9", "ApiVersion": "1.43"}

        def close(self) -> None:
            pass

    monkeypatch.setattr(docker, "APIClient", OneAnswer)
    found = engine.tls_version(engine.Engine.parse("tcp://h:2376", tls=True, ssh_via="ci@h"))
    assert found == "24.0.9" and asked == [False]

"""``python -m pytest_vmcontainer scan`` on real containers (the real Docker engine).

Two images from two Dockerfiles that drift on purpose, in every category the scan
knows; the scan must find each drift, and nothing else unexpected. Then a container
against the local host. Containers run with no network; they listen on loopback only.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_vmcontainer.host.bases import DOCKER_BASE_IMAGE
from pytest_vmcontainer.targets.base import OWNER, OWNER_LABEL
from tests.integration.conftest import fixture_labels, run_cli

SERVE = "busybox httpd -f -p 8080 -h /srv"
SAME = f"""FROM {DOCKER_BASE_IMAGE}
RUN apt-get update -q && apt-get install -y -q --no-install-recommends busybox \\
    && rm -rf /var/lib/apt/lists/* && echo hello > /srv/index.html
"""
STEADY = SAME + f"""RUN printf 'level=info\\n' > /etc/app.conf
CMD ["sh", "-c", "exec {SERVE}"]
"""
# The drifting twin: one change per category (sysctl: a docker run option, below).
DRIFTING = SAME + f"""RUN apt-get update -q && apt-get install -y -q --no-install-recommends less \\
    && rm -rf /var/lib/apt/lists/*
RUN useradd --uid 1500 --no-create-home --shell /usr/sbin/nologin drifter \\
    && groupadd --gid 1600 extras
RUN printf 'level=debug\\n' > /etc/app.conf && chmod 600 /etc/app.conf \\
    && echo Europe/Paris > /etc/timezone
ENV APP_MODE=debug
CMD ["sh", "-c", "ulimit -n 4096; busybox httpd -p 9090 -h /srv; exec {SERVE}"]
"""
DRIFT = {
    ("package", "less"),
    ("file", "/etc/alternatives/pager"), ("file", "/etc/alternatives/pager.1.gz"),  # less's
    ("user", "drifter"),
    ("group", "drifter"),  # useradd's user group: part of the same drift
    ("group", "extras"),
    ("port", "tcp [::]:9090"),  # busybox listens on every address, IPv6 included
    ("process", "busybox (root)"),  # the second httpd
    ("file", "/etc/app.conf"),
    ("file", "/etc/timezone"),
    ("file", "/etc/passwd"), ("file", "/etc/group"), ("file", "/etc/gshadow"),  # useradd's,
    ("file", "/etc/subuid"), ("file", "/etc/subgid"),  # groupadd's records of the drift
    ("environment", "busybox (root): APP_MODE"),
    ("limit", "busybox (root): Max open files"),
    ("sysctl", "net.core.somaxconn"),
    ("system", "timezone"),
}


@pytest.fixture
def containers(docker_client: Any, docker_base: None, tmp_path: Path,
               leak_check: None) -> Iterator[dict[str, str]]:
    """The steady and the drifting container, running; removed afterwards."""
    images, running = [], []
    names: dict[str, str] = {}
    try:
        for name, dockerfile, options in (
                ("steady", STEADY, {}),
                ("drifting", DRIFTING, {"sysctls": {"net.core.somaxconn": "1024"}})):
            context = tmp_path / name
            context.mkdir()
            (context / "Dockerfile").write_text(dockerfile)
            image, _ = docker_client.images.build(path=str(context), rm=True, forcerm=True,
                                                  labels={OWNER_LABEL: OWNER, **fixture_labels()})
            images.append(image.id)
            container = docker_client.containers.run(
                image.id, detach=True, network_mode="none",
                labels={OWNER_LABEL: OWNER, **fixture_labels()},
                name=f"vmc-scan-test-{name}-{uuid.uuid4().hex[:6]}", **options)
            running.append(container)
            names[name] = container.name
        yield names
    finally:
        for container in running:
            container.remove(force=True)
        for image in images:
            docker_client.images.remove(image, force=True)


def test_two_containers_that_drift(containers: dict[str, str], tmp_path: Path) -> None:
    report = tmp_path / "report"
    done = run_cli("scan", f"docker://{containers['steady']}",
                   f"docker://{containers['drifting']}", "--ports", "8080",
                   "--report", str(report), "--fail-on-diff")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "the scan found 19 unexpected differences" in done.stderr
    saved = json.loads((report / "scan.json").read_text())
    found = {(d["category"], d["item"]) for d in saved["differences"] if d["expected"] is None}
    assert found == DRIFT
    by_item = {d["item"]: d for d in saved["differences"]}
    assert by_item["busybox (root): Max open files"]["container"] == "4096 / 4096"
    assert by_item["busybox (root): APP_MODE"] == {
        "category": "environment", "item": "busybox (root): APP_MODE", "vm": None,
        "container": "debug", "expected": None}
    assert by_item["timezone"]["container"] == "Europe/Paris"
    assert all(seconds < 10 for seconds in saved["collected_in_s"].values())
    assert "drifter" in (report / "comparison.html").read_text()


def test_a_container_against_the_local_host(containers: dict[str, str],
                                            tmp_path: Path) -> None:
    done = run_cli("scan", f"docker://{containers['steady']}", "local://",
                   "--report", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].startswith("scanned in vm ")
    saved = json.loads((tmp_path / "scan.json").read_text())
    assert saved["hosts"] == {"vm": f"docker://{containers['steady']}", "container": "local://"}
    assert saved["same"] > 0 and saved["differences"]
    # the same kernel on both sides: a container shares its host's
    assert not [d for d in saved["differences"] if d["item"] == "kernel"]


def test_a_host_that_is_not_one_is_one_line(docker_client: Any) -> None:
    done = run_cli("scan", "nowhere", "local://")
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "pytest-vmcontainer: error: 'nowhere' is not a host to scan: give a testinfra host "
        "(ssh://user@host?sudo=true, docker://NAME, local://, ...) or vm / container for a "
        "kept target")


def test_a_kept_container_by_kind(docker_base: None, leak_check: None, tmp_path: Path) -> None:
    """``scan container HOST``: the kept target of a run, found by its kind."""
    import re

    from pytest_vmcontainer import lifecycle, targets

    up = run_cli("up", "--target=container", "--keep=always")
    assert up.returncode == 0, up.stderr
    session = re.search(r"kept container vmc-(\w+)-container", up.stdout + up.stderr)
    assert session, up.stdout + up.stderr
    try:
        done = run_cli("scan", "container", "local://", "--session", session.group(1),
                       "--report", str(tmp_path))
        assert done.returncode == 0, done.stderr
        saved = json.loads((tmp_path / "scan.json").read_text())
        assert saved["hosts"]["vm"] == f"container vmc-{session.group(1)}-container"
        assert saved["same"] > 0 and saved["collected_in_s"]["vm"] < 10
    finally:
        lifecycle.sweep(targets.default_leftovers(), include_marked=True,
                        only={session.group(1)})

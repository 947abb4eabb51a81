"""Shared pieces of the real-engine tests: host setup, built bases, leak checks."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pytest_vmcontainer import lifecycle, targets
from pytest_vmcontainer.host import bases as images
from pytest_vmcontainer.host import setup as hostsetup
from pytest_vmcontainer.runtime.progress import Progress
from pytest_vmcontainer.targets.base import OWNER, OWNER_LABEL, SESSION_LABEL
from pytest_vmcontainer.targets.docker import connect
from pytest_vmcontainer.targets.vagrant import libvirt_names

ROOT = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def docker_client(request: pytest.FixtureRequest) -> Iterator[Any]:
    with _visible(request):
        hostsetup.ensure_host(Progress())
    client = connect()
    yield client
    client.close()


@pytest.fixture(scope="session")
def bases(request: pytest.FixtureRequest, docker_client: Any) -> None:
    """Both bases built (a cold build takes minutes: its progress is shown)."""
    with _visible(request):
        images.ensure_bases(Progress(), docker_client, want_box=True)


@pytest.fixture(scope="session")
def docker_base(request: pytest.FixtureRequest, docker_client: Any) -> None:
    """The Docker base only, for tests that bring up no VM (they leave the box alone)."""
    with _visible(request):
        images.ensure_bases(Progress(), docker_client, want_box=False)


@pytest.fixture(scope="session")
def bootloader_box(request: pytest.FixtureRequest, docker_client: Any) -> str:
    """The box built like a public one (GRUB, Vagrant's key replacement), built before the
    run that uses it, so a cold build (minutes, with progress) is not counted against that
    run's timeout; the run's VagrantTarget.prepare then finds it current."""
    with _visible(request):
        return images.ensure_box(Progress(), box=images.BOOTLOADER_BOX)


def _visible(request: pytest.FixtureRequest) -> Any:
    capman = request.config.pluginmanager.getplugin("capturemanager")
    return capman.global_and_fixture_disabled()


def other_live_runs() -> set[str]:
    """Sessions whose lock another process holds now (/proc/locks names the holder): runs
    sharing this machine, such as a CI run or a colleague's. Their targets come and go while
    a test runs and are not that test's leaks; the test's own runs have ended by then."""
    holders: dict[int, int] = {}  # inode of a flock'ed file -> the pid holding it
    with open("/proc/locks") as locks:
        for fields in (line.split() for line in locks):
            # "1: FLOCK  ADVISORY  WRITE 4136 00:1a:12345 0 EOF" (waiters have "->" first)
            if len(fields) >= 6 and fields[1] == "FLOCK":
                holders[int(fields[5].rsplit(":", 1)[1])] = int(fields[4])
    live = set()
    for session in lifecycle.paths.sessions_dir().iterdir():
        try:
            holder = holders.get((session / "lock").stat().st_ino)
        except OSError:
            continue
        if holder is not None and holder != os.getpid():
            live.add(session.name)
    return live


@dataclass(frozen=True)
class Snapshot:
    """What exists now that a run could leak: compared before and after the run."""

    containers: frozenset[tuple[str, str]]  # (id, the session label or "")
    volumes: frozenset[str]
    dangling_images: frozenset[str]
    libvirt: frozenset[str]
    sessions: frozenset[str]

    @classmethod
    def take(cls, client: Any) -> Snapshot:
        return cls(
            containers=frozenset((c.id, c.labels.get(SESSION_LABEL, ""))
                                 for c in client.containers.list(all=True)),
            volumes=frozenset(v.name for v in client.volumes.list()),
            dangling_images=frozenset(i.id for i in client.images.list(
                filters={"dangling": True})),
            libvirt=frozenset(libvirt_names("vmc-")),
            sessions=frozenset(p.name for p in lifecycle.paths.sessions_dir().iterdir()),
        )

    def new_since(self, before: Snapshot, others: Collection[str] = ()) -> dict[str, set[str]]:
        """What is new since ``before``, except what belongs to the sessions ``others``."""
        prefixes = tuple(f"vmc-{session}-" for session in others)
        grown = {
            "containers": {cid for cid, session in self.containers - before.containers
                           if session not in others},
            "volumes": {n for n in self.volumes - before.volumes if not n.startswith(prefixes)},
            "dangling images": set(self.dangling_images - before.dangling_images),
            "libvirt domains/volumes": {n for n in self.libvirt - before.libvirt
                                        if not n.startswith(prefixes)},
            "session dirs": set(self.sessions - before.sessions - set(others)),
        }
        return {what: names for what, names in grown.items() if names}


@pytest.fixture
def leak_check(docker_client: Any) -> Iterator[None]:
    """Fails the test if the run left a container, Docker volume, image, libvirt domain or
    volume, or a session dir. Those of other runs live on this machine are not counted."""
    before = Snapshot.take(docker_client)
    yield
    leaked = Snapshot.take(docker_client).new_since(before, other_live_runs())
    assert not leaked, f"the run left resources behind: {leaked}"


def leftovers(session_id: str) -> list[str]:
    """What still carries ``session_id`` on this host (empty after a clean teardown)."""
    return lifecycle.leftovers(session_id, targets.default_leftovers())


def owned_containers(client: Any) -> list[Any]:
    return list(client.containers.list(all=True, filters={"label": f"{OWNER_LABEL}={OWNER}"}))


def run_cli(*args: str, env: dict[str, str] | None = None,
            timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest_vmcontainer", *args], cwd=ROOT,
                          env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, check=False)


def error_line(stderr: str) -> str:
    """The one error line the command line prints, asserting there is exactly one."""
    errors = [line for line in stderr.splitlines() if line.startswith("pytest-vmcontainer: error")]
    assert len(errors) == 1, stderr
    return errors[0]


def write_project(directory: Path, dockerfile: str | None = None,
                  vagrantfile: str | None = None) -> Path:
    """A project of its own: copies of the shipped files, optionally replaced."""
    import shutil

    shutil.copytree(ROOT / "fixtures", directory / "fixtures")
    shutil.copyfile(ROOT / ".dockerignore", directory / ".dockerignore")
    (directory / "Dockerfile").write_text(dockerfile or (ROOT / "Dockerfile").read_text())
    (directory / "Vagrantfile").write_text(vagrantfile or (ROOT / "Vagrantfile").read_text())
    return directory

"""Shared pieces of the real-engine tests: host setup, bases and the shipped VM prepared in the
background while the quick lanes run, leak checks.

Once collection knows which lanes run, ``Prepared`` starts what they need: the host setup,
the Docker base, the box (and the boot-loader box when its test is selected), and the
shipped VM warmed into the provisioned-VM cache with a saved running state. All of that
overlaps the unit lane (and the container lane overlaps the VM's warm-up), so a cold
machine pays for it once, behind tests that run anyway. Fixtures wait for their piece.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from pytest_vmcontainer import lifecycle, targets
from pytest_vmcontainer.errors import WaitTimeout
from pytest_vmcontainer.host import bases as images
from pytest_vmcontainer.host import libvirt, paths
from pytest_vmcontainer.runtime.background import Job, StillRunning
from pytest_vmcontainer.runtime.waiting import wait_for
from pytest_vmcontainer.targets import vmcache
from pytest_vmcontainer.targets.base import OWNER, OWNER_LABEL, SESSION_LABEL
from pytest_vmcontainer.targets.docker.client import connect, listed_images
from pytest_vmcontainer.targets.vagrant import libvirt_names
from tests import npmtools
from tests.conftest import ON_FIRST_TEST, lane_group

ROOT = Path(__file__).resolve().parents[2]
RUN_HOME = paths.home()  # the VMC_HOME the run began with (a test's own_home is another)
T = TypeVar("T")
WARM_UP_RUNS = 2  # provision, cache and keep the saved state; (a retry)
# What `up` prints once a saved state exists: it kept the provisioned VM's, saved a booted
# one, or restored one (a restore that fails boots and saves again). "restored from the VM
# cache" is pytest's wording, not up's.
WARMED = ("keeping the provisioned VM for later runs", "saving the ready VM for later runs",
          "restoring the saved VM")


class Prepared:
    """What the selected real-engine tests need, made in background jobs (see the module doc).

    Each piece is ``python -m pytest_vmcontainer setup|build|up`` in a process of its own
    session: the tests' own harnesses, which stop every process this one tracks at their
    teardown, never stop it, and a terminal's Ctrl-C reaches it only through ``stop``.
    Their output goes to a log file: the terminal belongs to the tests running meanwhile.

    ``start`` begins the pieces a set of tests will need, early; ``need`` makes one on
    demand (and what it comes after), so a fixture finds its piece in any case.
    """

    def __init__(self, worker: str = "") -> None:
        # The environment as the run began: a test's own VMC_HOME (monkeypatched while a piece
        # starts later, the warm-up's second run say) is not the shared home's.
        self._env = dict(os.environ)
        self.log = paths.ensure_dir(paths.home() / "logs") / f"tests-prepared{worker}.log"
        self.log.write_text("")
        self._lock = threading.RLock()
        self._children: list[subprocess.Popen[str]] = []
        self._jobs: dict[str, Job[Any]] = {}
        self._stopping = False

    def _make(self, name: str) -> Job[Any]:
        """One piece's job; what it comes after is made first."""
        if name == "engines":
            return Job("host setup", lambda: self._tool("setup"))
        if name == "docker_base":
            engines = self.need("engines")
            return Job("the Docker base",
                       lambda: self._after(engines, "build", "--target=container"))
        if name == "box":
            engines = self.need("engines")
            return Job("the box", lambda: self._after(engines, "build", "--target=vm"))
        if name == "bootloader_box":
            # After the box, not beside it: one build at a time keeps guestfish's appliance
            # off a loaded host (see boxes.make_bootloader_disk).
            box = self.need("box")
            return Job("the boot-loader box", lambda: self._after(
                box, "build", "--target=vm", "--box", images.BOOTLOADER_BOX.name))
        if name == "shipped_vm":
            box = self.need("box")
            return Job("the shipped VM, warmed into the VM cache",
                       lambda: self._warm_shipped_vm(box))
        # Clients some tests drive, fetched once (minutes on a new machine): Debian's chromium
        # after the host setup's apt, the npm packages at once.
        if name == "chromium":
            engines = self.need("engines")
            return Job("chromium", lambda: self._after_job(engines, install_chromium))
        if name == "npm":
            return Job("gitlab-ci-local", lambda: npmtools.package(*npmtools.GITLAB_CI_LOCAL))
        raise KeyError(f"no piece named {name}")

    def need(self, name: str) -> Job[Any]:
        """The piece's job, started now unless it already was."""
        with self._lock:
            if name not in self._jobs:
                self._jobs[name] = self._make(name)
            return self._jobs[name]

    def start(self, items: Collection[pytest.Item]) -> None:
        """Begin what ``items`` will need, so that it overlaps the tests before them."""
        for name in plan(items):
            self.need(name)

    def _tool(self, *args: str) -> str:
        """``python -m pytest_vmcontainer ARGS`` to its end; its output, also in the log.

        It holds a share of the engines while it runs (``engines_share``): a test that
        restarts a daemon waits for it. It takes its share past that test's turn, which
        may be waiting for a test that waits for this piece."""
        with engines_share(exclusive=False, queue=False):
            with self._lock:
                if self._stopping:
                    raise RuntimeError("the test run is ending")
                process = subprocess.Popen(
                    [sys.executable, "-m", "pytest_vmcontainer", *args], cwd=ROOT,
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    text=True, start_new_session=True, env=self._env)
                self._children.append(process)
            output, _ = process.communicate()
        with self._lock, self.log.open("a") as log:
            log.write(f"{time.strftime('%H:%M:%S')} $ python -m pytest_vmcontainer "
                      f"{' '.join(args)} (exit {process.returncode})\n{output}")
        if process.returncode != 0:
            last = output.strip().splitlines()[-1:] or ["no output"]
            raise RuntimeError(f"python -m pytest_vmcontainer {' '.join(args)} failed "
                               f"({last[0]}); see {self.log}")
        return output

    def _after(self, first: Job[Any], *args: str) -> str:
        first.wait()
        return self._tool(*args)

    @staticmethod
    def _after_job(first: Job[Any], work: Callable[[], T]) -> T:
        first.wait()
        return work()

    def _warm_shipped_vm(self, box: Job[Any]) -> None:
        """``up --target=vm`` of the shipped files until the run restores or saves its VM: the
        first run on a cold machine provisions and caches, the second boots from the cache
        and saves. In a process of its own, so that leak checks count it as another run's.
        One worker at a time (both may run VM tests): a second warm-up waits for the first,
        then restores, instead of provisioning the same VM beside it."""
        box.wait()
        with open(paths.ensure_dir(RUN_HOME) / "tests-shipped-vm.lock", "a") as lock, \
                shipped_slots(alone=False):
            fcntl.flock(lock, fcntl.LOCK_EX)
            for _ in range(WARM_UP_RUNS):
                if any(word in self._tool("up", "--target=vm") for word in WARMED):
                    return
        raise RuntimeError(f"the shipped VM was not saved after {WARM_UP_RUNS} runs; see "
                           f"{self.log}")

    def wait(self, request: pytest.FixtureRequest, name: str) -> Any:
        """The piece's result, saying on the terminal when the test has to wait for it."""
        job = self.need(name)
        try:
            return job.wait(timeout=1.0)
        except StillRunning:
            pass
        started = time.monotonic()
        with _visible(request):
            print(f"\n[tests] waiting for {job.name} (log {self.log})", flush=True)
            try:
                return job.wait()
            finally:
                print(f"[tests] {job.name}: waited {time.monotonic() - started:.0f}s",
                      flush=True)

    def stop(self) -> None:
        """Ctrl-C or the end of the run: each piece still running gets SIGINT (by its id),
        tears down what it made, and ends."""
        with self._lock:
            self._stopping = True
            running = [child for child in self._children if child.poll() is None]
        for child in running:
            child.send_signal(signal.SIGINT)
        for child in running:
            try:
                child.wait(timeout=300)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()


def plan(items: Collection[pytest.Item]) -> list[str]:
    """The pieces the real-engine tests among ``items`` need, in the order to start them."""
    selected = [item for item in items if item.get_closest_marker("integration")]
    if not selected:
        return []
    fixtures = {name for item in selected for name in getattr(item, "fixturenames", ())}
    vm = any(item.get_closest_marker("vm") for item in selected) or "bases" in fixtures
    wanted = {"engines": True, "docker_base": True, "box": vm,
              "bootloader_box": "bootloader_box" in fixtures,
              "shipped_vm": bool({"shipped_vm", "shipped_vm_entry"} & fixtures),
              "chromium": "chromium" in fixtures,
              "npm": any(item.path.name == "test_ci_examples.py" for item in selected)}
    return [name for name, wanted_now in wanted.items() if wanted_now]


def install_chromium() -> str | None:
    """Debian's chromium (for the report's browser test), installed when missing and this is
    root on Debian; None when it is not there."""
    found = shutil.which("chromium")
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], env=env,
                       capture_output=True, timeout=900, check=False,
                       stdin=subprocess.DEVNULL)
        found = shutil.which("chromium")
    return found


ENGINES_LOCK = RUN_HOME / "tests-engines.lock"
ENGINES_GATE = RUN_HOME / "tests-engines.gate"
_held = threading.local()  # what this thread holds: None, "shared" or "exclusive"
_exclusive_here = threading.Event()  # this process's test has the engines to itself


@contextmanager
def engines_share(exclusive: bool, queue: bool = True) -> Iterator[None]:
    """The engines (dockerd, libvirtd, QEMU's host) shared by the tests and the pieces being
    prepared, or left to one test that restarts a daemon or times something (``exclusive``).

    A readers-writer lock over flock(2) in the run's home, so it holds across pytest-xdist
    workers. The gate gives a waiting exclusive test its turn: no new test starts sharing
    meanwhile. ``queue=False`` (the background pieces) takes a share past the gate, because
    a test holding a share may be waiting for that piece; and a piece of the process whose
    test has the engines to itself takes none, because that test may be waiting for it.
    Nested calls in one thread hold what the outer one took."""
    if getattr(_held, "mode", None) is not None or (not queue and _exclusive_here.is_set()):
        yield
        return
    paths.ensure_dir(RUN_HOME)
    with open(ENGINES_LOCK, "a") as lock:
        if queue:
            with open(ENGINES_GATE, "a") as gate:
                fcntl.flock(gate, fcntl.LOCK_EX)  # closing the file lets the gate go
                fcntl.flock(lock, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        else:
            fcntl.flock(lock, fcntl.LOCK_SH)
        _held.mode = "exclusive" if exclusive else "shared"
        if exclusive:
            _exclusive_here.set()
        try:
            yield
        finally:
            if exclusive:
                _exclusive_here.clear()
            _held.mode = None
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture(autouse=True)
def _engines(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every real-engine test shares the engines; one marked ``exclusive`` has them alone."""
    with engines_share(exclusive=request.node.get_closest_marker("exclusive") is not None):
        yield


SHIPPED_SLOTS_LOCK = RUN_HOME / "tests-shipped-slots.lock"


@contextmanager
def shipped_slots(alone: bool) -> Iterator[None]:
    """The shipped VM's two saved slots: any run of the shipped files may restore into one
    (the warm-up, every ``shipped_vm`` test), so a test that counts who restores them has
    them to itself (``shipped_vm_alone``) while the other worker runs any other test. A
    readers-writer lock over flock(2) in the run's home. A test takes it after its share of
    the engines (``_shipped_slots`` asks for ``_engines``); the warm-up takes its share of
    the engines while it holds the slots, which cannot deadlock because it only shares them
    and no test holding the engines alone waits for a whole hold of the slots."""
    paths.ensure_dir(RUN_HOME)
    with open(SHIPPED_SLOTS_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        yield


@pytest.fixture(autouse=True)
def _shipped_slots(request: pytest.FixtureRequest, _engines: None) -> Iterator[None]:
    """A test of the shipped VM shares its slots; one marked ``shipped_vm_alone`` has them."""
    if "shipped_vm" not in request.fixturenames:
        yield
        return
    with shipped_slots(alone=request.node.get_closest_marker("shipped_vm_alone") is not None):
        yield


PREPARED = pytest.StashKey[Prepared]()


def pytest_collection_finish(session: pytest.Session) -> None:
    """Without workers, start what the whole selection needs; an xdist worker waits for its
    first test, which tells the lane it was given (``tests/conftest.py``)."""
    if not any(item.get_closest_marker("integration") for item in session.items):
        return
    workerinput = getattr(session.config, "workerinput", None)
    if workerinput is None:
        session.config.stash[PREPARED] = Prepared()
        session.config.stash[PREPARED].start(session.items)
        return
    prepared = session.config.stash[PREPARED] = Prepared(f"-{workerinput['workerid']}")

    def start_for_the_lane(first: pytest.Item) -> None:
        group = lane_group(first)
        prepared.start([item for item in session.items if lane_group(item) == group])

    session.config.stash.setdefault(ON_FIRST_TEST, []).append(start_for_the_lane)


def pytest_sessionfinish(session: pytest.Session) -> None:
    prepared = session.config.stash.get(PREPARED, None)
    if prepared is not None:
        prepared.stop()


def _prepared(request: pytest.FixtureRequest) -> Prepared:
    return request.config.stash[PREPARED]


@pytest.fixture(scope="session")
def docker_client(request: pytest.FixtureRequest) -> Iterator[Any]:
    """The Docker engine, once the host is set up (packages, dockerd, libvirtd)."""
    prepared = _prepared(request)
    prepared.wait(request, "engines")
    client = connect()
    yield client
    client.close()


@pytest.fixture(scope="session")
def docker_base(request: pytest.FixtureRequest, docker_client: Any) -> None:
    """The Docker base only, for tests that bring up no VM (they leave the box alone)."""
    prepared = _prepared(request)
    prepared.wait(request, "docker_base")


@pytest.fixture(scope="session")
def bases(request: pytest.FixtureRequest, docker_base: None) -> None:
    """Both bases built (a cold build takes minutes: see the prepared log)."""
    prepared = _prepared(request)
    prepared.wait(request, "box")


@pytest.fixture(scope="session")
def bootloader_box(request: pytest.FixtureRequest, bases: None) -> str:
    """The box built like a public one (GRUB, Vagrant's key replacement), built before the
    run that uses it, so that its cold build is not counted against that run's timeout."""
    prepared = _prepared(request)
    prepared.wait(request, "bootloader_box")
    return images.BOOTLOADER_BOX.name


@pytest.fixture(scope="session")
def shipped_vm(request: pytest.FixtureRequest, bases: None) -> None:
    """The shipped Vagrantfile's VM is in the provisioned-VM cache and has a saved running
    state: runs of the shipped files restore it in seconds, whichever test comes first."""
    prepared = _prepared(request)
    prepared.wait(request, "shipped_vm")


@pytest.fixture(scope="session")
def shipped_vm_entry(request: pytest.FixtureRequest, bases: None) -> None:
    """The shipped Vagrantfile's VM cache entry, for a test that boots it on libvirt on another
    machine and so never restores into the shipped VM's saved slots: the same warm-up as
    ``shipped_vm``, without a share of the slots (``_shipped_slots``), so the tests that need
    them alone do not wait for it."""
    _prepared(request).wait(request, "shipped_vm")


@contextmanager
def home_qemu_reaches() -> Iterator[Path]:
    """A new directory for a ``VMC_HOME``, removed afterwards. Not under ``tmp_path``: QEMU
    runs as libvirt's own user, which cannot pass through pytest's private basetemp (mode
    700), and the harness refuses a home whose VM disks QEMU could not reach."""
    import tempfile

    home = Path(tempfile.mkdtemp(prefix="vmc-test-home-", dir="/var/tmp"))
    try:
        home.chmod(0o755)
        yield home
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def own_home(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A ``VMC_HOME`` of this test's own (for this process and the runs it starts), for tests
    that clean, evict or sweep, or rebuild a base: whatever they remove, the shared home's
    caches and every other run's targets stay. Ask for it before ``leak_check``."""
    from pytest_vmcontainer.host import libvirt

    with home_qemu_reaches() as home:
        monkeypatch.setenv(paths.HOME_ENV, str(home))
        yield home
        libvirt.remove_storage_pool()  # this home's, when a run made one


def _visible(request: pytest.FixtureRequest) -> Any:
    capman = request.config.pluginmanager.getplugin("capturemanager")
    return capman.global_and_fixture_disabled()


# A lock whose file is gone (" (deleted)") is that of a run removing its session directory:
# Session.close and the sweep remove it before they let the lock go.
SESSION_LOCK = re.compile(r"/sessions/([^/]+)/lock(?: \(deleted\))?$")
# On what a test makes itself (not through a run): which test process made it. Another
# process's is that process's fixture, not a leak of this test (pytest-xdist workers).
TEST_PID_LABEL = "pytest-vmcontainer-tests.pid"


def fixture_labels() -> dict[str, str]:
    return {TEST_PID_LABEL: str(os.getpid())}


def other_live_runs() -> set[str]:
    """Sessions whose lock another process holds now (/proc/locks names the holder): runs
    sharing this machine, such as a CI run, a colleague's, or another xdist worker's test
    under its own home. Their targets come and go while a test runs and are not that
    test's leaks; the test's own runs have ended by then."""
    holders: dict[int, int] = {}  # inode of a flock'ed file -> the pid holding it
    with open("/proc/locks") as locks:
        for fields in (line.split() for line in locks):
            # "1: FLOCK  ADVISORY  WRITE 4136 00:1a:12345 0 EOF" (waiters have "->" first)
            if len(fields) >= 6 and fields[1] == "FLOCK":
                holders[int(fields[5].rsplit(":", 1)[1])] = int(fields[4])
    held = {ino for ino, pid in holders.items() if pid != os.getpid()}
    # (the file to stat, the session it locks): through /proc, as a lock being removed
    # has no path left to stat
    locks_open = [(f"/proc/{pid}/fd/{fd}", found.group(1))
                  for pid in set(holders.values()) - {os.getpid()}
                  for fd, path in _open_fds(pid) if (found := SESSION_LOCK.search(path))]
    # This test's home (own_home) and the one the run began with, where the background
    # preparation runs: its warm-up's restored VM is named after its slot, locked there.
    for sessions in {paths.sessions_dir(), RUN_HOME / "sessions"}:
        locks_open += [(str(session / "lock"), session.name)
                       for session in (sessions.iterdir() if sessions.is_dir() else ())]
    live = set()
    for path, session in locks_open:
        try:
            if os.stat(path).st_ino in held:
                live.add(session)
        except OSError:
            continue
    return live


def sessions_held_by(pid: int) -> set[str]:
    """The sessions (and saved-VM slots) whose lock the process ``pid`` or one of its
    descendants (pytest-xdist workers) holds open: its runs'."""
    return {found.group(1) for process in _with_descendants(pid)
            for path in _open_files(process) if (found := SESSION_LOCK.search(path))}


def running_vms() -> set[str]:
    """The running VM domains, each as ``name#id``. A domain started again under the same
    name (a restore into the slot another run just left) has a new id."""
    rows = libvirt.run_virsh("list").stdout.splitlines()[2:]  # after the two header rows
    return {f"{columns[1]}#{columns[0]}" for row in rows if len(columns := row.split()) >= 2}


def new_vms_of_run(pid: int, before: Collection[str]) -> list[str]:
    """The names of the run's VM domains (a session's ``-default``) started since
    ``before`` (``running_vms()``): those whose session or slot the process ``pid`` or a
    worker of it holds. The other test worker's runs start VMs meanwhile, under their own
    sessions' names or, restored, under the slot names this run's may take next."""
    held = sessions_held_by(pid)
    names = [vm.partition("#")[0] for vm in running_vms() - set(before)]
    return [name for name in names if name.startswith("vmc-") and name.endswith("-default")
            and name.split("-")[1] in held]


def _with_descendants(pid: int) -> set[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        try:
            # /proc/PID/stat: "pid (comm) state ppid ...", comm may hold spaces
            parents[int(entry.name)] = int(
                (entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (ValueError, OSError, IndexError):
            continue
    found, grown = {pid}, True
    while grown:
        more = {child for child, parent in parents.items() if parent in found} - found
        found |= more
        grown = bool(more)
    return found


def _open_fds(pid: int) -> list[tuple[str, str]]:
    """A process's open file descriptors and their paths (none once it has ended)."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return []
    paths_open = []
    for fd in fds:
        try:
            paths_open.append((fd, os.readlink(f"/proc/{pid}/fd/{fd}")))
        except OSError:
            continue
    return paths_open


def _open_files(pid: int) -> list[str]:
    """The paths a process has open (empty once it has ended)."""
    return [path for _, path in _open_fds(pid)]


def _made_here(labels: dict[str, str] | None) -> bool:
    """Not another test process's own fixture (``TEST_PID_LABEL``)."""
    return (labels or {}).get(TEST_PID_LABEL, str(os.getpid())) == str(os.getpid())


@dataclass(frozen=True)
class Snapshot:
    """What exists now that a run could leak: compared before and after the run. Other test
    processes' own fixtures are left out (``TEST_PID_LABEL``)."""

    containers: frozenset[tuple[str, str]]  # (id, the session label or "")
    volumes: frozenset[str]
    dangling_images: frozenset[str]
    libvirt: frozenset[str]
    sessions: frozenset[str]

    @classmethod
    def take(cls, client: Any) -> Snapshot:
        return cls(
            containers=frozenset((c.id, c.labels.get(SESSION_LABEL, ""))
                                 for c in client.containers.list(all=True,
                                                                 ignore_removed=True)
                                 if _made_here(c.labels)),
            volumes=frozenset(v.name for v in client.volumes.list()
                              if _made_here(v.attrs.get("Labels"))),
            dangling_images=frozenset(i.id for i in listed_images(client, {"dangling": True})
                                      if _made_here(i.labels)),
            # the sessions' domains and disks, and cache volumes whose entry is gone
            libvirt=frozenset(libvirt_names("vmc-") + vmcache.orphan_volumes()),
            sessions=frozenset(p.name for p in paths.sessions_dir().iterdir()),
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


LEAK_SETTLE_SECONDS = 60.0


def _others() -> set[str]:
    """The sessions of other runs: live ones, and those another test killed on purpose and
    has not swept yet."""
    return other_live_runs() | killed_on_purpose_now()


def _new_since(client: Any, before: Snapshot) -> tuple[dict[str, set[str]], Snapshot]:
    # Read before and after the snapshot: a run that ends (or starts) while it is taken is
    # still another run's, not a leak of this test.
    others = _others()
    after = Snapshot.take(client)
    return after.new_since(before, others | _others()), after


KILLED_ON_PURPOSE = RUN_HOME / "tests-killed-on-purpose"  # a file per session, named after it


@contextmanager
def killed_on_purpose(sessions: Collection[str]) -> Iterator[None]:
    """The sessions of a run that the test kills with SIGKILL and then sweeps itself: dead
    and unlocked until that sweep, their directories are not a leak of a test that ends
    beside it on the other worker (its leak check reads the same home)."""
    directory = paths.ensure_dir(KILLED_ON_PURPOSE)
    marks = [directory / session for session in sessions]
    for mark in marks:
        mark.touch()
    try:
        yield
    finally:
        for mark in marks:
            mark.unlink(missing_ok=True)


def killed_on_purpose_now() -> set[str]:
    return {mark.name for mark in KILLED_ON_PURPOSE.iterdir()} if KILLED_ON_PURPOSE.is_dir() \
        else set()


def _of_other_homes_only(leaked: dict[str, set[str]], after: Snapshot) -> bool:
    """Every leaked container, volume and domain names a session with no directory in this
    test's home: a run of another test process under its own home (``own_home``), whose kept
    targets that test removes itself once its run has ended (so it is not live)."""
    sessions = {session for cid, session in after.containers
                if cid in leaked.get("containers", set())}
    named = leaked.get("volumes", set()) | leaked.get("libvirt domains/volumes", set())
    sessions |= {name.split("-")[1] for name in named if name.count("-") >= 2}
    return bool(sessions) and "" not in sessions and not sessions & after.sessions and \
        set(leaked) <= {"containers", "volumes", "libvirt domains/volumes"}


def _build_leftovers_only(leaked: dict[str, set[str]], after: Snapshot) -> bool:
    """Containers of no session and untagged images: what a docker build has for moments
    (another process's, an xdist worker's, a colleague's)."""
    sessionless = {cid for cid, session in after.containers if not session}
    return set(leaked) <= {"containers", "dangling images"} and \
        leaked.get("containers", set()) <= sessionless


@pytest.fixture
def leak_check(docker_client: Any) -> Iterator[None]:
    """Fails the test if the run left a container, Docker volume, image, libvirt domain or
    volume, or a session dir. Those of other runs live on this machine are not counted, nor,
    once they are gone within a minute, what another process's build has for moments and
    the kept targets of another test's run under its own home."""
    before = Snapshot.take(docker_client)
    yield
    leaked, after = _new_since(docker_client, before)
    if leaked and (_build_leftovers_only(leaked, after) or _of_other_homes_only(leaked, after)):
        def settled() -> bool:
            nonlocal leaked
            leaked, _ = _new_since(docker_client, before)
            return not leaked

        try:
            wait_for(settled, timeout=LEAK_SETTLE_SECONDS, interval=1.0,
                     what="another test process's build or kept targets to go")
        except WaitTimeout:
            pass  # a leak after all: reported below
    assert not leaked, f"the run left resources behind: {leaked}"


def leftovers(session_id: str) -> list[str]:
    """What still carries ``session_id`` on this host (empty after a clean teardown)."""
    return lifecycle.leftovers(session_id, targets.default_leftovers())


def owned_containers(client: Any) -> list[Any]:
    # ignore_removed: a container another run removes between the list and its inspect
    return list(client.containers.list(all=True, filters={"label": f"{OWNER_LABEL}={OWNER}"},
                                       ignore_removed=True))


PAGE_VAGRANTFILE = """
Vagrant.configure("2") do |config|
  config.vm.box = "{box}"
  config.vm.network "forwarded_port", guest: 8000, host: 18000, host_ip: "127.0.0.1"
  config.vm.provider "libvirt" do |lv|
    lv.memory = 1024
    lv.cpus = 2
  end
  config.vm.provision "shell", path: "provision.sh"
end
"""

PAGE_PROVISION = """#!/bin/sh
set -eu
mkdir -p /srv/page
echo '{token}' > /srv/page/index.html
cat > /etc/systemd/system/page.service <<UNIT
[Service]
ExecStart=/usr/bin/python3 -m http.server 8000 --directory /srv/page
[Install]
WantedBy=multi-user.target
UNIT
systemctl enable --now page.service
"""


def page_project(directory: Path, box: str, token: str) -> Path:
    """A VM project whose provisioning is trivial, for tests about booting and caching, not
    apt: a page holding ``token``, served on port 8000 by the box's own python3 and enabled
    at boot."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "Vagrantfile").write_text(PAGE_VAGRANTFILE.format(box=box))
    (directory / "provision.sh").write_text(PAGE_PROVISION.format(token=token))
    return directory


def start_process(argv: list[str], cwd: Path, env: dict[str, str] | None = None,
                  merge_stderr: bool = False) -> subprocess.Popen[str]:
    """A pytest run or the command line, started in a session of its own, so that a
    terminal's Ctrl-C reaches it once, from here (``finish_process`` or ``stop_process``)."""
    return subprocess.Popen(argv, cwd=cwd, env={**os.environ, **(env or {})}, text=True,
                            stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
                            stdin=subprocess.DEVNULL, start_new_session=True)


class LiveOutput:
    """A started process's output (``start_process(..., merge_stderr=True)``), read line by
    line as it comes: for tests that act once the process says something."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        stdout = process.stdout
        assert stdout is not None
        self.lines: list[str] = []
        self._reader = threading.Thread(target=lambda: self.lines.extend(iter(stdout.readline, "")),
                                        daemon=True)
        self._reader.start()

    def has(self, match: Callable[[str], bool]) -> bool:
        return any(match(line) for line in self.lines)

    def text(self) -> str:
        """Everything it printed (call once it has ended)."""
        self._reader.join(timeout=60)
        return "".join(self.lines)


def stop_process(process: subprocess.Popen[str]) -> None:
    """SIGINT, as a terminal's Ctrl-C, and time to tear down its targets; SIGKILL of its
    session only if it does not end (``subprocess.run`` would SIGKILL it at once and leave
    its targets to the next run's sweep). Nothing when it has ended."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)
    try:
        process.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def finish_process(process: subprocess.Popen[str], timeout: float) -> tuple[str, str]:
    """Its stdout and stderr once it ends; stopped as ``stop_process`` does when this test is
    interrupted or the process times out."""
    try:
        return process.communicate(timeout=timeout)
    except BaseException:  # KeyboardInterrupt, TimeoutExpired
        stop_process(process)
        raise


def run_process(argv: list[str], cwd: Path, timeout: float,
                env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``subprocess.run``, with the stop of ``finish_process``."""
    with start_process(argv, cwd, env) as process:
        stdout, stderr = finish_process(process, timeout)
    return subprocess.CompletedProcess(argv, process.returncode, stdout, stderr)


def run_cli(*args: str, env: dict[str, str] | None = None,
            timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return run_process([sys.executable, "-m", "pytest_vmcontainer", *args], ROOT, timeout, env)


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

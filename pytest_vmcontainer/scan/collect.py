"""Run the collector (``data/scan/collect.sh``) on a host and parse what it prints.

The collector is one POSIX sh script, run as one command per host; everything it
prints is parsed here, into a ``Scan`` whose values are plain strings. What would
identify the collection itself is left out while parsing: PIDs are never kept, and
the collector's own processes (with the login session that runs it) and kernel
threads are not processes of the host's.
"""

from __future__ import annotations

import re
import shlex
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path

from pytest_vmcontainer.errors import TargetError
from pytest_vmcontainer.runtime import procnet
from pytest_vmcontainer.scan.model import Scan, Server

COLLECTOR = Path(__file__).resolve().parent.parent / "data" / "scan" / "collect.sh"
STATIC = ("package", "user", "group", "file", "system")  # what a root filesystem alone shows
LIVE = ("port", "process", "environment", "limit", "sysctl")
# The collector's output format; version 1 (kept in scans of bases built with it) had owner
# names instead of ids, and the hashes in a section of their own.
FORMAT_VERSION = "2"
READABLE_VERSIONS = ("1", "2")
TIMEOUT = 120.0  # seconds a host may take to answer the scan (a TCG VM takes a few)

# A host's runner: runs one shell command as root, gives (exit status, stdout bytes).
Runner = Callable[[str], tuple[int, bytes]]


def command(paths: Sequence[str] = (), static: bool = False,
            ports: Collection[int] | None = None) -> str:
    """The one shell command that collects everything (the script with its settings)."""
    settings = f"VMC_SCAN_PATHS={shlex.quote(' '.join(paths))}"
    if ports:
        settings += f" VMC_SCAN_PORTS={shlex.quote(' '.join(str(p) for p in sorted(ports)))}"
    if static:
        settings += " VMC_SCAN_STATIC=1"
    return (f"{settings}; export VMC_SCAN_PATHS VMC_SCAN_PORTS VMC_SCAN_STATIC\n"
            f"{COLLECTOR.read_text()}")


def collect(run: Runner, what: str, paths: Sequence[str] = (),
            ports: Collection[int] | None = None) -> Scan:
    """Run the collector through ``run`` and parse it; the round trip is timed."""
    started = time.monotonic()
    try:
        status, out = run(command(paths, ports=ports))
    except Exception as error:  # any backend's failure to run a command
        raise TargetError(f"the parity scan could not run on {what} ({error})",
                          "check that the host answers commands as root "
                          "(an ssh:// host needs ?sudo=true or a root login)") from None
    seconds = time.monotonic() - started
    text = out.decode("utf-8", errors="replace")
    if "\n@@ end" not in text:
        raise TargetError(f"the parity scan on {what} stopped early (exit {status}): "
                          f"{text.strip()[-200:] or 'no output'}",
                          "check that /bin/sh runs there and the scan runs as root")
    scan = parse(text)
    scan.seconds = round(seconds, 3)
    return scan


def collect_both(runs: Mapping[str, Runner], what: Mapping[str, str],
                 paths: Sequence[str] = (), ports: Collection[int] | None = None,
                 timeout: float = TIMEOUT) -> dict[str, Scan]:
    """Both hosts at the same time, one thread each; the first error is raised, and a host
    that has not answered within ``timeout`` seconds is one (its thread is left behind)."""
    results: dict[str, Scan] = {}
    errors: list[BaseException] = []

    def work(side: str) -> None:
        try:
            results[side] = collect(runs[side], what[side], paths, ports)
        except BaseException as error:  # handed to the caller below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(side,), name=f"scan-{side}", daemon=True)
               for side in runs]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    late = [side for side in runs if side not in results and not errors]
    if late:
        raise TargetError(f"the parity scan of {', '.join(what[side] for side in late)} did "
                          f"not finish within {timeout:.0f}s", "check that the host answers "
                          "commands; --vmc-scan=off skips the scan")
    if errors:
        raise errors[0]
    return results


# ---------------------------------------------------------------------------- parsing


def sections(text: str) -> dict[str, str]:
    """"@@ name" lines split the output; each section's text, without its last newline."""
    found: dict[str, str] = {}
    for chunk in re.split(r"\n@@ ", "\n" + text)[1:]:
        name, _, body = chunk.partition("\n")
        found[name.strip()] = body.rstrip("\n")
    return found


def headed(text: str) -> dict[str, str]:
    """``head -v`` output of several files: file name -> its text."""
    parts = re.split(r"(?:^|\n)==> (.+?) <==\n", text)
    return {parts[i]: parts[i + 1].rstrip("\n") for i in range(1, len(parts) - 1, 2)}


def _pid_of(name: str) -> int | None:
    match = re.match(r"/proc/(\d+)/", name)
    return int(match.group(1)) if match else None


def _packages(found: dict[str, str]) -> dict[str, str]:
    packages = dict(line.split("\t", 1) for line in found.get("dpkg", "").splitlines()
                    if "\t" in line)
    name = None
    for line in found.get("apk", "").splitlines():  # Alpine's database: "P:name", "V:version"
        key, _, value = line.partition(":")
        if key == "P":
            name = value
        elif key == "V" and name:
            packages[name] = value
    return packages


def _user(fields: list[str]) -> str:
    return f"uid={fields[2]} gid={fields[3]} home={fields[5]} shell={fields[6]}"


def _group(fields: list[str]) -> str:
    members = ",".join(sorted(m for m in fields[3].split(",") if m))
    return f"gid={fields[2]}" + (f" members={members}" if members else "")


def _accounts(text: str, width: int,
              describe: Callable[[list[str]], str]) -> tuple[dict[str, str], dict[str, str]]:
    """/etc/passwd or /etc/group (``width`` fields a line): (name -> description, id -> name)."""
    facts: dict[str, str] = {}
    names: dict[str, str] = {}
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) >= width:
            facts[fields[0]] = describe(fields)
            names.setdefault(fields[2], fields[0])
    return facts, names


def _files(found: dict[str, str], users: dict[str, str],
           groups: dict[str, str]) -> dict[str, str]:
    """Path -> kind, mode, owner and content hash; owners by name (``users``/``groups``: id ->
    name), or the number when the host has no such name."""
    hashes = {}
    lines = found.get("files", "").splitlines()
    for line in [*lines, *found.get("sha256", "").splitlines()]:  # sha256sum's lines
        digest, _, path = line.partition("  ")
        if len(digest) == 64 and "\t" not in digest:
            hashes[path] = digest
    facts = {}
    for line in lines:
        fields = line.split("\t", 5)
        if len(fields) != 6:
            continue
        kind, mode, uid, gid, size, name = fields
        user, group = users.get(uid, uid), groups.get(gid, gid)
        if kind == "symbolic link":
            path, _, target = name.partition(" -> ")
            facts[path] = f"link -> {target}"
        elif kind == "directory":
            facts[name] = f"dir {mode} {user}:{group}"
        else:
            content = (f"sha256:{hashes[name][:16]}" if name in hashes
                       else f"{size} bytes, not hashed")
            facts[name] = f"file {mode} {user}:{group} {content}"
    return facts


def _conf_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith(("#", ";"))]


def _system(found: dict[str, str], files: dict[str, str]) -> dict[str, str]:
    conf = headed(found.get("conf", ""))
    facts = {}
    release = dict(line.split("=", 1) for line in found.get("os", "").splitlines() if "=" in line)
    if "PRETTY_NAME" in release:
        facts["os"] = release["PRETTY_NAME"].strip('"')
    kernel = headed(found.get("sysctl", "")).get("kernel/osrelease")
    if kernel:
        facts["kernel"] = kernel.strip()
    timezone = conf.get("/etc/timezone", "").strip()
    link = files.get("/etc/localtime", "")
    facts["timezone"] = timezone or (link.removeprefix("link -> ") if link else "(not set)")
    locale = _conf_lines(conf.get("/etc/default/locale", "") or conf.get("/etc/locale.conf", ""))
    facts["locale"] = "; ".join(locale) or "(not set)"
    resolver = _conf_lines(conf.get("/etc/resolv.conf", ""))
    for key in ("nameserver", "search", "options"):
        values = [line.split(None, 1)[1] for line in resolver
                  if line.split(None, 1)[0] == key and " " in line]
        facts[f"resolver {key}"] = ", ".join(values) or "(none)"
    hosts = [line for line in _conf_lines(conf.get("/etc/nsswitch.conf", ""))
             if line.startswith("hosts:")]
    facts["nsswitch hosts"] = " ".join(hosts[0].split()[1:]) if hosts else "(not set)"
    return facts


def _processes(found: dict[str, str], names: dict[str, str]) -> dict[int, tuple[str, str, int]]:
    """pid -> (key "name (user)", arguments, parent pid), without kernel threads and without
    the collector with its own session (its parents up to a child of init, and its children)."""
    info: dict[int, dict[str, str]] = {}
    args: dict[int, str] = {}
    for path, text in headed(found.get("procs", "")).items():
        pid = _pid_of(path)
        if pid is not None and path.endswith("/status"):
            info[pid] = {k: v.strip() for k, _, v in (line.partition(":")
                                                       for line in text.splitlines())}
        elif pid is not None and path.endswith("/cmdline"):
            args[pid] = " ".join(text.replace("\0", " ").split())
    parent = {pid: int(fields.get("PPid", "0") or 0) for pid, fields in info.items()}
    own = {int(found.get("self", "0").strip() or 0)}
    pid = next(iter(own))
    while parent.get(pid, 0) not in (0, 1):  # the session that runs the collector, up to
        pid = parent[pid]  # the service that started it (a child of init, or of no one)
        if parent.get(pid, 0) in (0, 1):
            break
        own.add(pid)
    changed = True
    while changed:  # and whatever it started
        grown = {child for child, ppid in parent.items() if ppid in own}
        changed = not grown <= own
        own |= grown
    processes = {}
    for pid, fields in info.items():
        if pid in own or pid == 2 or parent[pid] == 2 or not args.get(pid):
            continue  # kernel threads have no arguments; zombies neither
        if "VMC_SCAN_PATHS=" in args[pid]:
            continue  # another scan's collector, running at the same time on this host
        uid = (fields.get("Uid") or "?").split()[0]
        key = f"{fields.get('Name', '?')} ({names.get(uid, uid)})"
        processes[pid] = (key, args[pid], parent[pid])
    return processes


_LIMIT = re.compile(r"^(Max [a-z ]+?)\s{2,}(\S+)\s+(\S+)")


def _listening(found: dict[str, str]) -> dict[str, tuple[str, int]]:
    """Socket inode -> (item "tcp 0.0.0.0:80", port)."""
    sockets = {}
    for table in ("tcp", "tcp6", "udp", "udp6"):
        wanted = "0A" if table.startswith("tcp") else "07"
        for line in found.get(table, "").splitlines():
            fields = line.split()
            if len(fields) < 10 or fields[3] != wanted or ":" not in fields[1]:
                continue
            hex_host, _, hex_port = fields[1].partition(":")
            try:
                host, port = procnet.address(hex_host), int(hex_port, 16)
            except ValueError:
                continue
            shown = f"[{host}]" if ":" in host else host
            sockets[fields[9]] = (f"{table.rstrip('6')} {shown}:{port}", port)
    return sockets


def _live(found: dict[str, str], names: dict[str, str], scan: Scan) -> None:
    processes = _processes(found, names)
    grouped: dict[str, Counter[str]] = {}
    for key, arguments, _ in processes.values():
        grouped.setdefault(key, Counter())[arguments] += 1
    scan.facts["process"] = {key: "; ".join(f"{n}x {a}" if n > 1 else a
                                            for a, n in sorted(counts.items()))
                             for key, counts in grouped.items()}
    sockets = _listening(found)
    holders: dict[str, set[int]] = {inode: set() for inode in sockets}
    for line in found.get("sockets", "").splitlines():
        pid_text, _, inode = line.partition(" ")
        if inode in holders and pid_text.isdigit():
            holders[inode].add(int(pid_text))
    owners: dict[str, set[str]] = {item: set() for item, _ in sockets.values()}
    for inode, pids in holders.items():
        item, port = sockets[inode]
        # The process that opened the socket, not the children that inherited it: root in a
        # container (no CAP_SYS_PTRACE) cannot see the sockets of another user's processes.
        for pid in sorted(pid for pid in pids if _parent(processes, pid) not in pids):
            key = processes[pid][0] if pid in processes else "the scan's own session"
            owners[item].add(key)
            if pid in processes:
                server = scan.servers.setdefault(key, Server())
                if port not in server.ports:
                    server.ports.append(port)
                    server.ports.sort()
                _server_details(found, pid, server)
    scan.facts["port"] = {item: ", ".join(sorted(keys)) or "(no process seen)"
                          for item, keys in owners.items()}
    scan.facts["sysctl"] = {name.replace("/", "."): " ".join(value.split())
                            for name, value in headed(found.get("sysctl", "")).items()
                            if name != "kernel/osrelease"}  # a system fact


def _parent(processes: dict[int, tuple[str, str, int]], pid: int) -> int:
    return processes[pid][2] if pid in processes else 0


def _server_details(found: dict[str, str], pid: int, server: Server) -> None:
    """The environment, limits and working directory of the first such process seen."""
    if server.limits:
        return
    environ = headed(found.get("environ", "")).get(f"/proc/{pid}/environ", "")
    server.environment = dict(sorted(entry.split("=", 1) for entry in environ.split("\0")
                                     if "=" in entry))
    if not server.environment:
        server.environment, server.environment_from = _launch_environment(found, pid)
    limits = headed(found.get("environ", "")).get(f"/proc/{pid}/limits", "")
    for line in limits.splitlines():
        match = _LIMIT.match(line)
        if match:
            server.limits[match.group(1)] = f"{match.group(2)} / {match.group(3)}"
    for line in found.get("cwd", "").splitlines():
        if f"/proc/{pid}/cwd -> " in line:
            server.cwd = line.split(" -> ", 1)[1]


# What the collector's own start adds to the environment docker exec gives it.
_COLLECTOR_VARIABLES = ("VMC_SCAN_PATHS", "VMC_SCAN_PORTS", "VMC_SCAN_STATIC", "PWD", "OLDPWD",
                        "SHLVL", "_")


def _assignments(words: list[str]) -> dict[str, str]:
    return dict(sorted(word.split("=", 1) for word in words if "=" in word))


def _unit_environments(text: str) -> dict[str, dict[str, str]]:
    """``systemctl show -p Id -p Environment UNIT...``: unit -> its Environment= settings."""
    found: dict[str, dict[str, str]] = {}
    unit = ""
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key == "Id":
            unit = value
        elif key == "Environment" and unit:
            try:
                found[unit] = _assignments(shlex.split(value))
            except ValueError:
                continue
    return found


def _launch_environment(found: dict[str, str], pid: int) -> tuple[dict[str, str], str]:
    """For a process that overwrote its environment in /proc (a process title): what it was
    started with, from its systemd unit or the container's configuration, and which."""
    unit = next((line.split()[1] for line in found.get("unitpids", "").splitlines()
                 if line.split()[:1] == [str(pid)] and len(line.split()) == 2), None)
    if unit is not None:
        manager = _assignments(found.get("manager", "").splitlines())
        return {**manager, **_unit_environments(found.get("units", "")).get(unit, {})}, \
            f"the systemd unit {unit}"
    if "containerenv" in found:
        exported = []
        for line in found["containerenv"].splitlines():
            line = line.removeprefix("export ").removeprefix("declare -x ")
            try:
                exported += shlex.split(line)
            except ValueError:
                continue
        environment = _assignments(exported)
        for name in _COLLECTOR_VARIABLES:
            environment.pop(name, None)
        return environment, "the container's configuration"
    return {}, "nowhere: the process overwrote it"


def parse(text: str) -> Scan:
    """The collector's output as a Scan (static output: files, packages, users only)."""
    found = sections(text)
    if found.get("version", "").strip() not in READABLE_VERSIONS:
        raise ValueError(f"not the output of the collector (versions "
                         f"{', '.join(READABLE_VERSIONS)})")
    users, names = _accounts(found.get("passwd", ""), 7, _user)
    groups, group_names = _accounts(found.get("group", ""), 4, _group)
    files = _files(found, names, group_names)
    scan = Scan(facts={"package": _packages(found), "user": users, "group": groups, "file": files,
                       "system": _system(found, files)})
    if "self" in found:
        _live(found, names, scan)
    scan.categories = [c for c in (*STATIC, *LIVE) if c in scan.facts or (
        c in ("environment", "limit") and "self" in found)]
    return scan

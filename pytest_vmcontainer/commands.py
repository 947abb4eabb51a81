"""What each command of ``python -m pytest_vmcontainer`` does (``cli`` parses the command line
and prints failures).

A command takes the parsed arguments and the run's progress, returns the exit status, and
raises a ``VmcError`` for a failure with a known cause and remedy.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pytest_vmcontainer import housekeeping, lifecycle, options, targets
from pytest_vmcontainer.errors import ReportError, TargetError, UsageError, VmcError
from pytest_vmcontainer.harness import Harness, HarnessConfig
from pytest_vmcontainer.host import accel, bases, setup
from pytest_vmcontainer.options import TARGETS
from pytest_vmcontainer.runtime import signals, sshforward
from pytest_vmcontainer.runtime.progress import Progress
from pytest_vmcontainer.runtime.waiting import http_get
from pytest_vmcontainer.targets.base import Target
from pytest_vmcontainer.targets.remote import FORWARDS_RECORD


def cmd_setup(args: argparse.Namespace, progress: Progress) -> int:
    started = time.monotonic()
    if args.check:
        missing, stopped = setup.check()
        if missing or stopped:
            print(setup.manual_instructions(missing, stopped), file=sys.stderr)
            return 1
    else:
        setup.ensure_host(progress, make_pool=False)  # a VM run makes its home's pool
    progress.say(f"host ready ({time.monotonic() - started:.1f}s)")
    return 0


def cmd_build(args: argparse.Namespace, progress: Progress) -> int:
    kinds = TARGETS[args.target]
    setup.ensure_host(progress, targets.host_needs(kinds))
    client = None
    if "container" in kinds:
        from pytest_vmcontainer.targets.docker.client import connect

        client = connect()
    boxes = [bases.LOCAL_BOXES[name] for name in dict.fromkeys(args.box or [bases.BOX_NAME])]
    bases.ensure_bases(progress, client, want_box="vm" in kinds, rebuild=args.rebuild,
                       boxes=boxes)
    built = ["docker-base"] if "container" in kinds else []
    built += [box.kind for box in boxes] if "vm" in kinds else []
    for kind in built:
        record = bases.BuildRecord.load(kind)
        if record is not None:
            progress.say(f"{kind}: {record.artifact} ({record.artifact_bytes / 1e6:.0f} MB, "
                         f"built in {record.build_seconds:.0f}s, recipe {record.recipe_hash})")
    if "vm" in kinds:
        found = accel.detect(accel.probe_kernel(bases.box_kernel()))
        progress.say(f"VM accelerator: {found.mode.upper()} ({found.reason})")
    return 0


def cmd_up(args: argparse.Namespace, progress: Progress) -> int:
    """Bring both targets up, check HTTP 200 from each through 127.0.0.1, tear down."""
    kinds = list(TARGETS[args.target])
    pinned = {kind: {80: port} for kind, port in (("vm", args.vm_port),
                                                  ("container", args.container_port)) if port}
    # Both resolved, so that the two "fixtures" below are one input whichever is checked: the
    # VM cache's key counts each input, and must be a pytest run's for the same files.
    vagrantfile = _existing(args.vagrantfile) if "vm" in kinds else Path(args.vagrantfile).resolve()
    dockerfile = (_existing(args.dockerfile) if "container" in kinds
                  else Path(args.dockerfile).resolve())
    # As in the plugin's default: the provisioning inputs sit next to the project's files.
    inputs = tuple(sorted(p for p in {vagrantfile.parent / "fixtures",
                                      dockerfile.parent / "fixtures"} if p.exists()))
    config = HarnessConfig(
        vagrantfile=vagrantfile, dockerfile=dockerfile, provision_inputs=inputs, keep=args.keep,
        rebuild_bases=args.rebuild, pinned_ports=pinned, boot_timeout=args.boot_timeout,
        ready_timeout=args.ready_timeout)
    harness = Harness(config, progress)
    failed = True
    try:
        harness.start(kinds)
        bodies = {}
        for kind in kinds:
            target = harness.get(kind)
            response = http_get(target.url("/"))
            progress.say(f"{kind} ({target.mode.upper()}): {target.url('/')} -> HTTP "
                         f"{response.status}, {len(response.body)} bytes; up to first HTTP 200 "
                         f"in {target.up_seconds:.1f}s (build and provisioning included)")
            if response.status != 200:
                raise TargetError(f"the {kind} answered HTTP {response.status}",
                                  "check the provisioning")
            bodies[kind] = response.body
        if len(set(bodies.values())) > 1:
            raise TargetError("the VM and the container serve different pages",
                              "check the provisioning")
        failed = False
    finally:
        with signals.teardown_uninterrupted():
            kept = harness.teardown(failed=failed)
        for line in kept:
            progress.say(f"kept {line}")
    if signals.INTERRUPTED.is_set():  # during the teardown: it ran to its end
        raise KeyboardInterrupt
    return 0


def cmd_clean(args: argparse.Namespace, progress: Progress) -> int:
    for line in housekeeping.clean(caches=args.caches).summary().splitlines():
        progress.say(line)
    return 0


def cmd_destroy(args: argparse.Namespace, progress: Progress) -> int:
    for line in housekeeping.destroy(args.kind, args.session).summary().splitlines():
        progress.say(line)
    return 0


def cmd_list(args: argparse.Namespace, progress: Progress) -> int:
    """Kept and reused targets (and those of runs in progress): where they are, how to get in;
    then what the caches hold."""
    saved = lifecycle.saved_targets()
    if saved:
        _list_targets(saved)
    else:
        print("no kept or reused targets (keep them with --vmc-keep=always|on-failure or "
              "--vmc-reuse)")
    size = options.BY_NAME["vmc_vm_cache_size"]
    budget = (f"{size.env}={os.environ[size.env]}" if os.environ.get(size.env) else
              f"{size.flag}, {size.default} unless set")
    print("\n".join(housekeeping.cache_lines(time.time(), budget)))
    return 0


def _list_targets(saved: list[lifecycle.SavedTarget]) -> None:
    rows = [("session", "kind", "status", "state", "forwards (guest -> 127.0.0.1)", "age",
             "inputs")]
    down = []
    for item in saved:
        try:
            target = targets.attach(item.workdir, "list")
            state = target.alive() or "running"
            forwards = ", ".join(f"{g}->{h}" for g, h in sorted(target.host_ports.items()))
        except (VmcError, OSError, ValueError, KeyError) as error:
            state, forwards = f"unknown ({error})", "-"
        if forwards and _forward_down(item):
            forwards += " (ssh -L down)"
            down.append(item.session_id)
        rows.append((item.session_id, item.kind, item.status, state, forwards or "-",
                     housekeeping.age(time.time() - item.saved_at), item.inputs or "-"))
    print("\n".join(housekeeping.table_lines(rows)))
    print("get in with: python -m pytest_vmcontainer login KIND --session SESSION")
    for session in sorted(set(down)):
        print(f"ports of session {session} not forwarded here: open them again with "
              f"python -m pytest_vmcontainer forward --session {session}")


def _forward_down(item: lifecycle.SavedTarget) -> bool:
    """A kept target on another machine whose ``ssh -L`` ended (a dropped connection, a
    reboot of this machine): its ports on 127.0.0.1 no longer answer."""
    record = item.workdir / FORWARDS_RECORD
    return (item.status != "live run" and record.exists()
            and sshforward.recorded_alive(record) is None)


def cmd_forward(args: argparse.Namespace, progress: Progress) -> int:
    """Open again the ``ssh -L`` of kept targets on another machine whose forward ended, on
    the same ports of 127.0.0.1; it lives on until ``destroy``, as the run's did."""
    saved = [item for item in lifecycle.saved_targets() if item.status != "live run"
             and (args.session is None or item.session_id == args.session)
             and (args.kind is None or item.kind == args.kind)]
    sessions = sorted({item.session_id for item in saved})
    if not saved:
        what = f"session {args.session} has" if args.session else "this home has"
        kind = f"{args.kind} target" if args.kind else "target"
        raise UsageError(f"{what} no kept or reused {kind} to forward",
                         "run 'python -m pytest_vmcontainer list'")
    if len(sessions) > 1:
        raise UsageError(f"{len(sessions)} sessions have kept targets ({', '.join(sessions)})",
                         "pick one with --session")
    for item in saved:
        record = item.workdir / FORWARDS_RECORD
        pid = sshforward.recorded_alive(record)
        if not record.exists():
            print(f"{item.kind}: on this host's engine; its ports need no forward")
        elif pid is not None:
            print(f"{item.kind}: forwarded already (ssh {pid})")
        else:
            lifecycle.require_its_engines(item.session_id, "forward")
            forwards = sshforward.SshForwards.from_record(record)
            with progress.step(f"{item.kind}: forwarding {forwards.describe()} (ssh -L)"):
                forwards.open(timeout=60.0)
            print(f"{item.kind}: forwarded again (ssh {sshforward.recorded_alive(record)})")
    return 0


def _saved_target(kind: str, session: str | None) -> Target:
    saved = [item for item in lifecycle.saved_targets() if item.kind == kind]
    chosen = [item for item in saved if session is None or item.session_id == session]
    sessions = ", ".join(item.session_id for item in saved) or "none"
    if not chosen:
        what = f"session {session} has no {kind} target" if session else f"no {kind} target"
        raise UsageError(f"{what} to log into (sessions with one: {sessions})",
                         "run 'python -m pytest_vmcontainer list', or keep targets with "
                         "--vmc-keep=always|on-failure or --vmc-reuse")
    if len(chosen) > 1:
        raise UsageError(f"{len(chosen)} sessions have a {kind} target ({sessions})",
                         "pick one with --session")
    lifecycle.require_its_engines(chosen[0].session_id, "login or exec")
    return targets.attach(chosen[0].workdir, "login and exec", also=("shell",))


def cmd_login(args: argparse.Namespace, progress: Progress) -> int:
    target = _saved_target(args.kind, args.session)
    argv, env, cwd = targets.capabilities.as_shell(target).shell(args.remote_command or None)
    return subprocess.call(argv, env=env, cwd=cwd)


def cmd_exec(args: argparse.Namespace, progress: Progress) -> int:
    if not args.remote_command:
        raise UsageError("exec needs a command", "give it after --, e.g. exec vm -- uname -a")
    return cmd_login(args, progress)


def cmd_init(args: argparse.Namespace, progress: Progress) -> int:
    """A starter project: Vagrantfile, Dockerfile, one provisioning script, tests, ini lines."""
    directory = Path(args.directory).resolve()
    template = bases.DATA / "init"
    files = [path.relative_to(template) for path in sorted(template.rglob("*"))
             if path.is_file() and "__pycache__" not in path.parts]
    first = ("Vagrantfile", "Dockerfile")  # named first: the files a project is known by
    existing = sorted((str(directory / name) for name in files if (directory / name).exists()),
                      key=lambda path: Path(path).name not in first)
    if existing:
        raise UsageError(f"{existing[0]} already exists",
                         "init writes a new project and overwrites nothing: choose an empty "
                         "directory, or remove the files it would write")
    for name in files:
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(template / name, directory / name)
        shutil.copymode(template / name, directory / name)
    print(f"wrote {', '.join(str(name) for name in files)} into {directory}")
    print(f"next: cd {directory} && pytest            (both targets; --target=vm|container for "
          "one)")
    return 0


def cmd_report(args: argparse.Namespace, progress: Progress) -> int:
    """Show a saved report again (this version's verdict rules), or merge two runs' reports."""
    from pytest_vmcontainer import runreport

    files = list(args.files)
    if files[0] == "merge":
        if len(files) != 3:
            raise UsageError(f"report merge takes two reports, got {len(files) - 1}",
                             "run 'python -m pytest_vmcontainer report merge "
                             "A/comparison.json B/comparison.json --out DIR'")
        saved = runreport.merge(runreport.load(Path(files[1])), runreport.load(Path(files[2])),
                                files[1:])
    elif len(files) == 1:
        saved = runreport.load(Path(files[0]))
    else:
        raise UsageError(f"report takes one report, got {len(files)}",
                         "to put two runs together, run 'python -m pytest_vmcontainer report "
                         "merge A/comparison.json B/comparison.json'")
    for line in runreport.terminal_lines(saved):
        print(line)
    if args.out:
        written = runreport.write(saved, Path(args.out))
        print("report: " + ", ".join(str(path) for path in written.values()))
    differences = saved.parity.unexpected_differences()
    if args.fail_on_diff and differences:
        raise ReportError(f"the parity matrix has {len(differences)} unexpected "
                          f"difference{'s' if len(differences) > 1 else ''} "
                          f"({'; '.join(differences)})",
                          "fix the targets, or mark the tests expect_diff with a reason")
    return 0


def _scan_host(spec: str, session: str | None) -> tuple[Any, str, Target | None]:
    """(testinfra Host, label, kept target or None) for a HOST argument of ``scan``."""
    if spec in ("vm", "container"):
        target = _saved_target(spec, session)
        return target.host, f"{spec} {target.resource_name}", target
    if "://" not in spec:
        raise UsageError(f"{spec!r} is not a host to scan",
                         "give a testinfra host (ssh://user@host?sudo=true, docker://NAME, "
                         "local://, ...) or vm / container for a kept target")
    import testinfra

    try:
        return testinfra.get_host(spec), spec, None
    except Exception as error:  # testinfra's backends raise what they like
        raise UsageError(f"cannot use {spec} ({error})",
                         "give a testinfra host such as ssh://user@host?sudo=true, "
                         "docker://NAME or local://") from None


def cmd_scan(args: argparse.Namespace, progress: Progress) -> int:
    """Compare any two hosts with the parity scan: HOST_A in the VM's column, HOST_B in the
    container's, so the same noise and nature rules apply; kept targets by kind."""
    from pytest_vmcontainer import runreport, scan
    from pytest_vmcontainer.comparison.measure import host_facts
    from pytest_vmcontainer.comparison.results import ComparisonReport
    from pytest_vmcontainer.parity import ParityStore
    from pytest_vmcontainer.scan import render
    from pytest_vmcontainer.scan.bases import scan_bases
    from pytest_vmcontainer.scan.compare import Bases
    from pytest_vmcontainer.scan.rules import parse_user_rules

    rules = parse_user_rules(args.expect or [], "--expect")
    (vm_host, vm_label, vm), (ct_host, ct_label, ct) = (
        _scan_host(spec, args.session) for spec in (args.host_a, args.host_b))
    ports: set[int] | None = set(args.ports) if args.ports else None
    if vm is not None and ct is not None and vm.kind == "vm" and ct.kind == "container":
        bases = scan_bases(vm.spec.vagrantfile, ct.spec.dockerfile)
        ports = ports or set(vm.host_ports) | set(ct.host_ports)
    else:
        bases = Bases(missing="bases not scanned: the hosts were given by address")
    result = scan.scan_hosts({"vm": vm_host, "container": ct_host},
                             {"vm": vm_label, "container": ct_label},
                             [p for paths in args.paths or [] for p in paths.split()], rules,
                             bases, ports)
    for line in render.terminal_lines(result):
        print(line)
    if args.report:
        empty = ComparisonReport(generated_at=runreport.now(),
                                 host=host_facts(with_vm_tools=False, with_docker=False),
                                 vm_mode=None, vm_mode_reason="", settings={}, rows=[])
        report = runreport.RunReport(empty, ParityStore(), [], None, scan=result)
        written = runreport.write(report, Path(args.report))
        print("report: " + ", ".join(str(path) for path in written.values()))
    if args.fail_on_diff and result.unexpected:
        raise ReportError(f"the scan found {len(result.unexpected)} unexpected difference"
                          f"{'s' if len(result.unexpected) > 1 else ''}",
                          "align the hosts, or expect the difference with --expect "
                          "'CATEGORY GLOB reason'")
    return 0


def cmd_accel(args: argparse.Namespace, progress: Progress) -> int:
    if not bases.box_kernel().exists():
        raise UsageError("the box is not built yet", "run 'python -m pytest_vmcontainer build'")
    found = accel.detect(bases.box_kernel())
    print(f"{found.mode} ({found.reason})")
    return 0


def _existing(path: str) -> Path:
    resolved = Path(path).resolve()
    if not resolved.is_file():
        raise UsageError(f"{path} does not exist", "pass the path of an existing file")
    return resolved


COMMANDS: dict[str, Callable[[argparse.Namespace, Progress], int]] = {
    "setup": cmd_setup, "build": cmd_build, "up": cmd_up, "clean": cmd_clean,
    "destroy": cmd_destroy, "accel": cmd_accel, "report": cmd_report, "list": cmd_list,
    "login": cmd_login, "exec": cmd_exec, "init": cmd_init, "scan": cmd_scan,
    "forward": cmd_forward,
}

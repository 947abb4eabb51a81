"""Command line: ``python -m pytest_vmcontainer setup|build|up|clean|destroy|list|login|...``.

Failures print one line naming the cause and the remedy and exit non-zero.
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

from pytest_vmcontainer import housekeeping, lifecycle, targets
from pytest_vmcontainer.errors import ReportError, TargetError, UsageError, VmcError
from pytest_vmcontainer.harness import Harness, HarnessConfig
from pytest_vmcontainer.host import accel, bases, setup
from pytest_vmcontainer.options import KEEP, TARGETS
from pytest_vmcontainer.runtime import signals
from pytest_vmcontainer.runtime.progress import Progress
from pytest_vmcontainer.runtime.waiting import http_get
from pytest_vmcontainer.targets.base import Target


def _cmd_setup(args: argparse.Namespace, progress: Progress) -> int:
    started = time.monotonic()
    if args.check:
        missing, stopped = setup.check()
        if missing or stopped:
            print(setup.manual_instructions(missing, stopped), file=sys.stderr)
            return 1
    else:
        setup.ensure_host(progress)
    progress.say(f"host ready ({time.monotonic() - started:.1f}s)")
    return 0


def _cmd_build(args: argparse.Namespace, progress: Progress) -> int:
    kinds = TARGETS[args.target]
    setup.ensure_host(progress, targets.host_needs(kinds))
    client = None
    if "container" in kinds:
        from pytest_vmcontainer.targets.docker import connect

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


def _cmd_up(args: argparse.Namespace, progress: Progress) -> int:
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
        for line in harness.teardown(failed=failed):
            progress.say(f"kept {line}")
    return 0


def _cmd_clean(args: argparse.Namespace, progress: Progress) -> int:
    for line in housekeeping.clean(caches=args.caches).summary().splitlines():
        progress.say(line)
    return 0


def _cmd_destroy(args: argparse.Namespace, progress: Progress) -> int:
    for line in housekeeping.destroy(args.kind, args.session).summary().splitlines():
        progress.say(line)
    return 0


def _cmd_list(args: argparse.Namespace, progress: Progress) -> int:
    """Kept and reused targets (and those of runs in progress): where they are, how to get in."""
    saved = lifecycle.saved_targets()
    if not saved:
        print("no kept or reused targets (keep them with --vmc-keep=always|on-failure or "
              "--vmc-reuse)")
        return 0
    rows = [("session", "kind", "status", "state", "forwards (guest -> 127.0.0.1)", "age",
             "inputs")]
    for item in saved:
        try:
            target = targets.attach(item.workdir, "list")
            state = target.alive() or "running"
            forwards = ", ".join(f"{g}->{h}" for g, h in sorted(target.host_ports.items()))
        except (VmcError, OSError, ValueError, KeyError) as error:
            state, forwards = f"unknown ({error})", "-"
        rows.append((item.session_id, item.kind, item.status, state, forwards or "-",
                     _age(time.time() - item.saved_at), item.inputs or "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
              .rstrip())
    print("get in with: python -m pytest_vmcontainer login KIND --session SESSION")
    return 0


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


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
    return targets.attach(chosen[0].workdir, "login and exec", also=("shell",))


def _cmd_login(args: argparse.Namespace, progress: Progress) -> int:
    target = _saved_target(args.kind, args.session)
    argv, env, cwd = targets.capabilities.as_shell(target).shell(args.remote_command or None)
    return subprocess.call(argv, env=env, cwd=cwd)


def _cmd_init(args: argparse.Namespace, progress: Progress) -> int:
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


def _cmd_report(args: argparse.Namespace, progress: Progress) -> int:
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


def _cmd_scan(args: argparse.Namespace, progress: Progress) -> int:
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


def _cmd_accel(args: argparse.Namespace, progress: Progress) -> int:
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


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m pytest_vmcontainer", description=__doc__)
    top.add_argument("-v", "--verbose", action="store_true", help="show tool output lines")
    commands = top.add_subparsers(dest="command", required=True)
    setup = commands.add_parser("setup", help="install and start what the targets need")
    setup.add_argument("--check", action="store_true", help="only report what is missing")
    build = commands.add_parser("build", help="build the Docker base image and the Vagrant box")
    build.add_argument("--rebuild", action="store_true", help="ignore the cache")
    build.add_argument("--target", choices=TARGETS, default="both")
    build.add_argument("--box", action="append", choices=sorted(bases.LOCAL_BOXES),
                       help=f"a box to build (repeatable; default {bases.BOX_NAME}); "
                            f"{bases.BOOTLOADER_BOX_NAME} boots through GRUB like a public box")
    up = commands.add_parser("up", help="bring both targets up, check HTTP 200, tear down")
    up.add_argument("--target", choices=TARGETS, default="both")
    up.add_argument("--vagrantfile", default="Vagrantfile")
    up.add_argument("--dockerfile", default="Dockerfile")
    up.add_argument("--keep", choices=KEEP, default="never")
    up.add_argument("--rebuild", action="store_true", help="rebuild the bases first")
    up.add_argument("--boot-timeout", type=float, default=600.0,
                    help="seconds the VM may take to answer SSH (default 600)")
    up.add_argument("--ready-timeout", type=float, default=120.0,
                    help="seconds a started target may take until its ports serve (default 120)")
    up.add_argument("--vm-port", type=int, help="host port for the VM's port 80 (default: free)")
    up.add_argument("--container-port", type=int,
                    help="host port for the container's port 80 (default: a free one)")
    clean = commands.add_parser("clean", help="remove every target and leftover this tool "
                                "created (the caches only with --caches)")
    clean.add_argument("--caches", action="store_true",
                       help="also remove the VM cache: its entries and saved running VMs")
    destroy = commands.add_parser("destroy", help="remove one kept or reused target")
    destroy.add_argument("kind", nargs="?", choices=["vm", "container"],
                         help="only this kind (default: every target of the session)")
    destroy.add_argument("--session", help="the session id (see 'list'); needed only when "
                         "several sessions have such a target")
    commands.add_parser("list", help="show kept and reused targets, and how to get in")
    for name, text in (("login", "open a shell in a kept or reused target"),
                       ("exec", "run one command in a kept or reused target")):
        way_in = commands.add_parser(name, help=text)
        way_in.add_argument("kind", choices=["vm", "container"])
        way_in.add_argument("--session", help="the session id (see 'list'); needed only when "
                            "several sessions have this kind of target")
        if name == "exec":
            # Filled by parse(): argparse with subcommands does not pass "--" on.
            way_in.set_defaults(remote_command=[])
            way_in.usage = ("python -m pytest_vmcontainer exec [-h] [--session SESSION] "
                            "{vm,container} -- COMMAND")
        else:
            way_in.set_defaults(remote_command=None)
    init = commands.add_parser("init", help="write a starter project (refuses to overwrite)")
    init.add_argument("directory", nargs="?", default=".")
    commands.add_parser("accel", help="print whether VMs run under KVM or TCG here")
    show = commands.add_parser(
        "report", help="show a saved comparison.json again, or merge two: report merge A B",
        usage="python -m pytest_vmcontainer report [-h] [--out DIR] [--fail-on-diff] "
              "(FILE | merge A B)")
    show.add_argument("files", nargs="+", metavar="FILE",
                      help="a comparison.json written by --vmc-report; or 'merge' and two of "
                           "them, from runs of different targets made from the same inputs")
    show.add_argument("--out", metavar="DIR",
                      help="also write JSON, Markdown and HTML into this directory")
    show.add_argument("--fail-on-diff", action="store_true",
                      help="exit 1 when the parity matrix has unexpected differences (a merged "
                           "run's targets were never compared inside a test)")
    scan = commands.add_parser(
        "scan", help="compare two hosts with the parity scan (no test written)",
        description="Compare two hosts: packages, users, groups, listening ports, processes, "
                    "files under /etc, the serving processes' environment and limits, "
                    "namespaced sysctls, timezone, locale and resolver. HOST_A takes the VM's "
                    "column and HOST_B the container's, so the same rules apply.")
    scan.add_argument("host_a", metavar="HOST_A",
                      help="a testinfra host (ssh://user@host?sudo=true, docker://NAME, "
                           "local://, ...), or 'vm' for the kept VM target")
    scan.add_argument("host_b", metavar="HOST_B",
                      help="likewise; or 'container' for the kept container target")
    scan.add_argument("--paths", action="append", metavar="PATH",
                      help="more paths to list besides /etc (repeatable)")
    scan.add_argument("--ports", type=int, nargs="+", metavar="PORT",
                      help="compare the environment and limits of the processes serving "
                           "these ports (default: every process listening on both hosts)")
    scan.add_argument("--expect", action="append", metavar="'CATEGORY GLOB reason'",
                      help="a difference to show as expected (repeatable)")
    scan.add_argument("--session", help="the session of the kept targets (see 'list')")
    scan.add_argument("--report", metavar="DIR",
                      help="write scan.json and the Markdown and HTML report into DIR")
    scan.add_argument("--fail-on-diff", action="store_true",
                      help="exit 1 when the scan finds unexpected differences")
    return top


def _cmd_exec(args: argparse.Namespace, progress: Progress) -> int:
    if not args.remote_command:
        raise UsageError("exec needs a command", "give it after --, e.g. exec vm -- uname -a")
    return _cmd_login(args, progress)


COMMANDS: dict[str, Callable[[argparse.Namespace, Progress], int]] = {
    "setup": _cmd_setup, "build": _cmd_build, "up": _cmd_up, "clean": _cmd_clean,
    "destroy": _cmd_destroy, "accel": _cmd_accel, "report": _cmd_report, "list": _cmd_list,
    "login": _cmd_login, "exec": _cmd_exec, "init": _cmd_init, "scan": _cmd_scan,
}


def parse(argv: list[str]) -> argparse.Namespace:
    """The command line; what follows the first ``--`` is the command ``exec`` runs."""
    options, command = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) \
        if "--" in argv else (argv, [])
    args = parser().parse_args(options)
    if command and args.command != "exec":
        parser().error(f"unrecognized arguments: -- {' '.join(command)}")
    if args.command == "exec":
        args.remote_command = command
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    progress = Progress(verbose=args.verbose)
    signals.sigterm_as_interrupt()  # SIGTERM unwinds like Ctrl-C: teardown runs
    try:
        return COMMANDS[args.command](args, progress)
    except VmcError as error:
        print(f"pytest-vmcontainer: error: {error.one_line()}", file=sys.stderr)
        if error.detail and args.verbose:
            print(error.detail, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("pytest-vmcontainer: interrupted; everything created was removed", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (``report ... | head``): stop quietly, as a tool killed by
        # SIGPIPE would; stdout goes to /dev/null so the flush at exit cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141

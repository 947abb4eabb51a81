"""Command line: ``python -m pytest_vmcontainer setup|build|up|clean|accel|report``.

Failures print one line naming the cause and the remedy and exit non-zero.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

from pytest_vmcontainer import lifecycle, targets
from pytest_vmcontainer.errors import ReportError, TargetError, UsageError, VmcError
from pytest_vmcontainer.harness import Harness, HarnessConfig
from pytest_vmcontainer.host import accel, bases, setup
from pytest_vmcontainer.options import KEEP, TARGETS
from pytest_vmcontainer.runtime import signals
from pytest_vmcontainer.runtime.progress import Progress
from pytest_vmcontainer.runtime.waiting import http_get


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
    setup.ensure_host(progress, need_docker="container" in kinds, need_libvirt="vm" in kinds)
    client = None
    if "container" in kinds:
        from pytest_vmcontainer.targets.docker import connect

        client = connect()
    bases.ensure_bases(progress, client, want_box="vm" in kinds, rebuild=args.rebuild)
    for kind in ("docker-base", "box"):
        record = bases.BuildRecord.load(kind)
        if record is not None:
            progress.say(f"{kind}: {record.artifact} ({record.artifact_bytes / 1e6:.0f} MB, "
                         f"built in {record.build_seconds:.0f}s, recipe {record.recipe_hash})")
    if "vm" in kinds:
        found = accel.detect(bases.box_kernel())
        progress.say(f"VM accelerator: {found.mode.upper()} ({found.reason})")
    return 0


def _cmd_up(args: argparse.Namespace, progress: Progress) -> int:
    """Bring both targets up, check HTTP 200 from each through 127.0.0.1, tear down."""
    kinds = list(TARGETS[args.target])
    pinned = {kind: {80: port} for kind, port in (("vm", args.vm_port),
                                                  ("container", args.container_port)) if port}
    vagrantfile = _existing(args.vagrantfile) if "vm" in kinds else Path(args.vagrantfile)
    dockerfile = _existing(args.dockerfile) if "container" in kinds else Path(args.dockerfile)
    # As in the plugin's default: the provisioning inputs sit next to the project's files.
    inputs = tuple(sorted(p for p in {vagrantfile.parent / "fixtures",
                                      dockerfile.parent / "fixtures"} if p.exists()))
    config = HarnessConfig(
        vagrantfile=vagrantfile, dockerfile=dockerfile, provision_inputs=inputs, keep=args.keep,
        rebuild_bases=args.rebuild, pinned_ports=pinned, boot_timeout=args.boot_timeout)
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
    removed = lifecycle.sweep(targets.default_leftovers(), include_marked=True)
    progress.say("removed: " + (", ".join(removed) if removed else "nothing"))
    return 0


def _cmd_report(args: argparse.Namespace, progress: Progress) -> int:
    """Show a saved comparison again, with the verdict rules of this version."""
    from pytest_vmcontainer.comparison import report, rows

    try:
        saved = report.report_from_json(report.load_report(Path(args.json)))
    except (OSError, ValueError) as error:
        raise ReportError(f"cannot read {args.json} ({error})",
                          "pass a comparison.json written by --vmc-report") from None
    for row in saved.rows:
        if row.id in rows.BY_ID:  # a row of a project's own keeps its saved verdict
            row.verdict = rows.decide(rows.BY_ID[row.id], row.figures, saved.vm_mode)
    for line in [*report.terminal_lines(saved), *report.benchmark_lines(saved)]:
        print(line)
    if args.out:
        written = report.write_reports(saved, Path(args.out))
        print("report: " + ", ".join(str(path) for path in written.values()))
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
    up = commands.add_parser("up", help="bring both targets up, check HTTP 200, tear down")
    up.add_argument("--target", choices=TARGETS, default="both")
    up.add_argument("--vagrantfile", default="Vagrantfile")
    up.add_argument("--dockerfile", default="Dockerfile")
    up.add_argument("--keep", choices=KEEP, default="never")
    up.add_argument("--rebuild", action="store_true", help="rebuild the bases first")
    up.add_argument("--boot-timeout", type=float, default=600.0,
                    help="seconds the VM may take to answer SSH (default 600)")
    up.add_argument("--vm-port", type=int, help="host port for the VM's port 80 (default: free)")
    up.add_argument("--container-port", type=int,
                    help="host port for the container's port 80 (default: a free one)")
    commands.add_parser("clean", help="remove every target and leftover this tool created")
    commands.add_parser("accel", help="print whether VMs run under KVM or TCG here")
    show = commands.add_parser("report", help="show a saved comparison.json again")
    show.add_argument("json", help="a comparison.json written by --vmc-report")
    show.add_argument("--out", help="also write JSON, Markdown and HTML into this directory")
    return top


COMMANDS: dict[str, Callable[[argparse.Namespace, Progress], int]] = {
    "setup": _cmd_setup, "build": _cmd_build, "up": _cmd_up, "clean": _cmd_clean,
    "accel": _cmd_accel, "report": _cmd_report,
}


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
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

"""Command line: ``python -m pytest_vmcontainer setup|build|up|clean|destroy|list|forward|...``.

Failures print one line naming the cause and the remedy and exit non-zero.
"""

from __future__ import annotations

import argparse
import os
import sys

from pytest_vmcontainer.commands import COMMANDS
from pytest_vmcontainer.errors import VmcError
from pytest_vmcontainer.host import bases
from pytest_vmcontainer.options import KEEP, TARGETS
from pytest_vmcontainer.runtime import signals
from pytest_vmcontainer.runtime.progress import Progress


def parser() -> argparse.ArgumentParser:
    """The command line's syntax; ``commands.COMMANDS`` says what each command does."""
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
    forward = commands.add_parser(
        "forward", help="open again the ssh -L of a kept target on another machine")
    forward.add_argument("kind", nargs="?", choices=["vm", "container"],
                         help="only this kind (default: every target of the session)")
    forward.add_argument("--session", help="the session id (see 'list'); needed only when "
                         "several sessions have kept targets")
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

"""python-vagrant, run the way the harness needs it (imported only with the VM backend).

Every vagrant command gets the harness environment (its own VAGRANT_HOME, the
libvirt provider, no update checks) and runs as a tracked process (``procs``),
so that an interrupted run (Ctrl-C, SIGTERM) stops exactly the vagrant process
it started, by its id, before destroying the machine.

python-vagrant has no hook for this, so ``TrackedVagrant`` overrides its three
process-starting methods; pyproject pins python-vagrant to the 1.x series.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from subprocess import PIPE, CalledProcessError, Popen
from typing import IO, Any

import vagrant

from pytest_vmcontainer.host.libvirt import vagrant_env
from pytest_vmcontainer.runtime import logtail, procs

__all__ = ["TrackedVagrant", "vagrant_env"]


class TrackedVagrant(vagrant.Vagrant):
    """A python-vagrant ``Vagrant`` whose commands are tracked processes (see ``procs``)."""

    def __init__(self, root: Path, env: Mapping[str, str], log_path: Path,
                 cancel: threading.Event | None = None) -> None:
        self.log_path = log_path
        self.cancel = cancel

        def log_cm() -> Any:
            return open(log_path, "ab")

        super().__init__(root=str(root), env=dict(env), out_cm=log_cm, err_cm=log_cm)

    def _spawn(self, command: list[str], stdout: Any, stderr: IO[bytes]) -> Popen[bytes]:
        return procs.spawn(command, self.cancel, cwd=self.root, env=self.env, stdout=stdout,
                           stderr=stderr)

    @staticmethod
    def _check(process: Popen[bytes], command: list[str]) -> None:
        if procs.wait(process) != 0:
            raise CalledProcessError(process.returncode, command)

    def add_box(self, name: str, box_file: Path) -> None:
        """``vagrant box add --force``: replaces a box of the same name."""
        self.box_add(name, str(box_file), force=True)

    def package_box(self, output: Path, include: list[Path], vagrantfile: Path | None) -> None:
        """``vagrant package`` with --include and --vagrantfile (python-vagrant has no such
        arguments in its ``package``)."""
        args: list[str | None] = ["package", "--output", str(output)]
        if include:
            args += ["--include", ",".join(str(p) for p in include)]
        if vagrantfile is not None:
            args += ["--vagrantfile", str(vagrantfile)]
        self._call_vagrant_command(args)

    def run_command(self, args: list[str]) -> str:
        """Any vagrant command, e.g. a plugin's own; returns its standard output."""
        return self._run_vagrant_command(list(args))

    def _call_vagrant_command(self, args: list[str | None]) -> None:
        command = self._make_vagrant_command(args)
        with self.out_cm() as out, self.err_cm() as err:
            self._check(self._spawn(command, out, err), command)

    def _run_vagrant_command(self, args: list[str | None]) -> str:
        command = self._make_vagrant_command(args)
        with self.err_cm() as err:
            process = self._spawn(command, PIPE, err)
            stdout, _ = process.communicate()
            self._check(process, command)
        return stdout.decode("utf-8", "replace")

    def _stream_vagrant_command(self, args: list[str | None]) -> Iterator[str]:
        command = self._make_vagrant_command(args)
        with self.err_cm() as err, open(self.log_path, "ab") as log:
            process = self._spawn(command, PIPE, err)
            assert process.stdout is not None
            with process.stdout:
                for raw in iter(process.stdout.readline, b""):
                    log.write(raw)
                    log.flush()
                    # Vagrant wraps lines in colour resets even with VAGRANT_NO_COLOR off a TTY.
                    yield logtail.strip_escapes(raw.decode("utf-8", "replace"))
            self._check(process, command)

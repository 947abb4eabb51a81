"""Every error a user can see: one line naming the cause and the remedy.

The whole family lives here so that a reader sees it at once. The plugin and
the command line print ``one_line()`` (plus ``detail``, a log tail, where there
is one) and never a traceback for these.
"""

from __future__ import annotations

import re


class VmcError(Exception):
    """A failure with a known cause and a remedy, shown to users as one line."""

    separator = ": "  # between cause and remedy

    def __init__(self, cause: str, remedy: str, detail: str = "") -> None:
        self.cause = cause
        self.remedy = remedy
        # Longer context (a log tail) kept apart so the headline stays one line.
        self.detail = detail
        super().__init__(self.one_line())

    def one_line(self) -> str:
        return f"{self.cause}{self.separator}{self.remedy}"


class HostSetupError(VmcError):
    """The host lacks a package or a daemon the targets need."""


class BuildError(VmcError):
    """A base image, box or target image could not be built."""


class DiskFilledUp(BuildError):
    """A build's write that found its disk full, named with that disk
    (``space.filled_up_cause``): not to be named again by an outer step."""


class TargetError(VmcError):
    """A target could not be started, provisioned or reached."""


class EngineStopped(TargetError):
    """An engine's daemon (libvirtd) stopped or restarted under a step: not the project's
    fault, and what was cached or saved before stays good."""


class PortInUse(TargetError):
    """A loopback port the harness was asked to use is taken (one message for every backend).
    Without ``port``, the port is read from the engine's message in ``detail``: QEMU's "Could
    not set up host forwarding rule 'tcp:127.0.0.1:PORT-:80'", Docker's "listen tcp4
    127.0.0.1:PORT: bind: address already in use" or "Bind for 127.0.0.1:PORT failed"."""

    def __init__(self, port: int | None = None, detail: str = "") -> None:
        if port is None:  # the engine's words, which may quote other forwards before them
            found = re.search(r"(?:forwarding rule 'tcp:|listen tcp4? |Bind for )127\.0\.0\.1:"
                              r"(\d+)", detail)
            port = int(found.group(1)) if found else None
        self.port = port
        which = f"port {port} on 127.0.0.1" if port is not None else "a port on 127.0.0.1"
        super().__init__(f"{which} is already in use",
                         "choose another port, or leave the port unset so a free one is picked",
                         detail=detail)


class SettingError(VmcError):
    """A setting's value is not allowed; the cause names the setting and where it came from."""

    separator = "; "


class UsageError(VmcError):
    """A command-line or fixture call that cannot work as given."""


class ProbeError(VmcError):
    """A comparison measurement could not be taken."""


class ReportError(VmcError):
    """A saved report cannot be read, or saved reports cannot be merged."""


class Cancelled(VmcError):
    """The run is being torn down: no new external process may start."""

    def __init__(self, what: str) -> None:
        super().__init__(what, "the run was interrupted (Ctrl-C or SIGTERM); nothing to do")


class TargetStopped(TargetError):
    """A target stopped while the harness waited for it to be ready: no wait can help."""


class WaitTimeout(VmcError, TimeoutError):
    """A readiness condition did not hold in time; callers usually re-raise with a remedy."""

    def __init__(self, what: str, timeout: float, last_error: BaseException | None) -> None:
        self.what = what
        self.timeout = timeout
        self.last_error = last_error
        reason = f" (last error: {last_error})" if last_error else ""
        super().__init__(f"{what} not ready after {timeout:.0f}s{reason}",
                         "raise the timeout or check the target")

    def one_line(self) -> str:
        return self.cause

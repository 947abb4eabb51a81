"""Errors a user can act on: one line naming the cause and the remedy."""

from __future__ import annotations


class VmcError(Exception):
    """A failure with a known cause and a remedy, shown to users as one line."""

    def __init__(self, cause: str, remedy: str, detail: str = "") -> None:
        self.cause = cause
        self.remedy = remedy
        # Longer context (a log tail) kept apart so the headline stays one line.
        self.detail = detail
        super().__init__(self.one_line())

    def one_line(self) -> str:
        return f"{self.cause}: {self.remedy}"


class HostSetupError(VmcError):
    """The host lacks a package or a daemon the targets need."""


class BuildError(VmcError):
    """A base image, box or target image could not be built."""


class TargetError(VmcError):
    """A target could not be started, provisioned or reached."""

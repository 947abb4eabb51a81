"""What a backend may provide beyond the core ``Target``, each a protocol it declares.

The core (``base.Target``) is what the harness needs to bring a target up, test it and
tear it down: ``up``, ``stop``, ``start``, ``destroy``, ``host``, ``address``, readiness.
The rest is optional, and who needs it checks for it before any work starts:

======== ========================================= ==========================================
name     methods                                   needed by
======== ========================================= ==========================================
export   ``export``, ``instance_from_export``      comparison rows that make new instances
measure  ``footprint``, ``usage``                  comparison rows that read the engine's
                                                   figures (size, memory)
attach   ``attach`` (a classmethod)                pytest-xdist workers; the CLI's list,
                                                   login and exec
shell    ``shell``                                 the CLI's login and exec
======== ========================================= ==========================================

Why ``typing.Protocol`` (runtime checkable) and not capability flags: a flag can say
"exports" on a class whose ``export`` is missing or takes other arguments, and nothing
notices until a comparison row fails halfway; a protocol *is* the methods. A backend
declares a capability by naming the protocol among its bases
(``class DockerTarget(Target, Exporting, ...)``): mypy then checks its methods against
the protocol, readers see the list in one line, and ``isinstance`` narrows the type for
the caller. A backend of a third party that has the methods without naming the
protocols is recognised all the same. The base class has none of these methods, so
there is no default that raises at run time (``tests/unit/test_architecture.py``).
``disk_cache_mode`` stays in the core: its default, what the spec asked for, is true of
every backend that does not read back from its engine what ran.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast, runtime_checkable

from pytest_vmcontainer.errors import UsageError

if TYPE_CHECKING:
    from pytest_vmcontainer.runtime.timing import Timer
    from pytest_vmcontainer.targets.base import Export, Target, TargetSpec


@runtime_checkable
class Exporting(Protocol):
    """Exports the provisioned target with its standard tool, and starts new instances of it."""

    def export(self, directory: Path, timer: Timer | None = None) -> Export:
        """Export the provisioned target with its standard tool, into ``directory``."""

    def instance_from_export(self, spec: TargetSpec) -> Target:
        """A new, not yet started instance made from this target's ``export``."""


@runtime_checkable
class Measuring(Protocol):
    """Reports, from the host side, what the target occupies and uses."""

    def footprint(self) -> dict[str, Any]:
        """Bytes on the host: ``footprint_bytes`` and how they break down."""

    def usage(self) -> tuple[int, float]:
        """From the host side: (memory bytes, CPU seconds used so far)."""

    def memory_as_booted(self) -> str:
        """Make ``usage``'s memory independent of how the target started (a VM resumed from
        a saved state is halted and started first); how the measured instance started."""


@runtime_checkable
class Attaching(Protocol):
    """Reaches a running target again from its saved state, in another process."""

    @classmethod
    def attach(cls, spec: TargetSpec, state: dict[str, Any]) -> Target:
        """This backend's target for what ``state`` describes, already up (no bring-up)."""


@runtime_checkable
class Shell(Protocol):
    """Opens a shell in the target, or runs a command there, from the host's terminal."""

    def shell(self, command: list[str] | None = None) -> tuple[list[str], dict[str, str] | None,
                                                            Path | None]:
        """(argv, environment, working directory) of a command that opens a shell in the
        target, or runs ``command`` there (``python -m pytest_vmcontainer login|exec``)."""


CAPABILITIES: dict[str, type] = {"export": Exporting, "measure": Measuring,
                                 "attach": Attaching, "shell": Shell}


def _backend(target: Target | type[Target]) -> tuple[type, str]:
    cls = target if isinstance(target, type) else type(target)
    return cls, f"the {getattr(cls, 'kind', 'target')} backend {cls.__name__}"


def missing(target: Target | type[Target], needs: Iterable[str]) -> list[str]:
    """The capabilities in ``needs`` that ``target`` (or its class) does not provide."""
    cls, _ = _backend(target)
    return [name for name in needs if not issubclass(cls, CAPABILITIES[name])]


def lacks(target: Target | type[Target], needs: Iterable[str], needed_by: str) -> str | None:
    """One line saying which of ``needs`` the backend lacks and who needs them; None: none."""
    absent = missing(target, needs)
    if not absent:
        return None
    _, backend = _backend(target)
    names = " and ".join(f"the '{name}' capability" for name in absent)
    return f"{needed_by} needs {names}, which {backend} does not provide"


def require(target: Target | type[Target], needs: Iterable[str], needed_by: str) -> None:
    """Raise a one-line ``UsageError`` unless the backend provides all of ``needs``."""
    reason = lacks(target, needs, needed_by)
    if reason is not None:
        raise UsageError(reason, "use a backend that provides it (see "
                         "pytest_vmcontainer.targets.capabilities)")


def as_exporting(target: Target) -> Exporting:
    """``target`` as an exporter, for callers that checked up front (else ``require``'s error)."""
    require(target, ["export"], "an export, or a new instance from it,")
    return cast(Exporting, target)


def as_measuring(target: Target) -> Measuring:
    require(target, ["measure"], "a measurement from the host side")
    return cast(Measuring, target)


def as_shell(target: Target) -> Shell:
    require(target, ["shell"], "login and exec")
    return cast(Shell, target)


def as_attaching(cls: type[Target], needed_by: str, also: Iterable[str] = ()) -> Attaching:
    """A backend class that can attach to a saved target, and provides ``also``."""
    require(cls, ["attach", *also], needed_by)
    return cast(Attaching, cls)

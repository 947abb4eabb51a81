"""Log tails keep the error line, not the progress rewrites and backtraces around it."""

from __future__ import annotations

from pathlib import Path

from pytest_vmcontainer.runtime.logtail import readable_lines, tail

VAGRANT_PACKAGE_FAILURE = (
    "\x1b[1m==> default: Downloading vmc-default.img\x1b[0m\n"
    + "".join(f"\x1b[0m\r\x1b[K\x1b[0m\x1b[0mProgress: {n}%\x1b[0m" for n in range(101))
    + "\x1b[0m\x1b[K\x1b[0m\x1b[1m==> default: Image has backing image, copying image\x1b[0m\n"
    "/usr/share/gems/package_domain.rb:153:in ``': No such file or directory - virt-sysprep "
    "(Errno::ENOENT)\n"
    + "".join(f"\tfrom /usr/share/gems/warden.rb:{n}:in `call'\n" for n in range(60))
    + "\tfrom /usr/bin/vagrant:25:in `<main>'\n"
    "\x1b[1m==> default: Removing domain...\x1b[0m\n\n"
)


def test_progress_rewrites_keep_what_the_terminal_shows_last() -> None:
    lines = readable_lines(VAGRANT_PACKAGE_FAILURE)
    assert "==> default: Image has backing image, copying image" in lines
    assert not any("Progress:" in line for line in lines)


def test_ruby_backtrace_frames_do_not_push_the_error_out_of_the_tail(tmp_path: Path) -> None:
    log = tmp_path / "vm.log"
    log.write_bytes(VAGRANT_PACKAGE_FAILURE.encode())
    shown = tail(log, lines=3).splitlines()
    assert shown[-2].endswith("No such file or directory - virt-sysprep (Errno::ENOENT)")
    assert shown[-1] == "==> default: Removing domain..."
    assert not any("\x1b" in line or " from /" in line for line in shown)


def test_missing_log_has_an_empty_tail(tmp_path: Path) -> None:
    assert tail(tmp_path / "absent.log") == ""

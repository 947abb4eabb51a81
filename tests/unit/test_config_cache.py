"""The kept merged Vagrant config: found again only while everything it was read from is the
same, so that a restore starts no Ruby and never runs on a stale config."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from pytest_vmcontainer.host import paths
from pytest_vmcontainer.targets import vmcache
from pytest_vmcontainer.targets.vagrant import configcache
from pytest_vmcontainer.targets.vagrant.config import MachineConfig

VAGRANTFILE = """Vagrant.configure("2") do |config|
  config.vm.box = "team/box"
  config.vm.provision "shell", path: "setup.sh"
end
"""


@pytest.fixture(autouse=True)
def home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("VMC_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "Vagrantfile").write_text(VAGRANTFILE)
    (folder / "setup.sh").write_text("apt-get install -y nginx\n")
    return folder


@pytest.fixture
def box() -> Path:
    directory = paths.vagrant_home() / "boxes" / "team-VAGRANTSLASH-box" / "0" / "libvirt"
    directory.mkdir(parents=True)
    (directory / "box.img").write_bytes(b"disk")
    (directory / "Vagrantfile").write_text("# the box's own\n")
    return directory


def _machine(box: Path | None, installed: bool = True) -> MachineConfig:
    return MachineConfig("default", "team/box", installed, str(box) if box else None,
                         ("libvirt",), ({"guest": 80, "host": 8080, "id": "tcp8080"},),
                         ({"type": "shell", "path": "setup.sh"},), False, True)


def test_a_kept_config_is_found_while_nothing_changed(project: Path, box: Path) -> None:
    vagrantfile = project / "Vagrantfile"
    assert configcache.lookup(vagrantfile) is None
    configcache.keep(vagrantfile, _machine(box))
    assert configcache.lookup(vagrantfile) == _machine(box)


def test_it_keeps_the_real_box_directory_not_the_sessions_link(project: Path, box: Path,
                                                               tmp_path: Path) -> None:
    session_boxes = tmp_path / "session" / "vagrant.d" / "boxes"
    session_boxes.parent.mkdir(parents=True)
    session_boxes.symlink_to(paths.vagrant_home() / "boxes")  # as vagrant_home() links it
    through_link = session_boxes / "team-VAGRANTSLASH-box" / "0" / "libvirt"
    configcache.keep(project / "Vagrantfile", _machine(through_link))
    session_boxes.unlink()  # the session ended
    found = configcache.lookup(project / "Vagrantfile")
    assert found is not None and found.box_directory == str(box.resolve())


@pytest.mark.parametrize("change", [
    "the Vagrantfile", "a file it names beside it", "a file it names in a folder",
    "the box's files", "a variable it names", "the plumbing"])
def test_any_input_changed_means_vagrant_reads_again(project: Path, box: Path, change: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    vagrantfile = project / "Vagrantfile"
    (project / "conf").mkdir()
    (project / "conf" / "vm.yml").write_text("memory: 1024\n")
    vagrantfile.write_text(VAGRANTFILE.replace(
        "end\n", 'end\nx = YAML.load_file("conf/vm.yml")\ny = ENV["TEAM_MEMORY"]\n'))
    monkeypatch.setenv("TEAM_MEMORY", "1024")
    configcache.keep(vagrantfile, _machine(box))
    assert configcache.lookup(vagrantfile) is not None
    if change == "the Vagrantfile":
        vagrantfile.write_text(vagrantfile.read_text() + "# edited\n")
    elif change == "a file it names beside it":
        (project / "setup.sh").write_text("apt-get install -y apache2\n")
    elif change == "a file it names in a folder":
        (project / "conf" / "vm.yml").write_text("memory: 2048\n")
    elif change == "the box's files":
        (box / "box.img").write_bytes(b"a rebuilt disk")
    elif change == "a variable it names":
        monkeypatch.setenv("TEAM_MEMORY", "2048")
    else:
        plumbing = project.parent / "plumbing"
        plumbing.write_text("# another plumbing\n")
        monkeypatch.setattr(configcache, "PLUMBING", plumbing)
    assert configcache.lookup(vagrantfile) is None


def test_files_beside_it_that_it_does_not_name_do_not_count(project: Path, box: Path) -> None:
    """The runs write them (tests, reports, coverage): each would cost a Ruby start."""
    configcache.keep(project / "Vagrantfile", _machine(box))
    (project / "report.xml").write_text("<testsuite/>")
    assert configcache.lookup(project / "Vagrantfile") is not None


def _add_box(name: str) -> None:
    """Another box installed, as ``vagrant box add`` leaves it."""
    directory = paths.vagrant_home() / "boxes" / name.replace("/", "-VAGRANTSLASH-") / "0"
    (directory / "libvirt").mkdir(parents=True)
    (directory / "libvirt" / "box.img").write_bytes(b"another disk")


def test_a_box_it_does_not_name_does_not_count(project: Path, box: Path) -> None:
    """Another job adds a box beside the runs (the boot-loader box): each would cost a Ruby
    start. Another version of the box it names counts."""
    configcache.keep(project / "Vagrantfile", _machine(box))
    _add_box("other/box")
    assert configcache.lookup(project / "Vagrantfile") is not None
    (box.parent.parent / "1" / "libvirt").mkdir(parents=True)
    (box.parent.parent / "1" / "libvirt" / "box.img").write_bytes(b"a newer version")
    assert configcache.lookup(project / "Vagrantfile") is None


def test_a_vagrantfile_that_names_no_installed_box_keys_on_every_box(project: Path,
                                                                     box: Path) -> None:
    """A box name it computes is not seen: any box added may be the one it picks."""
    vagrantfile = project / "Vagrantfile"
    vagrantfile.write_text(VAGRANTFILE.replace('"team/box"', '"team/" + "box"'))
    configcache.keep(vagrantfile, _machine(box))
    assert configcache.lookup(vagrantfile) is not None
    _add_box("other/box")
    assert configcache.lookup(vagrantfile) is None


def test_a_vagrantfile_that_lists_files_keys_on_every_file_beside_it(project: Path,
                                                                     box: Path) -> None:
    vagrantfile = project / "Vagrantfile"
    vagrantfile.write_text(VAGRANTFILE + 'Dir.glob("*.yml").each { |f| load_settings(f) }\n')
    configcache.keep(vagrantfile, _machine(box))
    (project / "extra.yml").write_text("memory: 2048\n")
    assert configcache.lookup(vagrantfile) is None


def test_a_required_file_counts_without_its_extension(project: Path, box: Path) -> None:
    vagrantfile = project / "Vagrantfile"
    vagrantfile.write_text('require_relative "settings"\n' + VAGRANTFILE)
    (project / "settings.rb").write_text("MEMORY = 1024\n")
    configcache.keep(vagrantfile, _machine(box))
    (project / "settings.rb").write_text("MEMORY = 2048\n")
    assert configcache.lookup(vagrantfile) is None


def test_variables_it_does_not_name_do_not_count(project: Path, box: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    configcache.keep(project / "Vagrantfile", _machine(box))
    monkeypatch.setenv("SOMETHING_ELSE", "1")
    assert configcache.lookup(project / "Vagrantfile") is not None


def test_a_vagrantfile_that_reads_the_environment_freely_keys_on_all_of_it(
        project: Path, box: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    vagrantfile = project / "Vagrantfile"
    vagrantfile.write_text(VAGRANTFILE + 'ENV.each { |k, v| puts k }\n')
    configcache.keep(vagrantfile, _machine(box))
    monkeypatch.setenv("PYTEST_SOMETHING", "per test")  # volatile: not counted
    assert configcache.lookup(vagrantfile) is not None
    monkeypatch.setenv("SOMETHING_ELSE", "1")
    assert configcache.lookup(vagrantfile) is None


def test_the_vm_caches_own_boxes_do_not_count(project: Path, box: Path) -> None:
    configcache.keep(project / "Vagrantfile", _machine(box))
    entry = paths.vagrant_home() / "boxes" / f"{vmcache.BOX_PREFIX}-VAGRANTSLASH-{'a' * 24}"
    (entry / "0" / "libvirt").mkdir(parents=True)
    (entry / "0" / "libvirt" / "vmc-cache.json").write_text("{}")  # its last use, written
    assert configcache.lookup(project / "Vagrantfile") is not None


def test_a_runs_exported_app_box_does_not_count_but_a_team_box_does(project: Path,
                                                                     box: Path) -> None:
    """A comparison run's ``vmc-<session>-app`` box lives while its run does. (A Vagrantfile
    that computes its box's name, so that every other box counts.)"""
    vagrantfile = project / "Vagrantfile"
    vagrantfile.write_text(VAGRANTFILE.replace('"team/box"', '"team/" + "box"'))
    configcache.keep(vagrantfile, _machine(box))
    boxes = paths.vagrant_home() / "boxes"
    (boxes / "vmc-0123abcd-app" / "0" / "libvirt").mkdir(parents=True)
    (boxes / "vmc-0123abcd-app" / "0" / "libvirt" / "box.img").write_text("exported")
    assert configcache.lookup(vagrantfile) is not None
    _add_box("vmc-team-app")  # not a session's name
    assert configcache.lookup(vagrantfile) is None


def test_no_config_without_an_installed_box_is_kept(project: Path) -> None:
    configcache.keep(project / "Vagrantfile", _machine(None, installed=False))
    assert configcache.lookup(project / "Vagrantfile") is None
    assert not configcache.directory().exists()


def test_a_box_that_went_means_vagrant_reads_again(project: Path, box: Path) -> None:
    configcache.keep(project / "Vagrantfile", _machine(box))
    moved = box.with_name("elsewhere")
    box.rename(moved)
    moved.rename(box.parent.parent / "1")  # the listing changed too; either way: read again
    assert configcache.lookup(project / "Vagrantfile") is None


def test_only_the_newest_configs_stay_and_clean_forgets_them(
        project: Path, box: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(configcache, "KEPT", 2)
    vagrantfile = project / "Vagrantfile"
    for number in range(4):
        vagrantfile.write_text(VAGRANTFILE + f"# {number}\n")
        configcache.keep(vagrantfile, replace(_machine(box), name=f"m{number}"))
        for kept in configcache.directory().glob("*.json"):  # older ones, older times
            os.utime(kept, (kept.stat().st_mtime - 10,) * 2)
    assert len(list(configcache.directory().glob("*.json"))) == 2
    found = configcache.lookup(vagrantfile)
    assert found is not None and found.name == "m3"
    assert configcache.forget_all() == [f"2 kept Vagrant configs ({configcache.directory()})"]
    assert configcache.lookup(vagrantfile) is None


def test_a_write_that_fails_costs_only_the_shortcut(project: Path, box: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk or a race while keeping the config never fails the run."""
    def full(*_args: object) -> None:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patched:
        patched.setattr(Path, "replace", full)
        configcache.keep(project / "Vagrantfile", _machine(box))  # no error
    assert list(configcache.directory().iterdir()) == []  # nor a partial file
    assert configcache.lookup(project / "Vagrantfile") is None


def test_a_box_file_that_goes_meanwhile_keys_as_gone(tmp_path: Path) -> None:
    assert configcache._stamp(tmp_path / "removed-meanwhile") == "gone"
    assert configcache._content(tmp_path / "removed-meanwhile") == "gone"

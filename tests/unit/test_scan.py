"""The parity scan's logic: parsing the collector, noise, nature, bases, user rules, rendering."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pytest_vmcontainer.errors import SettingError
from pytest_vmcontainer.scan import collect, render
from pytest_vmcontainer.scan.compare import Bases, compare
from pytest_vmcontainer.scan.model import CATEGORIES, Scan, ScanResult, Server
from pytest_vmcontainer.scan.rules import FROM_BASES, IDENTITY, NATURE, parse_user_rules

DATA = Path(__file__).parent / "data"


def scan(**facts: dict[str, str]) -> Scan:
    """A live scan with every category collected; ``facts`` by category."""
    return Scan(facts={category: dict(facts.get(category, {})) for category in CATEGORIES},
                categories=list(CATEGORIES), seconds=0.5)


def unexpected(result: ScanResult) -> list[tuple[str, str]]:
    return [(d.category, d.item) for d in result.unexpected]


# ---------------------------------------------------------------------------- noise


def test_values_that_identify_a_machine_or_a_boot_never_show() -> None:
    vm = scan(file={"/etc/machine-id": "file 444 root:root sha256:aaaa",
                    "/etc/hostname": "file 644 root:root sha256:1111",
                    "/etc/ssh/ssh_host_ed25519_key": "file 600 root:root sha256:2222",
                    "/etc/shadow": "file 640 root:shadow sha256:3333"})
    vm.servers["app (root)"] = Server(ports=[80], environment={
        "INVOCATION_ID": "0f3c", "JOURNAL_STREAM": "8:1234", "SYSTEMD_EXEC_PID": "412"})
    container = scan(file={"/etc/machine-id": "file 444 root:root sha256:bbbb",
                           "/etc/hostname": "file 644 root:root sha256:9999"})
    container.servers["app (root)"] = Server(ports=[80], environment={"HOSTNAME": "c0ffee"})
    result = compare(vm, container, ports={80})
    assert result.differences == []
    assert result.ignored == 8  # four files, four variables


def test_pids_and_the_collectors_own_session_are_not_processes() -> None:
    status = "\n".join(
        f"==> /proc/{pid}/status <==\nName:\t{name}\nPPid:\t{ppid}\nUid:\t{uid}\t{uid}\n"
        for pid, name, ppid, uid in ((1, "systemd", 0, 0), (2, "kthreadd", 0, 0),
                                     (9, "kworker/0:1", 2, 0), (50, "sshd", 1, 0),
                                     (60, "sshd", 50, 0), (61, "sh", 60, 1000),
                                     (62, "sudo", 61, 0), (63, "sh", 62, 0), (64, "head", 63, 0),
                                     (70, "nginx", 1, 0), (71, "nginx", 70, 33),
                                     (72, "nginx", 70, 33)))
    cmdlines = {1: "/sbin/init", 50: "sshd: /usr/sbin/sshd -D [listener]",
                60: "sshd: vagrant [priv]", 61: "sh -c sudo ...", 62: "sudo sh -c ...",
                63: "sh -c VMC_SCAN_PATHS=...", 64: "head -v -c 4096",
                70: "nginx: master process nginx", 71: "nginx: worker process",
                72: "nginx: worker process"}
    cmdline = "\n".join(f"==> /proc/{pid}/cmdline <==\n{args.replace(' ', chr(0))}\0"
                        for pid, args in cmdlines.items())
    text = (f"@@ version\n2\n@@ passwd\nroot:x:0:0::/root:/bin/sh\n"
            f"www-data:x:33:33::/var/www:/usr/sbin/nologin\n@@ self\n63\n"
            f"@@ procs\n{status}\n{cmdline}\n@@ end\n")
    processes = collect.parse(text).items("process")
    assert processes == {"systemd (root)": "/sbin/init",
                         "sshd (root)": "sshd: /usr/sbin/sshd -D [listener]",
                         "nginx (root)": "nginx: master process nginx",
                         "nginx (www-data)": "2x nginx: worker process"}


# ---------------------------------------------------------------------------- nature, bases


def test_differences_from_each_targets_nature_are_expected_with_their_reason() -> None:
    vm = scan(package={"linux-image-cloud-amd64": "6.1.0", "openssh-server": "1:9.2"},
              port={"tcp 0.0.0.0:22": "sshd (root)"},
              file={"/etc/hosts": "file 644 root:root sha256:aaaa"},
              system={"kernel": "6.1.0-28-cloud-amd64"})
    container = scan(file={"/etc/hosts": "file 644 root:root sha256:bbbb"},
                     system={"kernel": "6.8.0-45-generic"})
    result = compare(vm, container)
    assert result.unexpected == []
    reasons = {d.item: d.expected for d in result.expected}
    assert reasons["linux-image-cloud-amd64"] == reasons["kernel"]
    assert "own kernel" in str(reasons["kernel"])
    assert "SSH" in str(reasons["tcp 0.0.0.0:22"])
    assert "Docker generates" in str(reasons["/etc/hosts"])


def test_a_nature_rule_holds_only_on_its_side() -> None:
    """sshd on the VM is its nature; sshd on the container alone is a finding."""
    result = compare(scan(), scan(package={"openssh-server": "1:9.2"}))
    assert unexpected(result) == [("package", "openssh-server")]


def test_differences_the_bases_already_had_are_from_the_bases() -> None:
    box = Scan(facts={"package": {"python3": "3.11.2-1"}, "user": {}}, categories=list(
        collect.STATIC))
    docker_base = Scan(facts={"package": {}, "user": {}}, categories=list(collect.STATIC))
    vm = scan(package={"python3": "3.11.2-1", "nginx": "1.22"}, user={"app": "uid=1001"})
    container = scan(package={"nginx": "1.22"})
    result = compare(vm, container, bases=Bases(box, docker_base))
    assert [(d.item, d.expected) for d in result.expected] == [("python3", FROM_BASES)]
    assert unexpected(result) == [("user", "app")]  # provisioning made it, on one side
    assert result.notes == []


def test_without_base_scans_the_report_says_so() -> None:
    result = compare(scan(package={"python3": "3"}), scan(),
                     bases=Bases(missing="bases not scanned: the box was built without a scan"))
    assert unexpected(result) == [("package", "python3")]
    assert result.notes == ["bases not scanned: the box was built without a scan"]


# ---------------------------------------------------------------------------- user rules


def test_user_rules_come_first_and_a_bad_line_names_itself() -> None:
    rules = parse_user_rules(["# comment", "", "package libfoo* the VM needs libfoo",
                              "file /etc/app/*.conf  generated at start"], "ini vmc_scan_expect")
    result = compare(scan(package={"libfoo2": "2", "bar": "1"}),
                     scan(file={"/etc/app/a.conf": "file 644 root:root sha256:1"}), rules)
    assert {d.item: d.expected for d in result.differences} == {
        "libfoo2": "the VM needs libfoo", "bar": None, "/etc/app/a.conf": "generated at start"}
    with pytest.raises(SettingError, match="ini vmc_scan_expect: 'pkg x y'"):
        parse_user_rules(["pkg x y"], "ini vmc_scan_expect")
    with pytest.raises(SettingError, match="is not 'CATEGORY GLOB reason'"):
        parse_user_rules(["package nginx"], "x")


def test_every_rule_names_a_known_category_and_a_reason() -> None:
    for rule in (*IDENTITY, *NATURE):
        assert rule.category in CATEGORIES and rule.reason and rule.only in ("", "vm",
                                                                             "container")


# ---------------------------------------------------------------------------- categories


def test_each_category_reports_its_differences() -> None:
    vm = scan(package={"nginx": "1.22.1-9"}, user={"app": "uid=1001 gid=1001"},
              group={"app": "gid=1001"}, port={"tcp 0.0.0.0:8080": "app (app)"},
              process={"app (app)": "/usr/bin/app --fast"},
              file={"/etc/app.conf": "file 600 root:root sha256:1"},
              sysctl={"net.core.somaxconn": "4096"}, system={"timezone": "Etc/UTC"})
    vm.servers["app (app)"] = Server(ports=[80], environment={"MODE": "prod"},
                                     limits={"Max open files": "1024 / 524288"}, cwd="/srv")
    container = scan(package={"nginx": "1.22.1-9+b1"}, user={"app": "uid=1002 gid=1002"},
                     group={"app": "gid=1002"}, port={"tcp 0.0.0.0:8081": "app (app)"},
                     process={"app (app)": "/usr/bin/app"},
                     file={"/etc/app.conf": "file 644 root:root sha256:1"},
                     sysctl={"net.core.somaxconn": "128"}, system={"timezone": "Europe/Paris"})
    container.servers["app (app)"] = Server(ports=[80], environment={"MODE": "dev"},
                                            limits={"Max open files": "1048576 / 1048576"},
                                            cwd="/")
    result = compare(vm, container, ports={80})
    assert {d.category for d in result.unexpected} == set(CATEGORIES)
    limit = next(d for d in result.differences if d.category == "limit")
    assert (limit.item, limit.vm, limit.container) == (
        "app (app): Max open files", "1024 / 524288", "1048576 / 1048576")


def test_server_details_are_compared_for_the_forwarded_ports_on_both_sides() -> None:
    vm, container = scan(), scan()
    vm.servers = {"app (root)": Server(ports=[80], environment={"A": "1"}),
                  "sshd (root)": Server(ports=[22], environment={"LANG": "C"})}
    container.servers = {"app (root)": Server(ports=[80], environment={"A": "2"})}
    result = compare(vm, container, ports={80})
    assert unexpected(result) == [("environment", "app (root): A")]
    # no ports given (any two hosts): every server found on both sides
    assert unexpected(compare(vm, container)) == [("environment", "app (root): A")]


# ---------------------------------------------------------------------------- rendering


def test_scan_json_has_the_documented_keys(tmp_path: Path) -> None:
    result = compare(scan(user={"a": "uid=1"}), scan(), hosts={"vm": "v", "container": "c"})
    data = json.loads(render.write_json(result, tmp_path).read_text())
    assert set(data) >= {"collected_in_s", "differences", "same"}
    assert data["collected_in_s"] == {"vm": 0.5, "container": 0.5}
    assert data["differences"] == [{"category": "user", "item": "a", "vm": "uid=1",
                                    "container": None, "expected": None}]
    assert ScanResult.from_json(data).differences == result.differences


def test_terminal_lines_group_the_unexpected_and_count_the_expected() -> None:
    result = compare(scan(user={"a": "uid=1"}, system={"kernel": "6.1"}),
                     scan(system={"kernel": "6.8"}))
    lines = render.terminal_lines(result)
    assert lines[0].startswith("scanned in vm 0.50 s, container 0.50 s (at the same time)")
    assert "user:" in lines
    assert any(line.strip().startswith("a") and "container: (absent)" in line
               for line in lines)
    assert any(line.startswith("expected differences: 1 (1 the VM boots its own kernel")
               for line in lines)


# ---------------------------------------------------------------------------- recorded scans


def recorded(name: str) -> dict[str, str]:
    data: dict[str, str] = json.loads((DATA / f"scan-{name}.json").read_text())
    return data


def test_the_recorded_nginx_pair_shows_only_real_findings() -> None:
    """A real VM (TCG) and container scan of the shipped files, with their bases' scans:
    what remains unexpected is what the README explains, each a VM-against-container fact."""
    vm, container = (collect.parse(recorded(kind)["raw"]) for kind in ("vm", "container"))
    bases = recorded("bases")
    result = compare(vm, container, bases=Bases(collect.parse(bases["vm"]),
                                                collect.parse(bases["container"])), ports={80})
    assert {(d.category, d.item) for d in result.unexpected} == {
        ("process", "nginx (root)"),
        ("environment", "nginx (root): HOME"), ("environment", "nginx (root): LANG"),
        ("limit", "nginx (root): Max open files"), ("limit", "nginx (root): Max processes"),
        ("limit", "nginx (root): Max pending signals"),
        ("sysctl", "net.unix.max_dgram_qlen")}
    reasons = {d.expected for d in result.expected}
    assert FROM_BASES in reasons and len(result.expected) > 200
    shown = json.dumps([d.to_json() for d in result.differences])
    for noise in ("machine-id", "ssh_host_", "/etc/hostname", "INVOCATION_ID"):
        assert noise not in shown
    assert not re.search(r"/proc/\d", shown)  # no PID anywhere
    assert result.ignored >= 10
    assert any("environment read from the systemd unit nginx.service (vm)" in note
               for note in result.notes)


def test_every_category_is_collected_from_the_recordings() -> None:
    for kind in ("vm", "container"):
        parsed = collect.parse(recorded(kind)["raw"])
        assert set(parsed.categories) == set(CATEGORIES)
        assert all(parsed.items(category) for category in CATEGORIES
                   if category not in ("environment", "limit")), kind
        assert parsed.servers["nginx (root)"].ports == [80]
    vm = collect.parse(recorded("vm")["raw"])
    assert vm.items("port")["tcp 0.0.0.0:22"] == "sshd (root)"
    assert vm.items("system")["os"] == "Debian GNU/Linux 12 (bookworm)"
    assert not any(item.startswith(("kworker", "kthreadd")) for item in vm.items("process"))


def test_a_base_scanned_with_the_first_output_format_still_reads() -> None:
    box = collect.parse(recorded("bases")["vm"])
    assert box.categories == list(collect.STATIC)
    assert box.items("file")["/etc/passwd"].startswith("file 644 root:root sha256:")


def test_the_collector_runs_here_as_plain_sh(tmp_path: Path) -> None:
    import subprocess

    done = subprocess.run(["sh", "-c", collect.command(paths=[str(tmp_path)], ports={1})],
                          capture_output=True, check=True)
    (tmp_path / "x").write_text("x")
    parsed = collect.parse(done.stdout.decode("utf-8", errors="replace"))
    assert collect.sections(done.stdout.decode("utf-8", errors="replace"))["version"] == \
        collect.FORMAT_VERSION
    assert str(tmp_path) in parsed.items("file")


# ---------------------------------------------------------------------------- saved reports


def test_a_saved_report_and_a_merge_carry_the_scan(tmp_path: Path) -> None:
    from pytest_vmcontainer import runreport

    runs = DATA / "run-vm.json", DATA / "run-container.json"
    result = compare(scan(user={"app": "uid=1001"}), scan())
    with_scan = runreport.load(runs[0])
    with_scan.scan = result
    written = runreport.write(with_scan, tmp_path / "vm")
    assert json.loads(written["scan"].read_text())["differences"][0]["item"] == "app"
    again = runreport.load(written["json"])
    assert again.scan is not None and again.scan.differences == result.differences
    merged = runreport.merge(runreport.load(runs[1]), again, ["c", "v"])
    assert merged.scan is not None and merged.scan.same == result.same
    assert "parity scan:" in runreport.terminal_lines(merged)
    assert "| scan | user: app |" in (runreport.write(merged, tmp_path / "m")["markdown"]
                                      .read_text())

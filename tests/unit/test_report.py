"""Rendering the comparison: value formatting, terminal table, JSON, Markdown and HTML."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from pytest_vmcontainer.comparison.report import (
    benchmark_lines,
    figure_unit,
    format_value,
    interval_text,
    load_report,
    render_html,
    render_markdown,
    report_from_json,
    terminal_lines,
    write_reports,
)
from pytest_vmcontainer.comparison.results import (
    DOES_NOT_HOLD,
    HOLDS,
    NOT_MEASURABLE,
    SCHEMA,
    ComparisonReport,
    RowResult,
    UserBenchmark,
    Verdict,
)

TCG = {"mode": "tcg"}
MODE_REASON = "KVM did not boot the box kernel within 10s"


def _row(id: str, aspect: str, claims: tuple[str, str], unit: str, headline: str,
         figures: dict[str, dict[str, Any]], verdict: Verdict | None) -> RowResult:
    return RowResult(id=id, aspect=aspect, claim_vm=claims[0], claim_container=claims[1],
                     unit=unit, headline=headline, how=f"measured {id} on both targets",
                     rule=f"{id} rule: compare the headline figures", figures=figures,
                     verdict=verdict)


def _rows() -> list[RowResult]:
    """All eleven rows with recorded-looking figures from a TCG run."""
    return [
        _row("size", "Size", ("GBs (1-10+ GB)", "MBs (10-500 MB)"), "bytes", "footprint_bytes",
             {"vm": {**TCG, "footprint_bytes": 1_234_567_890, "box_bytes": 402_653_184,
                     "disk_bytes": 1_234_567_890},
              "container": {"footprint_bytes": 139_400_000, "image_bytes": 139_000_000,
                            "unique_bytes": 12_000_000, "rw_bytes": 400_000}},
             Verdict(HOLDS, "VM footprint 1.2 GB is 8.9x the container's 139.4 MB")),
        _row("boot_time", "Boot time", ("minutes", "seconds"), "s", "cold_s",
             {"vm": {**TCG, "cold_s": 45.2, "warm_s": 38.7, "cold_rounds_s": [45.2, 44.9],
                     "warm_rounds_s": [38.7, 39.1]},
              "container": {"cold_s": 0.41, "warm_s": 0.31, "cold_rounds_s": [0.41, 0.39],
                            "warm_rounds_s": [0.31, 0.30]}},
             Verdict(HOLDS, "container starts 110x faster; VM under TCG is slower than KVM")),
        _row("performance", "Performance", ("near-native (HW virt)", "native"), "ratio",
             "ratio_to_native",
             {"vm": {**TCG, "ratio_to_native": 11.8, "seconds": 23.6},
              "container": {"ratio_to_native": 1.02, "seconds": 2.04},
              "host": {"seconds": 2.0}},
             Verdict(NOT_MEASURABLE, "VM ran under TCG (software emulation), not KVM")),
        _row("isolation", "Isolation", ("full (own kernel)", "process-level"), "bool",
             "separate_kernel",
             {"vm": {**TCG, "separate_kernel": True, "kernel_release": "6.1.0-18-amd64",
                     "boot_id_matches_host": False, "visible_processes": 87, "pid1": "systemd"},
              "container": {"separate_kernel": False, "kernel_release": "6.8.0-45-generic",
                            "boot_id_matches_host": True, "visible_processes": 3,
                            "pid1": "<b>nginx</b>"}},
             Verdict(HOLDS, "the container shares the host's boot id")),
        _row("os_support", "OS support", ("any OS", "host kernel only"), "bool",
             "different_kernel",
             {"vm": {**TCG, "different_kernel": True, "kernel_release": "6.1.0-18-amd64",
                     "host_kernel_release": "6.8.0-45-generic"},
              "container": {"different_kernel": False, "kernel_release": "6.8.0-45-generic"}},
             None),
        _row("security", "Security", ("stronger", "weaker (shared kernel)"), "bool",
             "shares_host_kernel",
             {"vm": {**TCG, "shares_host_kernel": False, "root_is_host_root": False,
                     "cap_eff_count": 41, "seccomp": 0, "listening_ports": [22, 80]},
              "container": {"shares_host_kernel": True, "root_is_host_root": False,
                            "cap_eff_count": 14, "seccomp": 2, "listening_ports": [80]}},
             Verdict(HOLDS, "container processes run on the host kernel")),
        _row("portability", "Portability", ("less portable", "highly portable"), "bytes",
             "export_bytes",
             {"vm": {**TCG, "export_bytes": 402_653_184, "export_seconds": 31.5,
                     "format": "vagrant box (qcow2)"}},
             Verdict(NOT_MEASURABLE, "container export failed: docker save timed out")),
        _row("resource_usage", "Resource usage", ("high", "low"), "bytes", "idle_memory_bytes",
             {"vm": {**TCG, "idle_memory_bytes": 612_000_000, "idle_cpu_percent": 7.5},
              "container": {"idle_memory_bytes": 9_800_000, "idle_cpu_percent": 0.1}},
             Verdict(HOLDS, "VM idles at 62x the container's memory")),
        _row("density", "Density", ("few per host", "many per host"), "count",
             "extrapolated_instances",
             {"vm": {**TCG, "extrapolated_instances": 25, "per_instance_bytes": 640_000_000,
                     "started": 2, "start_all_seconds": 95.0, "budget_bytes": 16_000_000_000,
                     "extrapolated": True},
              "container": {"extrapolated_instances": 1632, "per_instance_bytes": 9_800_000,
                            "started": 20, "start_all_seconds": 6.2,
                            "budget_bytes": 16_000_000_000, "extrapolated": True}},
             Verdict(HOLDS, "extrapolated 65x more containers than VMs in 16.0 GB")),
        _row("networking", "Networking", ("virtual NIC", "near-native"), "req/s", "rps",
             {"vm": {**TCG, "rps": 1234.4, "p50_ms": 3.1, "p90_ms": 7.9, "p99_ms": 21.4,
                     "client_cpu_percent": 35.0, "requests": 37032, "errors": 0},
              "container": {"rps": 18250.0, "p50_ms": 0.42, "p90_ms": 0.9, "p99_ms": 2.3,
                            "client_cpu_percent": 98.0, "requests": 547500, "errors": 0}},
             Verdict(DOES_NOT_HOLD, "the load client saturated a CPU on the container " * 4)),
        _row("storage", "Storage", ("virtual disk", "overlay layers"), "MB/s", "write_mb_s",
             {"vm": {**TCG, "write_mb_s": 212.3, "read_mb_s": None, "sync_write_iops": 310},
              "container": {"write_mb_s": 512.3, "read_mb_s": 1840.0, "sync_write_iops": 2900},
              "host": {"write_mb_s": 530.0, "read_mb_s": 1900.0, "sync_write_iops": 3100}},
             Verdict(HOLDS, "overlay writes at host speed")),
    ]


def _report(rows: list[RowResult] | None = None) -> ComparisonReport:
    return ComparisonReport(
        generated_at="2024-05-02T10:11:12Z",
        host={"kernel": "6.8.0-45-generic", "cpu": "AMD EPYC 7763 (4 cores)",
              "memory_bytes": 16_784_000_000, "docker": "26.1.3", "vagrant": "2.4.1"},
        vm_mode="tcg", vm_mode_reason=MODE_REASON,
        settings={"rounds": 2, "budget_bytes": 16_000_000_000},
        rows=_rows() if rows is None else rows)


class _StrictParser(HTMLParser):
    """Checks that every non-void element is closed in order."""

    VOID = frozenset({"meta", "br", "hr", "img", "input", "link"})

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.svg_texts: list[str] = []
        self._in_text = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in self.VOID:
            self.stack.append(tag)
        self._in_text = tag == "text"

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()
        self._in_text = False

    def handle_data(self, data: str) -> None:
        if self._in_text:
            self.svg_texts.append(data)


def _parse(page: str) -> _StrictParser:
    parser = _StrictParser()
    parser.feed(page)
    parser.close()
    assert parser.stack == []
    return parser


@pytest.mark.parametrize(("value", "unit", "expected"), [
    (1_234_567_890, "bytes", "1.2 GB"),
    (139_400_000, "bytes", "139.4 MB"),
    (512, "bytes", "512 B"),
    (999_960_000, "bytes", "1.0 GB"),
    (0.314, "s", "0.31 s"),
    (42, "s", "42.0 s"),
    (126, "s", "2.1 min"),
    (1.0234, "ratio", "1.02x"),
    (True, "bool", "yes"),
    (False, "bool", "no"),
    (1632.4, "count", "1,632"),
    (1234.4, "req/s", "1,234 req/s"),
    (512.34, "MB/s", "512.3 MB/s"),
    (None, "bytes", "-"),
    ([45.2, 0.41], "s", "45.2 s, 0.41 s"),
    ([], "s", "none"),
    ("6.1.0-18-amd64", "", "6.1.0-18-amd64"),
    (3.14159, "", "3.14"),
    (17, "furlongs", "17"),
    (float("nan"), "bytes", "nan"),
    ("unknown", "bytes", "unknown"),
])
def test_format_value(value: object, unit: str, expected: str) -> None:
    assert format_value(value, unit) == expected


def test_figure_units_follow_headline_then_name() -> None:
    row = _rows()[2]
    assert figure_unit("ratio_to_native", row) == "ratio"
    assert [figure_unit(k) for k in ("write_mb_s", "cold_rounds_s", "p99_ms", "disk_bytes",
                                     "export_seconds", "rps", "sync_write_iops", "pid1")] == \
        ["MB/s", "s", "ms", "bytes", "s", "req/s", "IOPS", ""]


def test_terminal_lines_show_mode_aspects_verdicts() -> None:
    lines = terminal_lines(_report())
    assert lines[0] == f"VM figures: TCG ({MODE_REASON})"
    text = "\n".join(lines)
    for row in _rows():
        assert row.aspect in text
    for status in (HOLDS, DOES_NOT_HOLD, NOT_MEASURABLE):
        assert status in text
    assert "1.2 GB [TCG]" in text and "45.2 s [TCG]" in text and "0.41 s" in text
    assert "GBs (1-10+ GB) / MBs (10-500 MB)" in text
    # The 200-character networking reason is cut; every line stays readable.
    networking = next(line for line in lines if line.startswith("Networking"))
    assert networking.endswith("...")
    assert max(len(line) for line in lines) < 200


def test_terminal_lines_missing_target_and_verdict() -> None:
    lines = terminal_lines(_report())
    portability = next(line for line in lines if line.startswith("Portability"))
    assert "402.7 MB [TCG]" in portability and "not measured" in portability
    os_support = next(line for line in lines if line.startswith("OS support"))
    assert os_support.rstrip().endswith("not measured")


def test_missing_headline_figure_and_none_values_show_dash() -> None:
    row = _row("storage", "Storage", ("a", "b"), "MB/s", "write_mb_s",
               {"vm": {"write_mb_s": None}, "container": {"read_mb_s": 1.0}}, None)
    report = _report([row])
    report.vm_mode = None
    lines = terminal_lines(report)
    assert lines[0] == f"VM figures: none (no VM measured) ({MODE_REASON})"
    cells = re.split(r"\s{2,}", lines[-1])
    assert cells[2:4] == ["-", "-"]
    assert "VM (mode unknown)" in render_html(report)


def test_write_reports_writes_three_files(tmp_path: Path) -> None:
    report = _report()
    paths = write_reports(report, tmp_path / "out" / "nested")
    assert set(paths) == {"json", "markdown", "html"}
    assert [p.name for p in paths.values()] == ["comparison.json", "comparison.md",
                                                "comparison.html"]
    assert all(p.is_file() and p.stat().st_size > 0 for p in paths.values())
    assert sorted(p.name for p in paths["json"].parent.iterdir()) == \
        ["comparison.html", "comparison.json", "comparison.md"]  # no temporary files left


def test_json_round_trips(tmp_path: Path) -> None:
    report = _report()
    path = write_reports(report, tmp_path)["json"]
    data = json.loads(path.read_text())
    assert data == report.to_json()
    assert data["schema"] == SCHEMA
    assert load_report(path) == data
    assert report_from_json(data) == report


def test_load_report_rejects_other_schema(tmp_path: Path) -> None:
    path = tmp_path / "comparison.json"
    path.write_text(json.dumps({"schema": "something/else/9"}))
    with pytest.raises(ValueError, match="schema 'something/else/9' is not"):
        load_report(path)
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="expected a JSON object"):
        load_report(path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_report(path)


def test_markdown_has_main_table_and_sections(tmp_path: Path) -> None:
    text = write_reports(_report(), tmp_path)["markdown"].read_text()
    assert "| aspect | claim VM | claim container | VM | container | verdict | reason |" in text
    for row in _rows():
        assert f"## {row.aspect}" in text
        assert f"measured {row.id} on both targets" in text
    assert "| figure | vm | container | host |" in text
    assert "| memory_bytes | 16.8 GB |" in text
    assert "| cold_rounds_s | 45.2 s, 44.9 s | 0.41 s, 0.39 s | - |" in text
    assert "| read_mb_s | - | 1840.0 MB/s | 1900.0 MB/s |" in text
    assert "- Not measured: container" in text
    assert "&lt;b>nginx&lt;/b>" in text


def test_html_is_self_contained_and_escaped(tmp_path: Path) -> None:
    page = write_reports(_report(), tmp_path)["html"].read_text()
    parser = _parse(page)
    assert page.count("<svg") == 5
    for forbidden in ("http://", "https://", "<script"):
        assert forbidden not in page
    assert "&lt;b&gt;nginx&lt;/b&gt;" in page and "<b>nginx" not in page
    assert 'class="verdict-holds"' in page
    assert 'class="verdict-does-not-hold"' in page
    assert 'class="verdict-not-measurable"' in page
    assert 'class="verdict-none"' in page
    vm_labels = [t for t in parser.svg_texts if t.startswith("VM")]
    assert vm_labels and all(t == "VM (TCG)" for t in vm_labels)
    assert "45.2 s" in parser.svg_texts and "612.0 MB" in parser.svg_texts
    assert "1900.0 MB/s" in parser.svg_texts  # host bar in the disk chart
    assert "21.4 ms" in parser.svg_texts  # VM p99


def test_chart_without_data_says_not_measured() -> None:
    rows = [r for r in _rows() if r.id != "networking"]
    parser = _parse(render_html(_report(rows)))
    latency = parser.svg_texts.index("HTTP latency (lower is better)")
    assert parser.svg_texts[latency + 1] == "not measured"


def test_empty_report_renders_everything(tmp_path: Path) -> None:
    report = _report([])
    report.host, report.vm_mode, report.vm_mode_reason = {}, None, ""
    paths = write_reports(report, tmp_path)
    assert json.loads(paths["json"].read_text()) == report.to_json()
    assert "No rows measured" in paths["markdown"].read_text()
    page = paths["html"].read_text()
    parser = _parse(page)
    assert page.count("<svg") == 0  # a run without rows (parity only) gets no empty charts
    assert "<h2>Charts</h2>" not in page and "No rows measured" in page
    assert parser.svg_texts == []
    lines = terminal_lines(report)
    assert lines[0] == "VM figures: none (no VM measured)"
    assert lines[-1] == "(no rows measured)"
    assert render_markdown(report).startswith("# VM vs container comparison")



# --- schema 2: evidence, intervals, disk cache, like-for-like pairs, a team's benchmarks ---------

INTERVAL = {"estimate": 4.2, "low": 3.9, "high": 4.6, "n": 5, "method": "paired", "reason": ""}


def _report_v2() -> ComparisonReport:
    performance = _row(
        "performance", "Performance", ("slower", "near-native"), "ratio", "ratio_to_native",
        {"vm": {**TCG, "ratio_to_native": 4.31, "ratio_to_native_ci95": [4.02, 4.66],
                "rounds_s": [3.1, 3.0, 3.3]},
         "container": {"ratio_to_native": 1.03, "ratio_to_native_ci95": [1.0, 1.08]},
         "host": {"rounds_s": [0.7, 0.72, 0.75], "round_order": "host, container, vm"}},
        Verdict(NOT_MEASURABLE, "TCG", {"VM/container": INTERVAL, "container/native": {
            "estimate": 1.03, "low": None, "high": None, "n": 2, "method": "paired",
            "reason": "2 rounds, at least 3 needed"}}))
    portability = _row(
        "portability", "Portability", ("large", "portable"), "bytes", "gzip1_bytes",
        {"vm": {**TCG, "gzip1_bytes": 180e6}, "container": {"gzip1_bytes": 64e6}},
        Verdict(HOLDS, "gzip -1 vs gzip -1: ...", {
            "like-for-like pair": "gzip -1 vs gzip -1: the box's content recompressed",
            "gzip -1, VM/container": 2.8125}))
    storage = _row(
        "storage", "Storage", ("slower", "faster"), "MB/s", "write_mb_s",
        {"vm": {**TCG, "write_mb_s": 30.5, "disk_cache": "none"},
         "container": {"write_mb_s": 304.2, "volume_write_mb_s": 300.8, "disk_cache": None}},
        Verdict(NOT_MEASURABLE, "TCG", {"VM disk cache": "none"}))
    report = _report([performance, portability, storage])
    report.user_benchmarks = [
        UserBenchmark("test_api.py::test_latency",
                      {"vm": {"median_s": 0.00041, "min_s": 0.0004, "rounds": 30, "mode": "tcg"},
                       "container": {"median_s": 8.56e-5, "min_s": 8e-5, "rounds": 1200,
                                     "mode": "container"}},
                      {**INTERVAL, "estimate": 4.81, "low": 4.72, "high": 5.85, "n": 30},
                      "the VM is more than 10% slower"),
        UserBenchmark("test_api.py::test_only_vm", {"vm": {"median_s": 1.5, "rounds": 3}},
                      None, "measured on the vm only")]
    return report


def test_interval_text() -> None:
    assert interval_text(INTERVAL) == "4.20x (95% CI 3.90x-4.60x, n=5)"
    refused = {**INTERVAL, "low": None, "high": None, "reason": "2 rounds, at least 3 needed"}
    assert interval_text(refused) == "4.20x (no interval: 2 rounds, at least 3 needed)"
    assert interval_text({"estimate": None, "reason": "no rounds"}) == "no ratio (no rounds)"
    assert interval_text(None) == "-"


def test_the_main_table_shows_intervals_and_the_disk_cache_mode() -> None:
    text = "\n".join(terminal_lines(_report_v2()))
    assert "4.31x (4.02-4.66x) [TCG]" in text and "1.03x (1.00-1.08x)" in text
    assert "30.5 MB/s [TCG, disk cache none]" in text
    assert "180.0 MB [TCG]" in text


def test_markdown_and_html_show_what_each_verdict_rests_on(tmp_path: Path) -> None:
    paths = write_reports(_report_v2(), tmp_path)
    markdown, page = paths["markdown"].read_text(), paths["html"].read_text()
    for text in (markdown, page):
        assert "What the verdict rests on" in text
        assert "VM/container" in text and "4.20x (95% CI 3.90x-4.60x, n=5)" in text
        assert "1.03x (no interval: 2 rounds, at least 3 needed)" in text
        assert "gzip -1 vs gzip -1: the box" in text and "2.81x" in text
        assert "VM disk cache" in text
        assert "Your benchmarks, VM against container" in text
        assert "0.41 ms (n=30) [TCG]" in text and "85.6 us (n=1,200)" in text
        assert "4.81x (95% CI 4.72x-5.85x, n=30)" in text
        assert "measured on the vm only" in text
    assert "| disk_cache | none | - | - |" in markdown
    assert "| volume_write_mb_s | - | 300.8 MB/s | - |" in markdown
    parser = _parse(page)
    assert "300.8 MB/s" in parser.svg_texts  # the container volume's bar


def test_benchmark_lines_only_when_there_are_benchmarks() -> None:
    lines = benchmark_lines(_report_v2())
    assert lines[0].split() == ["benchmark", "VM", "(median)", "container", "(median)",
                                "VM/container", "(median", "ratio)", "verdict"]
    assert lines[2].startswith("test_api.py::test_latency") and lines[-1].startswith("(ratio")
    assert benchmark_lines(_report()) == []


def test_schema_2_round_trips_with_evidence_and_benchmarks(tmp_path: Path) -> None:
    report = _report_v2()
    data = json.loads(write_reports(report, tmp_path)["json"].read_text())
    assert data["schema"] == SCHEMA == "pytest-vmcontainer/comparison/2"
    assert data["rows"][0]["verdict"]["evidence"]["VM/container"] == INTERVAL
    assert report_from_json(data) == report


def test_schema_1_files_still_load() -> None:
    path = Path(__file__).parent / "data" / "comparison-tcg.json"
    data = load_report(path)
    assert data["schema"] == "pytest-vmcontainer/comparison/1"
    report = report_from_json(data)
    assert report.user_benchmarks == [] and len(report.rows) == 11
    assert all(row.verdict is not None and row.verdict.evidence == {} for row in report.rows)
    assert "Your benchmarks" not in render_markdown(report)

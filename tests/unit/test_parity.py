"""The parity store, the ``parity`` fixture's checks and the end-of-run matrix."""

from __future__ import annotations

import pytest

from pytest_vmcontainer.parity import (
    PROP_CHECK,
    PROP_EXPECT_DIFF,
    PROP_MODE,
    PROP_ROW,
    PROP_TARGET,
    Parity,
    ParityMismatch,
    ParityStore,
    json_safe,
)

KINDS = ("vm", "container")


def test_record_returns_what_the_other_targets_saw() -> None:
    store = ParityStore()
    assert store.record("test_a", "version", "vm", "1.22") == {}
    assert store.record("test_a", "version", "container", "1.23") == {"vm": "1.22"}
    assert store.record("test_a", "version", "vm", "1.24") == {"container": "1.23"}
    assert store.record("test_a", "other check", "container", 1) == {}
    assert store.record("test_b", "version", "container", "x") == {}


def test_check_passes_equal_values_and_returns_the_value() -> None:
    store = ParityStore()
    assert Parity(store, "test_a", "vm", None).check("workers", 2) == 2
    assert Parity(store, "test_a", "container", None).check("workers", 2) == 2
    assert store.unexpected_differences() == []


def test_check_raises_on_a_different_value() -> None:
    store = ParityStore()
    Parity(store, "test_a", "vm", None).check("workers", 2)
    with pytest.raises(ParityMismatch) as raised:
        Parity(store, "test_a", "container", None).check("workers", 4)
    assert str(raised.value) == "workers differs between targets: container=4, vm=2"
    assert isinstance(raised.value, AssertionError)  # reported as a test failure
    assert store.unexpected_differences() == ["test_a: workers"]


def test_first_target_alone_never_raises() -> None:
    assert Parity(ParityStore(), "test_a", "container", None).check("pid 1", "nginx") == "nginx"


def test_expected_diff_keeps_both_values_without_raising() -> None:
    store = ParityStore()
    Parity(store, "test_init", "vm", "own init").check("pid 1", "systemd")
    assert Parity(store, "test_init", "container", "own init").check("pid 1", "nginx") == "nginx"
    assert store.rows["test_init"].values["pid 1"] == {"vm": "systemd", "container": "nginx"}
    assert store.rows["test_init"].expected_diff == "own init"
    assert store.unexpected_differences() == []


@pytest.mark.parametrize(("outcomes", "worst"), [
    (["passed"], "passed"),
    (["passed", "passed"], "passed"),
    (["passed", "failed", "passed"], "failed"),
    (["skipped", "passed"], "skipped"),
    (["passed", "error"], "error"),
    (["error", "failed"], "failed"),
])
def test_outcome_keeps_the_worst(outcomes: list[str], worst: str) -> None:
    store = ParityStore()
    for outcome in outcomes:
        store.outcome("test_a", "vm", outcome)
    assert store.rows["test_a"].outcomes == {"vm": worst}


def test_render_empty_store() -> None:
    assert ParityStore().render(KINDS) == []


def test_render_shows_outcomes_and_differences() -> None:
    store = ParityStore()
    for kind, version in (("vm", "1.22"), ("container", "1.22")):
        Parity(store, "test_same", kind, None).check("version", version)
        store.outcome("test_same", kind, "passed")
    Parity(store, "test_diff", "vm", None).check("workers", 2)
    with pytest.raises(ParityMismatch):
        Parity(store, "test_diff", "container", None).check("workers", 4)
    store.outcome("test_diff", "vm", "passed")
    store.outcome("test_diff", "container", "failed")
    for kind, init in (("vm", "systemd"), ("container", "nginx")):
        Parity(store, "test_init", kind, "own init").check("pid 1", init)
    for kind in KINDS:
        Parity(store, "test_match", kind, "might differ").check("user", "root")
    store.outcome("test_only_vm", "vm", "skipped")

    header, *rows = store.render(KINDS)
    assert header.split() == ["check", "vm", "container", "values"]
    by_test = {row.split()[0]: row for row in rows}
    assert list(by_test) == ["test_same", "test_diff", "test_init", "test_match", "test_only_vm"]
    assert by_test["test_same"].split() == ["test_same", "passed", "passed"]
    assert by_test["test_diff"].split()[1:3] == ["passed", "failed"]
    assert by_test["test_diff"].endswith("workers DIFFERS: vm=2, container=4")
    assert "pid 1 differs as expected (own init): vm=systemd, container=nginx" in (
        by_test["test_init"])
    assert "DIFFERS" not in by_test["test_init"]
    assert by_test["test_match"].endswith("expected to differ (might differ), "
                                          "but the values match")
    assert by_test["test_only_vm"].split() == ["test_only_vm", "skipped", "-"]
    assert by_test["test_same"].index("passed") == header.index("vm")  # columns aligned
    assert by_test["test_diff"].index("failed") == header.index("container")


def test_render_shortens_long_values_to_one_line() -> None:
    store = ParityStore()
    store.record("test_a", "page", "vm", "x" * 100)
    store.record("test_a", "page", "container", "line one\n  line two")
    row = store.render(KINDS)[1]
    assert "vm=" + "x" * 37 + "..., container=line one line two" in row
    assert "\n" not in row


def test_unexpected_differences_lists_each_differing_check() -> None:
    store = ParityStore()
    for check, vm, container in (("a", 1, 2), ("b", 1, 1), ("c", "x", "y")):
        store.record("test_t", check, "vm", vm)
        store.record("test_t", check, "container", container)
    store.record("test_u", "a", "vm", 1)  # one target only: nothing to compare
    store.row("test_expected").expected_diff = "known"
    store.record("test_expected", "a", "vm", 1)
    store.record("test_expected", "a", "container", 2)
    assert store.unexpected_differences() == ["test_t: a", "test_t: c"]


# --- values carried by test reports (the matrix under xdist and without it) -------------------

@pytest.mark.parametrize(("value", "safe"), [
    ("1.22", "1.22"), (2, 2), (True, True), (None, None), (0.5, 0.5),
    ((1, "a"), [1, "a"]), ({"k": (1,)}, {"k": [1]}), ({1: "x"}, "{1: 'x'}"),
    (float("nan"), "nan"), (b"x", "b'x'"), (object, "<class 'object'>"),
])
def test_json_safe_keeps_json_data_and_reprs_the_rest(value: object, safe: object) -> None:
    assert json_safe(value) == safe


def test_json_safe_reprs_subclasses_of_plain_types() -> None:
    import enum

    class Level(enum.IntEnum):
        HIGH = 2

    assert json_safe(Level.HIGH) == repr(Level.HIGH)


def _props(kind: str, row: str = "t.py::test_a", **checks: object) -> list[tuple[str, object]]:
    return [(PROP_TARGET, kind), (PROP_ROW, row),
            *((PROP_CHECK + name, value) for name, value in checks.items())]


def test_add_report_builds_the_matrix_from_properties() -> None:
    store = ParityStore()
    store.add_report(_props("vm"), "setup", "passed")
    store.add_report([*_props("vm", version="1.22"), (PROP_MODE, "tcg")], "call", "passed")
    store.add_report([*_props("vm", version="1.22"), (PROP_MODE, "tcg")], "teardown", "passed")
    store.add_report(_props("container", version="1.23"), "call", "failed")
    row = store.rows["t.py::test_a"]
    assert row.outcomes == {"vm": "passed", "container": "failed"}
    assert row.values == {"version": {"vm": "1.22", "container": "1.23"}}
    assert store.modes == {"vm": "tcg"}
    assert store.unexpected_differences() == ["t.py::test_a: version"]


@pytest.mark.parametrize(("when", "outcome", "shown"), [
    ("setup", "failed", "error"), ("setup", "skipped", "skipped"),
    ("teardown", "failed", "error"), ("call", "skipped", "skipped"), ("call", "passed", "passed"),
])
def test_add_report_outcomes_by_phase(when: str, outcome: str, shown: str) -> None:
    store = ParityStore()
    store.add_report(_props("vm"), when, outcome)
    assert store.rows["t.py::test_a"].outcomes == {"vm": shown}


def test_add_report_ignores_tests_without_a_row() -> None:
    store = ParityStore()
    store.add_report([(PROP_TARGET, "vm"), ("other", 1)], "call", "passed")
    store.add_report([], "call", "failed")
    assert store.rows == {}


def test_expect_diff_comes_with_the_report() -> None:
    store = ParityStore()
    store.add_report([*_props("vm", pid1="systemd"), (PROP_EXPECT_DIFF, "own init")],
                     "call", "passed")
    store.add_report([*_props("container", pid1="nginx"), (PROP_EXPECT_DIFF, "own init")],
                     "call", "passed")
    assert store.rows["t.py::test_a"].expected_diff == "own init"
    assert store.unexpected_differences() == []


def test_rows_follow_the_collection_not_the_arrival() -> None:
    store = ParityStore()
    for test, rank in (("t.py::test_c", 2), ("t.py::test_a", 0), ("t.py::test_b", 1)):
        store.add_report(_props("vm", row=test), "call", "passed", rank=rank)
    assert [row.test for row in store.ordered()] == ["t.py::test_a", "t.py::test_b",
                                                     "t.py::test_c"]
    assert [line.split()[0] for line in store.render(KINDS)[1:]] == [
        "t.py::test_a", "t.py::test_b", "t.py::test_c"]


def test_the_fixture_puts_each_value_into_the_report() -> None:
    properties: list[tuple[str, object]] = []
    Parity(ParityStore(), "test_a", "vm", None, properties).check("ports", (80, 443))
    assert properties == [(PROP_CHECK + "ports", [80, 443])]


def _matrix(kind: str, *rows: tuple[str, str, object]) -> ParityStore:
    store = ParityStore()
    for rank, (test, check, value) in enumerate(rows):
        store.add_report(_props(kind, row=test, **{check: value}), "call", "passed", rank=rank)
    return store


def test_json_round_trip_keeps_order_values_and_modes() -> None:
    store = _matrix("vm", ("t::b", "x", [1, 2]), ("t::a", "y", None))
    store.modes["vm"] = "kvm"
    store.row("t::a").expected_diff = "why"
    again = ParityStore.from_json(store.to_json())
    assert again.to_json() == store.to_json()
    assert [row.test for row in again.ordered()] == ["t::b", "t::a"]


def test_from_json_refuses_other_shapes() -> None:
    with pytest.raises(ValueError, match="not a parity matrix"):
        ParityStore.from_json({"rows": [{"no test": 1}]})


def test_merged_puts_two_targets_in_one_matrix() -> None:
    vm = _matrix("vm", ("t::a", "v", 1), ("t::b", "v", 2))
    container = _matrix("container", ("t::b", "v", 3), ("t::c", "v", 4), ("t::a", "v", 1))
    merged = vm.merged(container)
    assert [row.test for row in merged.ordered()] == ["t::a", "t::b", "t::c"]
    assert merged.rows["t::b"].values == {"v": {"vm": 2, "container": 3}}
    assert merged.rows["t::a"].outcomes == {"vm": "passed", "container": "passed"}
    assert merged.unexpected_differences() == ["t::b: v"]
    assert merged.kinds_seen() == ["vm", "container"]
    assert vm.rows["t::b"].values == {"v": {"vm": 2}}  # the inputs are left as they were


def test_verdict_per_check() -> None:
    store = _matrix("vm", ("t::a", "same", 1))
    store.record("t::a", "same", "container", 1)
    store.record("t::a", "other", "vm", 1)
    store.record("t::a", "diff", "vm", 1)
    store.record("t::a", "diff", "container", 2)
    row = store.rows["t::a"]
    assert [row.verdict(c) for c in ("same", "other", "diff")] == [
        "same", "one target only", "DIFFERS"]
    row.expected_diff = "why"
    assert [row.verdict(c) for c in ("same", "diff")] == [
        "same, though expected to differ (why)", "differs as expected (why)"]

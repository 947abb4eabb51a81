"""The parity store, the ``parity`` fixture's checks and the end-of-run matrix."""

from __future__ import annotations

import pytest

from pytest_vmcontainer.parity import Parity, ParityMismatch, ParityStore

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

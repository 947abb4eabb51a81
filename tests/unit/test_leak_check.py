"""The leak check's rule for what another test process leaves for moments
(tests/integration/conftest.py): only another home's kept targets, never this home's."""

from __future__ import annotations

from tests.integration.conftest import Snapshot, _of_other_homes_only


def _after(containers: set[tuple[str, str]], sessions: set[str]) -> Snapshot:
    return Snapshot(containers=frozenset(containers), volumes=frozenset(),
                    dangling_images=frozenset(), libvirt=frozenset(),
                    sessions=frozenset(sessions))


def test_another_homes_kept_container_may_settle() -> None:
    after = _after({("c1", "a1b2c3d4")}, sessions={"0badcafe"})
    assert _of_other_homes_only({"containers": {"c1"}}, after)
    assert _of_other_homes_only({"libvirt domains/volumes": {"vmc-a1b2c3d4-default"}}, after)


def test_this_homes_leak_or_one_of_no_session_does_not() -> None:
    ours = _after({("c1", "0badcafe")}, sessions={"0badcafe"})
    assert not _of_other_homes_only({"containers": {"c1"}}, ours)
    assert not _of_other_homes_only(
        {"containers": {"c1"}, "libvirt domains/volumes": {"vmc-0badcafe-default"}},
        _after({("c1", "a1b2c3d4")}, sessions={"0badcafe"}))
    assert not _of_other_homes_only({"containers": {"c1"}}, _after({("c1", "")}, set()))
    assert not _of_other_homes_only({"session dirs": {"a1b2c3d4"}},
                                    _after(set(), {"a1b2c3d4"}))

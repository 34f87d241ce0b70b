"""The one rollback rule helm_deploy and smoke_test share: a run undoes only its own revision."""

from __future__ import annotations

from tools.helm import rollback_refusal


def test_a_run_rolls_back_its_own_revision_while_it_is_current() -> None:
    assert rollback_refusal("cmb", 10, (10, "failed"), made=True) is None
    assert rollback_refusal("cmb", 10, (10, "pending-upgrade"), made=True) is None
    assert rollback_refusal("cmb", 10, (10, "deployed"), made=False) is None  # smoke judged a deployed one


def test_another_writers_revision_is_never_rolled_back() -> None:
    # the loser of two deploys from revision 9: its upgrade failed ("already exists"), the winner's 10 is live
    refusal = rollback_refusal("cmb", 10, (10, "deployed"), made=True)
    assert refusal == (
        "revision 10 of release cmb is deployed, not this run's failed one: another writer made it, "
        "so this run rolls nothing back"
    )
    refusal = rollback_refusal("cmb", 9, (10, "deployed"), made=False)
    assert refusal == (
        "release cmb is now at revision 10 (deployed), not revision 9 that this run judged: another writer "
        "changed it, so this run rolls nothing back"
    )


def test_no_revision_of_its_own_means_nothing_to_roll_back() -> None:
    assert rollback_refusal("cmb", None, (4, "deployed"), made=False) == (
        "this run made no new revision of release cmb: nothing to roll back"
    )
    assert rollback_refusal("cmb", 4, None, made=True) == "release cmb no longer exists: nothing to roll back"

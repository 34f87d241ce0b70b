"""The rollback rules helm_deploy and smoke_test share: a run undoes only its own revision, and goes back
to the revision `rollback_target` names."""

from __future__ import annotations

import pytest

from tools.helm import rollback_refusal, rollback_target


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


# (history oldest first, the revision undone, the revision to go back to)
TARGETS = [
    # a failed upgrade (helm_deploy) or an unhealthy one (smoke_test): back to the one before it
    ([(1, "superseded"), (2, "deployed"), (3, "failed")], 3, 2),
    ([(1, "superseded"), (2, "deployed")], 2, 1),  # smoke judged the deployed revision 2: back to 1
    # an interrupted deploy left a pending revision: back to the last deployed one
    ([(1, "superseded"), (2, "deployed"), (3, "pending-upgrade")], 3, 2),
    ([(1, "superseded"), (2, "superseded"), (3, "pending-rollback")], 3, 2),  # none deployed: newest superseded
    # deployed wins over a newer superseded one (two writers at once can leave such a history)
    ([(1, "superseded"), (2, "deployed"), (3, "superseded"), (4, "failed")], 4, 2),
    ([(1, "deployed"), (2, "failed"), (3, "failed")], 3, 1),  # failed revisions are never a target
    ([(1, "failed")], 1, None),  # a failed first install: nothing to go back to (helm_deploy removes it)
    ([(1, "pending-install")], 1, None),
    ([(1, "deployed")], 1, None),  # smoke judged the first install: no earlier revision
    ([(1, "superseded"), (2, "deployed"), (3, "failed")], 2, 1),  # only revisions before the one undone
    ([], 1, None),
    # no revision undone (helm_deploy's dry run diffs against it): the deployed one
    ([(1, "superseded"), (2, "deployed"), (3, "failed")], None, 2),
    ([(4, "superseded"), (5, "failed")], None, 4),
]


@pytest.mark.parametrize(("history", "current", "target"), TARGETS)
def test_the_revision_to_roll_back_to(history: list[tuple[int, str]], current: int | None, target: int | None) -> None:
    assert rollback_target(history, current) == target
    assert rollback_target(list(reversed(history)), current) == target  # the order given does not matter

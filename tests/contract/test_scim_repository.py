"""SCIM provisioning state on every backend (issue 17): filters, paging, group members, and
nothing of another organization."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.contract.test_repositories import T0
from tokenwarden.domain.errors import Conflict
from tokenwarden.ports.repositories import Database
from tokenwarden.ports.scim import ScimConfig, ScimGroupRecord, ScimUserRecord


def _user(n: int, org: str = "org-a", **changes: object) -> ScimUserRecord:
    at = T0 + timedelta(minutes=n)
    record = ScimUserRecord(
        id=f"u{n}",
        org_id=org,
        user_id=f"identity-{org}-{n}",
        user_name_key=f"user{n}@example.test",
        external_id=f"ext-{n}",
        display_name_key=f"user {n}",
        active=True,
        document=f'{{"userName":"User{n}@example.test"}}',
        version=1,
        created_at=at,
        updated_at=at,
    )
    return record.with_changes(**changes)


def _group(n: int, org: str = "org-a") -> ScimGroupRecord:
    at = T0 + timedelta(minutes=n)
    return ScimGroupRecord(f"g{n}", org, f"group {n}", f"gext-{n}", '{"displayName":"G"}', 1, at, at)


def test_users_filter_page_and_stay_in_their_organization(db: Database) -> None:
    with db() as uow:
        for n in (3, 1, 2):
            uow.scim.add_user(_user(n))
        uow.scim.add_user(_user(9, org="org-b", user_name_key="user1@example.test"))
        uow.commit()
    with db() as uow:
        page, total = uow.scim.users("org-a", {}, 0, 2)
        assert total == 3 and [r.id for r in page] == ["u1", "u2"]  # oldest first
        page, total = uow.scim.users("org-a", {}, 2, 2)
        assert total == 3 and [r.id for r in page] == ["u3"]
        found, total = uow.scim.users("org-a", {"user_name_key": "user1@example.test"}, 0, 10)
        assert total == 1 and found[0].id == "u1"  # org-b's namesake is not seen
        found, _ = uow.scim.users("org-a", {"external_id": "ext-2", "display_name_key": "user 2"}, 0, 10)
        assert [r.id for r in found] == ["u2"]
        assert uow.scim.users("org-a", {"external_id": "ext-9"}, 0, 10) == ([], 0)
        assert uow.scim.user("org-a", "u9") is None and uow.scim.user("org-b", "u9") is not None
        assert uow.scim.user_of("org-a", "identity-org-a-2") == _user(2)
        with pytest.raises(ValueError, match="filterable"):
            uow.scim.users("org-a", {"document": "x"}, 0, 10)


def test_user_update_and_delete(db: Database) -> None:
    with db() as uow:
        uow.scim.add_user(_user(1))
        uow.commit()
    with db() as uow:
        uow.scim.update_user(_user(1, active=False, version=2, admin_by_group=True))
        uow.scim.update_user(_user(1, org="org-b", version=7))  # another org's id: nothing happens
        uow.commit()
    with db() as uow:
        got = uow.scim.user("org-a", "u1")
        assert got is not None and not got.active and got.version == 2 and got.admin_by_group
        assert not uow.scim.delete_user("org-b", "u1")
        assert uow.scim.delete_user("org-a", "u1")
        uow.commit()
    with db() as uow:
        assert uow.scim.user("org-a", "u1") is None


def test_user_name_is_unique_per_organization(db: Database) -> None:
    with db() as uow:
        uow.scim.add_user(_user(1))
        uow.commit()

    def add_namesake() -> None:  # memory refuses at once; SQL's unique index, translated on exit
        with db() as uow:
            uow.scim.add_user(_user(3, user_name_key="user1@example.test"))
            uow.commit()

    with pytest.raises(Conflict):
        add_namesake()
    with db() as uow:  # the same userName in another organization is fine
        uow.scim.add_user(_user(4, org="org-b", user_name_key="user1@example.test"))
        uow.commit()


def test_group_members_keep_their_order_and_leave_with_the_user(db: Database) -> None:
    with db() as uow:
        for n in (1, 2, 3):
            uow.scim.add_user(_user(n))
        uow.scim.add_group(_group(1))
        uow.scim.add_group(_group(2))
        uow.scim.set_members("org-a", "g1", ["u3", "u1", "u3"])
        uow.scim.set_members("org-a", "g2", ["u1"])
        uow.commit()
    with db() as uow:
        assert uow.scim.members("g1") == ["u3", "u1"]
        assert [g.id for g in uow.scim.groups_of("org-a", "u1")] == ["g1", "g2"]
        assert uow.scim.groups_of("org-b", "u1") == []
        found, total = uow.scim.groups("org-a", {"display_name_key": "group 2"}, 0, 10)
        assert total == 1 and found[0].id == "g2"
        uow.scim.delete_user("org-a", "u1")
        uow.commit()
    with db() as uow:
        assert uow.scim.members("g1") == ["u3"] and uow.scim.members("g2") == []
        assert uow.scim.delete_group("org-a", "g1") and not uow.scim.delete_group("org-a", "g1")
        uow.commit()
    with db() as uow:
        assert uow.scim.members("g1") == [] and uow.scim.groups_of("org-a", "u3") == []


def test_rollback_leaves_nothing(db: Database) -> None:
    with db() as uow:
        uow.scim.add_user(_user(1))
        uow.scim.add_group(_group(1))
        uow.scim.set_members("org-a", "g1", ["u1"])
        uow.scim.save_config(ScimConfig("org-a", "principal", "Admins"))
        # no commit
    with db() as uow:
        assert uow.scim.user("org-a", "u1") is None and uow.scim.group("org-a", "g1") is None
        assert uow.scim.members("g1") == [] and uow.scim.config("org-a") is None


def test_config_saved_and_replaced(db: Database) -> None:
    with db() as uow:
        uow.scim.save_config(ScimConfig("org-a", "principal-1"))
        uow.commit()
    with db() as uow:
        config = uow.scim.config("org-a")
        assert config == ScimConfig("org-a", "principal-1", None)
        uow.scim.save_config(config.with_changes(admin_group="Admins"))
        uow.commit()
    with db() as uow:
        assert uow.scim.config("org-a") == ScimConfig("org-a", "principal-1", "Admins")
        assert uow.scim.config("org-b") is None

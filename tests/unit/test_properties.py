"""Property tests (issue 10 §3, "fuzzing"): random sequences of the operations that can end a
token, checked against an oracle written here from DESIGN.md, independently of the services.

(a) watermarks only ever move up, in any order, on the memory store and on SQLite;
(b) a token is refused iff an applicable cut-off is after its issue time (member or user
    watermark of its kind, Entra ``signInSessions``/``refreshTokens`` folded in; the org mark of
    the organization asked; a rule of that organization; its membership there missing or
    disabled; a direct revocation; expiry);
(c) the validator and the listings (EffectiveView, list_for_admin, page) agree on every token.

The validator judges time by ``time.time()``; here it is pointed at the FakeClock so the
validator and the listings share one "now" (expiry included).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete

from tokenwarden.adapters.memory.store import MemoryDatabase
from tokenwarden.adapters.sql.tables import watermarks as watermarks_table
from tokenwarden.adapters.sql.unit_of_work import SqlDatabase
from tokenwarden.bootstrap import Container, memory_container, wire
from tokenwarden.domain import token_format
from tokenwarden.domain.errors import Forbidden, InvalidInput, InvalidToken, NotFound
from tokenwarden.domain.events import EventType, InvalidationEvent
from tokenwarden.domain.principals import RiskLevel, RiskState, User, UserStatus
from tokenwarden.domain.tokens import TokenKind, TokenRecord, TokenState
from tokenwarden.domain.watermarks import SubjectType
from tokenwarden.ports.repositories import Database
from tokenwarden.services import validation
from tokenwarden.services.common import OPERATOR
from tokenwarden.services.effective import EffectiveView
from tokenwarden.services.pats import PatFilter
from tokenwarden.services.validation import Validator
from tokenwarden.settings import Settings

from .conftest import FakeClock, actor_of

PROPERTY = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


# =========================================================================== (a) watermarks
KINDS = ("pat", "session", "refresh", "access", "signInSessions", "refreshTokens")
SUBJECTS = ("s1", "s2", "acme-id:bob-id", "s4")
SUBJECT_TYPES = (SubjectType.USER, SubjectType.MEMBER, SubjectType.ORG)

a_raise = st.tuples(
    st.sampled_from(SUBJECT_TYPES),
    st.lists(st.sampled_from(SUBJECTS), min_size=1, max_size=4, unique=True),
    st.lists(st.sampled_from(KINDS), min_size=1, max_size=3, unique=True),
    st.integers(min_value=0, max_value=2_000_000),  # microseconds after T0: equal instants happen
)
# transactions of raises; a transaction that is not committed must change nothing
transactions = st.lists(st.tuples(st.lists(a_raise, min_size=1, max_size=4), st.booleans()), max_size=12)


@pytest.fixture(scope="module")
def sqlite_db() -> Iterator[SqlDatabase]:
    with tempfile.TemporaryDirectory() as tmp:
        database = SqlDatabase(f"sqlite:///{(Path(tmp) / 'props.db').as_posix()}")
        database.upgrade()
        yield database
        database.dispose()


def check_watermarks_only_rise(db: Database, txns: list[tuple[list[Any], bool]]) -> None:
    expected: dict[tuple[str, str], dict[str, datetime]] = {}
    for raises, commit in txns:
        pending = {k: dict(v) for k, v in expected.items()}
        with db() as uow:
            for subject_type, subjects, kinds, micros in raises:
                at = T0 + timedelta(microseconds=micros)
                uow.watermarks.raise_to(subject_type, subjects, kinds, at)
                for subject in subjects:
                    marks = pending.setdefault((subject_type, subject), {})
                    for kind in kinds:
                        marks[kind] = max(at, marks.get(kind, at))
            if commit:
                uow.commit()
                expected = pending
        with db() as uow:
            for subject_type in SUBJECT_TYPES:
                for subject in SUBJECTS:
                    got = uow.watermarks.for_subject(subject_type, subject)
                    assert got == expected.get((subject_type, subject), {}), (subject_type, subject)
                by_type = uow.watermarks.for_type(subject_type)
                assert by_type == {s: m for (t, s), m in expected.items() if t == subject_type and m}


@PROPERTY
@given(transactions)
def test_memory_watermarks_never_move_down(txns: list[tuple[list[Any], bool]]) -> None:
    check_watermarks_only_rise(MemoryDatabase(), txns)


@settings(PROPERTY, max_examples=30)
@given(transactions)
def test_sqlite_watermarks_never_move_down(
    sqlite_db: SqlDatabase, txns: list[tuple[list[Any], bool]]
) -> None:
    with sqlite_db.engine.begin() as conn:
        conn.execute(delete(watermarks_table))
    check_watermarks_only_rise(sqlite_db, txns)


# =========================================================================== (b) + (c) the oracle
SCOPES = ("vso.code", "vso.code_write", "vso.build", "vso.work")
# Written out by hand from the catalog's rules (x_write implies x), for these scopes only.
GRANTS = {"vso.code": {"vso.code"}, "vso.code_write": {"vso.code", "vso.code_write"}}
IMPLIED_BY = {"vso.code": {"vso.code", "vso.code_write"}}
ORGS = ("acme", "beta")
# (owner, org) pairs a token can be issued for; bob is a member of both organizations
PAIRS = (("bob", "acme"), ("carol", "acme"), ("bob", "beta"))
ALL_MARKS = tuple(k.value for k in TokenKind)
# which raw watermark names cut tokens of each kind (DESIGN.md, validation rule 5)
CUT_BY = {
    TokenKind.PAT: {"pat"},
    TokenKind.ACCESS: {"access", "signInSessions"},
    TokenKind.REFRESH: {"refresh", "signInSessions", "refreshTokens"},
    TokenKind.SESSION: {"session", "signInSessions", "refreshTokens"},
    TokenKind.SERVICE: {"service"},
}


@dataclass
class Tok:
    secret: str
    auth_id: str
    kind: TokenKind
    owner: str
    org: str
    targets: tuple[str, ...] | None
    scopes: tuple[str, ...]
    issued: datetime
    valid_to: datetime
    revoked: bool = False


@dataclass
class Rule:
    id: str
    org: str
    scopes: tuple[str, ...]
    kinds: tuple[TokenKind, ...] | None
    users: tuple[str, ...] | None
    after: datetime | None
    before: datetime
    implied: bool

    def catches(self, tok: Tok) -> bool:
        if not (tok.issued < self.before and (self.after is None or tok.issued >= self.after)):
            return False
        if self.kinds is not None and tok.kind not in self.kinds:
            return False
        if self.users is not None and tok.owner not in self.users:
            return False
        if not self.scopes:
            return True
        wanted = set(self.scopes)
        if self.implied:
            wanted = set().union(*(IMPLIED_BY.get(s, {s}) for s in self.scopes))
        return bool(wanted & set(tok.scopes))


@dataclass
class Model:
    """What DESIGN.md says the state is, kept by hand beside the real services."""

    members: dict[tuple[str, str], bool] = field(default_factory=dict)  # (user, org id) -> active
    risk: dict[tuple[str, str], int] = field(default_factory=dict)  # (user, org id) -> risk rank
    user_marks: dict[str, dict[str, datetime]] = field(default_factory=dict)
    member_marks: dict[tuple[str, str], dict[str, datetime]] = field(default_factory=dict)
    org_marks: dict[str, datetime] = field(default_factory=dict)
    rules: list[Rule] = field(default_factory=list)
    tokens: list[Tok] = field(default_factory=list)

    def raise_member(self, user: str, org: str, names: tuple[str, ...], at: datetime) -> None:
        marks = self.member_marks.setdefault((user, org), {})
        for name in names:
            marks[name] = max(at, marks.get(name, at))

    def accepts(self, tok: Tok, asked: str | None, now: datetime) -> bool:
        org = asked or tok.org
        if tok.revoked or now >= tok.valid_to or now < tok.issued:
            return False
        if asked is not None and tok.targets is not None and asked not in tok.targets:
            return False
        if not self.members.get((tok.owner, org), False):  # missing or disabled there
            return False
        for marks in (self.user_marks.get(tok.owner, {}), self.member_marks.get((tok.owner, org), {})):
            if any(tok.issued < at for name, at in marks.items() if name in CUT_BY[tok.kind]):
                return False
        if org in self.org_marks and tok.issued < self.org_marks[org]:
            return False
        return not any(r.org == org and r.catches(tok) for r in self.rules)


# ------------------------------------------------------------------ operations
@dataclass(frozen=True)
class Issue:
    pair: int
    kind: TokenKind
    scopes: tuple[str, ...]
    all_orgs: bool
    minutes: int


@dataclass(frozen=True)
class Advance:
    seconds: int


@dataclass(frozen=True)
class RevokeUser:
    pair: int
    kinds: tuple[TokenKind, ...]


@dataclass(frozen=True)
class EntraMark:
    pair: int
    name: str  # signInSessions | refreshTokens


@dataclass(frozen=True)
class UserMark:
    """The operator raises a user's global watermarks (every organization)."""

    user: str
    names: tuple[str, ...]


@dataclass(frozen=True)
class AddRule:
    org: str
    scopes: tuple[str, ...]
    kinds: tuple[TokenKind, ...] | None
    user: str | None
    back_seconds: int
    span_seconds: int | None
    implied: bool


@dataclass(frozen=True)
class SetStatus:
    pair: int
    active: bool


@dataclass(frozen=True)
class Remove:
    pair: int


@dataclass(frozen=True)
class Enrol:
    pair: int


@dataclass(frozen=True)
class BreakGlass:
    org: str


@dataclass(frozen=True)
class DeleteRule:
    index: int


@dataclass(frozen=True)
class SetRisk:
    pair: int
    level: RiskLevel


@dataclass(frozen=True)
class RevokeRisky:
    org: str
    min_level: RiskLevel
    kinds: tuple[TokenKind, ...]


@dataclass(frozen=True)
class RevokeToken:
    index: int
    by_value: bool


pairs = st.integers(min_value=0, max_value=len(PAIRS) - 1)
kinds = st.lists(st.sampled_from(list(TokenKind)), min_size=1, max_size=3, unique=True).map(tuple)
scope_sets = st.lists(st.sampled_from(SCOPES), min_size=1, max_size=3, unique=True).map(tuple)
issues = st.builds(
    Issue,
    pairs,
    st.sampled_from([TokenKind.PAT, TokenKind.PAT, TokenKind.SESSION, TokenKind.REFRESH]),
    scope_sets,
    st.booleans(),
    st.integers(min_value=1, max_value=600),
)
operations = st.one_of(
    issues,
    st.builds(Advance, st.sampled_from([0, 1, 30, 300, 1800, 4000])),
    st.builds(RevokeUser, pairs, kinds),
    st.builds(EntraMark, pairs, st.sampled_from(["signInSessions", "refreshTokens"])),
    st.builds(
        UserMark,
        st.sampled_from(["bob", "carol"]),
        st.lists(st.sampled_from(KINDS), min_size=1, max_size=2, unique=True).map(tuple),
    ),
    st.builds(
        AddRule,
        st.sampled_from(ORGS),
        st.sampled_from([(), ("vso.code",), ("vso.code",), ("vso.build",), ("vso.code_write", "vso.work")]),
        st.one_of(st.none(), st.none(), kinds),
        st.sampled_from([None, None, None, "bob", "carol"]),
        st.sampled_from([0, 0, 1, 60, 900]),
        st.sampled_from([None, 1, 120, 1800, 3600]),
        st.booleans(),
    ),
    st.builds(SetStatus, pairs, st.booleans()),
    st.builds(Remove, pairs),
    st.builds(Enrol, pairs),
    st.builds(BreakGlass, st.sampled_from(ORGS)),
    st.builds(RevokeToken, st.integers(min_value=0, max_value=50), st.booleans()),
    st.builds(DeleteRule, st.integers(min_value=0, max_value=20)),
    st.builds(SetRisk, pairs, st.sampled_from(list(RiskLevel))),
    st.builds(
        RevokeRisky,
        st.sampled_from(ORGS),
        st.sampled_from([RiskLevel.LOW, RiskLevel.MEDIUM, RiskLevel.HIGH]),
        kinds,
    ),
)
# Graph riskLevel order, written out here (hidden ranks with none)
RANK = {RiskLevel.NONE: 0, RiskLevel.HIDDEN: 0, RiskLevel.LOW: 1, RiskLevel.MEDIUM: 2, RiskLevel.HIGH: 3}


class ClockTime:
    """Stands in for the ``time`` module inside the validator: the FakeClock's now."""

    def __init__(self, clock: FakeClock) -> None:
        self._clock = clock

    def time(self) -> float:
        return self._clock.now().timestamp()


class World:
    """The real container and the model, driven by the same operations."""

    def __init__(self) -> None:
        self.clock = FakeClock(T0)
        self.c: Container = memory_container(Settings(staleness_seconds=3600.0), clock=self.clock)
        init = self.c.directory.initialize("acme", "admin@acme.test")
        self.org_ids = {"acme": init.org.id, "beta": self.c.directory.create_org(OPERATOR, "beta").id}
        self.users: dict[str, User] = {}
        for name in ("bob", "carol"):
            self.users[name] = self.c.directory.add_user(OPERATOR, "acme", f"{name}@acme.test").user
        self.c.directory.add_user(OPERATOR, "beta", "bob@acme.test")
        self.m = Model(members={(user, self.org_ids[org]): True for user, org in PAIRS})
        # a second node on the same store: it learns of every change from the events alone
        self.node2 = wire(
            Settings(staleness_seconds=3600.0), self.c.database, self.c.hasher, clock=self.clock
        )

    @property
    def now(self) -> datetime:
        return self.clock.now()

    def upn(self, name: str) -> str:
        return self.users[name].upn

    def member(self, pair: int) -> tuple[str, str, bool]:
        """(user, org name, is a member there now)."""
        user, org = PAIRS[pair]
        return user, org, (user, self.org_ids[org]) in self.m.members

    def key(self, pair: int) -> tuple[str, str]:
        user, org = PAIRS[pair]
        return user, self.org_ids[org]

    # -------------------------------------------------------------- apply one operation
    def apply(self, op: object) -> None:
        now = self.now
        if isinstance(op, Advance):
            self.clock.advance(seconds=op.seconds)
        elif isinstance(op, Issue):
            self.issue(op)
        elif isinstance(op, RevokeUser):
            user, org, present = self.member(op.pair)
            with self.expect_not_member(not present):
                self.c.revocation.revoke_user(OPERATOR, org, self.upn(user), op.kinds)
                self.m.raise_member(*self.key(op.pair), tuple(k.value for k in op.kinds), now)
        elif isinstance(op, EntraMark):
            user, org, present = self.member(op.pair)
            with self.expect_not_member(not present):
                if op.name == "signInSessions":
                    self.c.revocation.revoke_sign_in_sessions(OPERATOR, org, self.upn(user))
                else:
                    self.c.revocation.invalidate_refresh_tokens(OPERATOR, org, self.upn(user))
                self.m.raise_member(*self.key(op.pair), (op.name,), now)
        elif isinstance(op, UserMark):
            with self.c.uow() as uow:
                uow.watermarks.raise_to(SubjectType.USER, [self.users[op.user].id], list(op.names), now)
                uow.events.append(
                    InvalidationEvent(EventType.USER_CHANGED, {"user_id": self.users[op.user].id})
                )
                uow.commit()
            self.c.validator.sync()
            marks = self.m.user_marks.setdefault(op.user, {})
            for name in op.names:
                marks[name] = max(now, marks.get(name, now))
        elif isinstance(op, AddRule):
            self.add_rule(op)
        elif isinstance(op, SetStatus):
            user, org, present = self.member(op.pair)
            with self.expect_not_member(not present):
                status = UserStatus.ACTIVE if op.active else UserStatus.DISABLED
                self.c.directory.set_status(OPERATOR, org, self.upn(user), status)
                self.m.members[self.key(op.pair)] = op.active
                if not op.active:
                    self.m.raise_member(*self.key(op.pair), ALL_MARKS, now)
        elif isinstance(op, Remove):
            user, org, present = self.member(op.pair)
            with self.expect_not_member(not present):
                self.c.directory.remove_member(OPERATOR, org, self.upn(user))
                del self.m.members[self.key(op.pair)]
                self.m.risk.pop(self.key(op.pair), None)
                self.m.raise_member(*self.key(op.pair), ALL_MARKS, now)
        elif isinstance(op, Enrol):
            user, org, present = self.member(op.pair)
            if not present:
                self.c.directory.add_user(OPERATOR, org, self.upn(user))
                self.m.members[self.key(op.pair)] = True
        elif isinstance(op, BreakGlass):
            self.c.break_glass.start(OPERATOR, op.org, confirm=op.org, reason="drill", operator_override=True)
            self.m.org_marks[self.org_ids[op.org]] = now
        elif isinstance(op, DeleteRule) and self.m.rules:
            rule = self.m.rules.pop(op.index % len(self.m.rules))
            org_name = next(n for n, i in self.org_ids.items() if i == rule.org)
            self.c.rules.delete(OPERATOR, org_name, rule.id)
        elif isinstance(op, SetRisk):
            user, org, present = self.member(op.pair)
            with self.expect_not_member(not present):
                self.c.revocation.set_risk(OPERATOR, org, [self.upn(user)], op.level, RiskState.AT_RISK)
                self.m.risk[self.key(op.pair)] = RANK[op.level]
        elif isinstance(op, RevokeRisky):
            org_id = self.org_ids[op.org]
            self.c.revocation.revoke_risky(OPERATOR, op.org, op.min_level, op.kinds)
            for (user, org), rank in self.m.risk.items():
                if org == org_id and rank >= RANK[op.min_level] and (user, org) in self.m.members:
                    self.m.raise_member(user, org, tuple(k.value for k in op.kinds), now)
        elif isinstance(op, RevokeToken) and self.m.tokens:
            tok = self.m.tokens[op.index % len(self.m.tokens)]
            if op.by_value or tok.kind is not TokenKind.PAT:
                self.c.revocation.revoke_by_value(OPERATOR, None, tok.secret)
            else:
                self.c.pats.revoke(OPERATOR, tok.auth_id)
            tok.revoked = True

    class expect_not_member:
        """The services answer NotFound for a non-member; the model says when that is right."""

        def __init__(self, expected: bool) -> None:
            self.expected = expected

        def __enter__(self) -> None:
            return None

        def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> bool:
            if exc_type is None:
                assert not self.expected, "the service acted on a non-member"
                return False
            return self.expected and issubclass(exc_type, NotFound)

    def issue(self, op: Issue) -> None:
        user, org, _ = self.member(op.pair)
        may = self.m.members.get(self.key(op.pair), False)
        org_id, owner = self.org_ids[org], self.users[user]
        lifetime = timedelta(minutes=op.minutes)
        if op.kind is TokenKind.PAT:
            try:
                issued = self.c.pats.create(
                    actor_of(owner),
                    org=org,
                    user=owner.id,
                    display_name="p",
                    scope=" ".join(op.scopes),
                    all_orgs=op.all_orgs,
                    lifetime=lifetime,
                )
            except Forbidden:
                assert not may, "a PAT was refused to an active member"
                return
            assert may, "a PAT was issued to a missing or disabled member"
            secret, record = issued.secret, issued.record
        else:  # sessions and refresh tokens come from other flows: store one as they would
            secret = token_format.generate(op.kind)
            record = TokenRecord(
                authorization_id=f"{len(self.m.tokens):08d}-0000-4000-8000-000000000000",
                kind=op.kind,
                user_id=owner.id,
                org_id=org_id,
                display_name=op.kind.value,
                scopes=op.scopes,
                target_orgs=None if op.all_orgs else (org_id,),
                secret_hash=self.c.hasher.hash(secret),
                pepper_id=self.c.hasher.current_id,
                valid_from=self.now,
                valid_to=self.now + lifetime,
                created_at=self.now,
            )
            with self.c.uow() as uow:
                uow.tokens.add(record)
                uow.commit()
        self.m.tokens.append(
            Tok(
                secret,
                record.authorization_id,
                op.kind,
                user,
                org_id,
                record.target_orgs,
                record.scopes,
                record.valid_from,
                record.valid_to,
            )
        )

    def add_rule(self, op: AddRule) -> None:
        org_id = self.org_ids[op.org]
        before = self.now - timedelta(seconds=op.back_seconds)
        after = None if op.span_seconds is None else before - timedelta(seconds=op.span_seconds)
        user_present = op.user is None or (op.user, org_id) in self.m.members
        try:
            created = self.c.rules.create(
                OPERATOR,
                op.org,
                " ".join(op.scopes) or None,
                before,
                created_after=after,
                kinds=op.kinds,
                users=None if op.user is None else [self.upn(op.user)],
                match_implied=op.implied,
            )
        except InvalidInput as exc:  # only a rule naming a non-member is refused
            refused: InvalidInput | None = exc
        else:
            refused = None
        if refused is not None:
            assert not user_present and refused.code == "userNotFound", refused
            return
        assert user_present, "a rule naming a non-member was accepted"
        users = None if op.user is None else (op.user,)
        self.m.rules.append(Rule(created.id, org_id, op.scopes, op.kinds, users, after, before, op.implied))

    # -------------------------------------------------------------- observe
    def validator_accepts(
        self, tok: Tok, asked: str | None, scope: str | None = None, node: Validator | None = None
    ) -> bool:
        try:
            caller = (node or self.c.validator).validate(tok.secret, scope, asked)
        except (InvalidToken, Forbidden):
            return False
        assert caller.org_id == (asked or tok.org) and caller.user.id == self.users[tok.owner].id
        return True

    def check(self, step: int) -> None:
        now = self.now
        askable: tuple[str | None, ...] = (None, *self.org_ids.values())
        self.node2.validator.sync()  # what its background loop does
        decided: dict[tuple[int, str | None], bool] = {}
        for i, tok in enumerate(self.m.tokens):
            for asked in askable:
                got = decided[(i, asked)] = self.validator_accepts(tok, asked)
                want = self.m.accepts(tok, asked, now)
                assert got == want, f"step {step}: token {i} ({tok}) asked for {asked}: {got=} {want=}"
                other = self.validator_accepts(tok, asked, node=self.node2.validator)
                assert other == got, f"step {step}: the second node disagrees on token {i} for {asked}"
            for scope in SCOPES:
                want = decided[(i, None)] and scope in set().union(*(GRANTS.get(s, {s}) for s in tok.scopes))
                assert self.validator_accepts(tok, None, scope) == want, (step, i, scope)
        self.check_listings(decided, now)

    def check_listings(self, decided: dict[tuple[int, str | None], bool], now: datetime) -> None:
        by_auth = {tok.auth_id: i for i, tok in enumerate(self.m.tokens)}
        with self.c.database.reader() as uow:
            for asked in (None, *self.org_ids.values()):
                view = EffectiveView(uow, self.c.catalog, asked)
                for i, tok in enumerate(self.m.tokens):
                    if asked is not None and tok.targets is not None and asked not in tok.targets:
                        continue  # not this organization's business: the validator says Forbidden
                    record = uow.tokens.get(tok.auth_id)
                    assert record is not None
                    listed = view.one(record).state(now) is TokenState.ACTIVE
                    assert listed == decided[(i, asked)], f"EffectiveView({asked}) token {i}: {listed=}"
        for org, org_id in self.org_ids.items():
            for name, user in self.users.items():
                if (name, org_id) in self.m.members:
                    _, records = self.c.pats.list_for_admin(OPERATOR, org, user.id)
                    for r in records:
                        if r.authorization_id in by_auth:
                            active = r.state(now) is TokenState.ACTIVE
                            assert active == decided[(by_auth[r.authorization_id], org_id)], ("admin", org, r)
                if self.m.members.get((name, org_id)):
                    page = self.c.pats.page(actor_of(user), org, filter=PatFilter.ALL)
                    for r in page.items:
                        if r.authorization_id in by_auth:
                            active = r.state(now) is TokenState.ACTIVE
                            assert active == decided[(by_auth[r.authorization_id], org_id)], ("page", org, r)


# a few tokens first, then anything (more tokens among it)
scenarios = st.tuples(
    st.lists(issues, min_size=2, max_size=6), st.lists(operations, min_size=4, max_size=25)
).map(lambda parts: [*parts[0], *parts[1]])


PAT, SESSION, REFRESH = TokenKind.PAT, TokenKind.SESSION, TokenKind.REFRESH


@PROPERTY
@given(scenarios)
# corners a random walk reaches only rarely: a rule on vso.code matching implied scopes; a cut-off
# at the very instant of issue (the token survives: issued_at >= watermark); re-enrolment after
# removal (the tokens stay dead); break-glass in one organization of an all-organizations token;
# the Entra watermarks over sessions and refresh tokens but not PATs; risky members at or above a
# level; a deleted rule (its tokens live again).
@example(
    [
        Issue(0, PAT, ("vso.code_write",), False, 60),
        Advance(30),
        AddRule("acme", ("vso.code",), None, None, 0, None, True),
    ]
)
@example([Issue(0, PAT, ("vso.code",), False, 60), RevokeUser(0, (PAT,)), Advance(1), RevokeUser(0, (PAT,))])
@example(
    [
        Issue(2, PAT, ("vso.work",), True, 60),
        Advance(1),
        Remove(2),
        Enrol(2),
        Issue(2, PAT, ("vso.work",), True, 60),
    ]
)
@example(
    [Issue(0, PAT, ("vso.build",), True, 60), Advance(1), BreakGlass("beta"), Advance(1), BreakGlass("acme")]
)
@example(
    [
        Issue(1, SESSION, ("vso.code",), False, 60),
        Issue(1, REFRESH, ("vso.code",), False, 60),
        Issue(1, PAT, ("vso.code",), False, 60),
        Advance(1),
        EntraMark(1, "refreshTokens"),
        Advance(1),
        UserMark("carol", ("signInSessions",)),
    ]
)
@example(
    [
        Issue(0, PAT, ("vso.code",), False, 60),
        Issue(1, PAT, ("vso.code",), False, 60),
        Advance(1),
        SetRisk(0, RiskLevel.MEDIUM),
        SetRisk(1, RiskLevel.LOW),
        RevokeRisky("acme", RiskLevel.MEDIUM, (PAT,)),
    ]
)
@example(
    [
        Issue(0, PAT, ("vso.code",), False, 60),
        Advance(1),
        AddRule("acme", ("vso.code",), None, None, 0, None, False),
        DeleteRule(0),
    ]
)
def test_validator_and_listings_follow_the_cutoffs(ops: list[object]) -> None:
    world = World()
    with mock.patch.object(validation, "time", ClockTime(world.clock)):
        world.c.validator.sync()
        world.node2.validator.sync()
        for step, op in enumerate(ops):
            world.apply(op)
            world.check(step)

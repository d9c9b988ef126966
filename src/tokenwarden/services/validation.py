"""The validation hot path: is this secret a live token allowed to do this, right now?

State lives in memory (token entries by keyed hash, owner states, revocation cut-offs) and is
kept coherent with the database through the ordered events table: :meth:`Validator.sync`
applies new events in sequence order. A node that has not synced within the staleness bound
does not trust its cache: it syncs before answering, and fails closed (``Unavailable``) when
the database cannot be reached. Never a stale "yes".
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Final

from tokenwarden.domain import token_format
from tokenwarden.domain.errors import DomainError, Forbidden, InsufficientScope, InvalidToken, Unavailable
from tokenwarden.domain.events import INTENT_TYPES, AnnouncementKind, EventType, InvalidationEvent
from tokenwarden.domain.hashing import SecretHasher
from tokenwarden.domain.principals import Role, UserStatus, member_subject
from tokenwarden.domain.revocation import RuleIndex
from tokenwarden.domain.scopes import PROVISIONING, ScopeCatalog
from tokenwarden.domain.tokens import TokenKind, TokenRecord
from tokenwarden.domain.watermarks import SubjectType, client_cutoffs, effective_cutoffs
from tokenwarden.ports.repositories import UnitOfWork
from tokenwarden.services.common import Actor, TokenReach

log = logging.getLogger(__name__)
_TOKEN_LEN: Final = token_format.TOKEN_LEN
_JWT_MAX: Final = 4096  # the longest access token (JWT) looked at
_KIND_VALUES: Final = frozenset(k.value for k in TokenKind)
# JWTs whose cache key is remembered by text (≈ 0.7 KB each at most: the token's own string).
JWT_KEY_MEMO_ENTRIES: Final = 50_000
# Hashes refused on an announcement's word until the next sync (a bound against a flood of them).
ANNOUNCED_REVOKED_MAX: Final = 100_000
# How long an announced intent to revoke is honoured without its commit (the longest a write may
# wait for the database: SQLite's busy timeout) unless withdrawn first.
INTENT_HOLD_SECONDS: Final = 30.0


class CachedToken:
    """What validation needs of a token. Deliberately no id: the cache key (the secret's keyed
    hash) identifies it, which keeps an entry with its dict slot under 300 bytes (BENCHMARKS.md)."""

    __slots__ = (
        "client_id",
        "issued",
        "kind",
        "listed",
        "literal_scopes",
        "memo",
        "org_id",
        "revoked",
        "scopes",
        "targets",
        "used",
        "used_ip",
        "user_id",
        "valid_to",
    )

    def __init__(
        self,
        kind: TokenKind,
        user_id: str,
        org_id: str,
        targets: tuple[str, ...] | None,
        scopes: frozenset[str],
        literal_scopes: tuple[str, ...],
        issued: float,
        valid_to: float,
        revoked: bool,
        client_id: str | None = None,
    ) -> None:
        self.kind = kind
        self.client_id = client_id
        self.user_id = user_id
        self.org_id = org_id
        self.targets = targets
        self.scopes = scopes
        self.literal_scopes = literal_scopes
        self.issued = issued
        self.valid_to = valid_to
        self.revoked = revoked
        self.client_id = client_id  # the OAuth client it was issued to (its watermark applies)
        self.used = 0.0  # last use (time.time()) and its address, drained by drain_usage
        self.used_ip: str | None = None
        self.listed = -1  # the usage epoch in which this token was last listed for a drain
        self.memo: Caller | None = None  # the last accepted answer, reused while nothing changed


class MemberState:
    """One membership as validation needs it: the role, whether it is active, and the per-kind
    cut-offs that apply in that organization (its member watermarks and the user's global ones)."""

    __slots__ = ("active", "cutoffs", "role")

    def __init__(self, role: Role, active: bool, cutoffs: dict[TokenKind, float]) -> None:
        self.role = role
        self.active = active
        self.cutoffs = cutoffs


class UserState:
    """Owner facts validation needs: global status and, per organization, the membership state.

    ``roles`` holds the roles of active memberships only (a disabled member administers nothing).
    """

    __slots__ = ("active", "id", "members", "roles", "upn")

    def __init__(self, id: str, upn: str, active: bool, members: dict[str, MemberState]) -> None:
        self.id = id
        self.upn = upn
        self.active = active
        self.members = members
        self.roles = {org: m.role for org, m in members.items() if m.active}


class Caller:
    """A validated credential: the token, its owner, the token's key (keyed secret hash) and the
    organization the answer is for (the one asked about, else the token's own).

    Immutable by convention: the validator hands the same object out again for the same question
    (``gen``, ``asked_scope``, ``asked_org``) while no change has been applied since."""

    __slots__ = ("asked_org", "asked_scope", "gen", "key", "org_id", "token", "user")

    def __init__(
        self,
        token: CachedToken,
        user: UserState,
        key: bytes,
        org_id: str,
        gen: int = -1,
        asked_scope: str | None = None,
        asked_org: str | None = None,
    ) -> None:
        self.token = token
        self.user = user
        self.key = key
        self.org_id = org_id
        self.gen = gen
        self.asked_scope = asked_scope
        self.asked_org = asked_org

    def role_in(self, org_id: str) -> Role | None:
        return self.user.roles.get(org_id)

    def actor(self, ip: str | None = None, user_agent: str | None = None) -> Actor:
        """The actor behind this credential, bounded by what its token may do (no token acts
        beyond its own scopes and organizations)."""
        reach = TokenReach(self.token.scopes, self.token.targets, self.key)
        return Actor(user_id=self.user.id, upn=self.user.upn, ip=ip, token=reach, user_agent=user_agent)


ReaderFactory = Callable[[], UnitOfWork]


class Validator:
    """Validates secrets against an in-memory view kept coherent with the events table."""

    def __init__(
        self,
        reader: ReaderFactory,
        writer: ReaderFactory,
        hasher: SecretHasher,
        catalog: ScopeCatalog,
        *,
        staleness_seconds: float = 1.0,
        max_entries: int = 1_000_000,
        negative_max_entries: int = 100_000,
        jwt_verifier: Callable[[str], object] | None = None,
        jwt_key_memo_entries: int = JWT_KEY_MEMO_ENTRIES,
        usage_resolution_seconds: float = 0.0,
    ) -> None:
        self._jwt_verifier = jwt_verifier
        # JWT text -> its cache key, for JWTs already verified and found stored (see _jwt_key).
        self._jwt_keys: dict[str, bytes] = {}
        self._jwt_keys_max = jwt_key_memo_entries
        self._reader = reader
        self._writer = writer
        self._hasher = hasher
        self._hash = hasher.hash_function
        self._catalog = catalog
        self._stale_after = staleness_seconds
        self._max_entries = max_entries
        self._negative_max = negative_max_entries
        self._tokens: dict[bytes, CachedToken] = {}
        self._negative: set[bytes] = set()
        self._users: dict[str, UserState] = {}
        self._rules = RuleIndex()
        self._has_rules = False
        self._org_cutoffs: dict[str, dict[TokenKind, float]] = {}
        self._client_cutoffs: dict[str, dict[TokenKind, float]] = {}  # OAuth client id -> kind -> cut
        self._interned: dict[object, object] = {}
        # Tokens first used since the last drain (their entries carry the time and address).
        self._used: list[tuple[bytes, CachedToken]] = []
        # A token's use is listed for the store at most once per epoch (its first use in it;
        # the drain reads its latest use): with ``usage_resolution_seconds`` of 60, a token
        # validated 10,000 times a minute costs one last-used write a minute, not one per drain.
        self._epoch = 0
        self._usage_resolution = usage_resolution_seconds
        self._epoch_ends = time.time() + usage_resolution_seconds
        self._seq = 0
        self._synced_at = float("-inf")
        self._sync_lock = threading.Lock()
        # Announced changes are applied under this lock (not the sync lock, which a slow database
        # read can hold); a cache fill checks ``_gen`` under both, so neither kind of change can
        # land between its read and its store.
        self._cache_lock = threading.Lock()
        self._gen = 0  # bumped by every change applied (from the events table or announced)
        # secret hash -> (syncs begun when an announcement said it was revoked, hold until):
        # refused without a database read until a sync that began later, and after the hold
        # (a time.time(); 0 for committed revocations), has run.
        self._announced_revoked: dict[bytes, tuple[int, float]] = {}
        self._syncs_begun = 0  # syncs that began (numbered under _sync_lock)
        self._syncs_done = 0  # the number of the last one that completed

    # ---------------------------------------------------------------- hot path
    def validate(
        self,
        secret: str,
        needed_scope: str | None = None,
        org_id: str | None = None,
        ip: str | None = None,
    ) -> Caller:
        """Return the caller behind ``secret`` or raise InvalidToken / InsufficientScope / Forbidden.

        The one decision path (the HTTP doors and the services all come here). Written flat on
        purpose: every call and allocation here costs throughput (see BENCHMARKS.md).
        """
        n = len(secret)
        if n == _TOKEN_LEN:
            jwt = False
        elif n <= _JWT_MAX and secret.startswith("eyJ"):
            jwt = True
        else:
            raise InvalidToken("malformed token")
        now = time.time()
        age = now - self._synced_at
        if not -0.05 <= age <= self._stale_after:  # stale view, or the clock stepped back: re-read
            self.sync_or_fail()
        h = (self._jwt_keys.get(secret) or self._jwt_key(secret)) if jwt else self._hash(secret)
        entry = self._tokens.get(h)
        if entry is None:
            entry = self._miss(secret, h)
        memo = entry.memo
        if (
            memo is not None
            and memo.gen == self._gen
            and memo.asked_scope == needed_scope
            and memo.asked_org == org_id
            and entry.issued <= now < entry.valid_to
        ):  # the same question, nothing applied since: the same answer
            if entry.listed != self._epoch:
                entry.listed = self._epoch
                self._used.append((h, entry))
            entry.used = now
            entry.used_ip = ip
            return memo
        gen = self._gen  # read before deciding, so a change applied meanwhile voids the memo
        try:  # free unless raised; a refusal names the token so it is counted against it
            user = self._users.get(entry.user_id) or self._load_user(entry.user_id)
            if entry.revoked:
                raise InvalidToken("token is revoked")
            org = self.decide(entry, user, now, needed_scope, org_id)
        except DomainError as exc:
            exc.token_key = h
            raise
        caller = entry.memo = Caller(entry, user, h, org, gen, needed_scope, org_id)
        if entry.listed != self._epoch:
            entry.listed = self._epoch
            self._used.append((h, entry))
        entry.used = now
        entry.used_ip = ip
        return caller

    def decide(
        self,
        entry: CachedToken,
        user: UserState,
        now: float,
        needed_scope: str | None = None,
        org_id: str | None = None,
    ) -> str:
        """Everything but the lookup and the token's own revocation: expiry, the owner, the
        organization's cut-offs and rules, scope. Returns the organization the answer is for
        (the one asked about, else the token's own); raises when the token may not be used."""
        if now >= entry.valid_to:
            raise InvalidToken("token is expired")
        if now < entry.issued:
            raise InvalidToken("token is not yet valid")
        if not user.active:
            raise InvalidToken("token is revoked")
        # The answer is for one organization: the one asked about, else the token's own. Only
        # that organization's state applies (the tenancy rule).
        org = entry.org_id if org_id is None else org_id
        if org_id is not None and entry.targets is not None and org_id not in entry.targets:
            raise Forbidden("token is not valid for this organization")
        member = user.members.get(org)
        if member is None:
            if org_id is None:  # removed from its own organization: its tokens end there
                raise InvalidToken("token is revoked")
            raise Forbidden("token owner is not a member of this organization")
        if not member.active:
            raise InvalidToken("token is revoked")
        cutoff = member.cutoffs.get(entry.kind)
        if cutoff is not None and entry.issued < cutoff:
            raise InvalidToken("token is revoked")
        if self._org_cutoffs:
            org_cut = self._org_cutoffs.get(org)
            if org_cut is not None:
                cutoff = org_cut.get(entry.kind)
                if cutoff is not None and entry.issued < cutoff:
                    raise InvalidToken("token is revoked")
        if self._client_cutoffs and entry.client_id is not None:  # its OAuth client disabled or removed
            client_cut = self._client_cutoffs.get(entry.client_id)
            if client_cut is not None:
                cutoff = client_cut.get(entry.kind)
                if cutoff is not None and entry.issued < cutoff:
                    raise InvalidToken("token is revoked")
        if self._has_rules and self._rules.revokes(
            (org,), entry.literal_scopes, entry.kind, entry.user_id, entry.issued
        ):
            raise InvalidToken("token is revoked")
        if needed_scope is not None and needed_scope not in entry.scopes:
            raise InsufficientScope(f"token lacks the scope {needed_scope!r}")
        if needed_scope is None and PROVISIONING in entry.literal_scopes:
            raise InsufficientScope("a provisioning token is good for SCIM only")
        return org

    def check_record(self, record: TokenRecord, org_id: str | None = None) -> str:
        """:meth:`decide` for a stored record, ignoring its own ``revoked_at`` (the refresh grant
        asks whether a just-rotated token would still be allowed by every cut-off)."""
        if not -0.05 <= time.time() - self._synced_at <= self._stale_after:
            self.sync_or_fail()
        entry = self.make_entry(record.with_changes(revoked_at=None))
        user = self._users.get(entry.user_id) or self._load_user(entry.user_id)
        return self.decide(entry, user, time.time(), None, org_id)

    def validate_in_memory(
        self,
        secret: str,
        needed_scope: str | None = None,
        org_id: str | None = None,
        ip: str | None = None,
    ) -> Caller | None:
        """:meth:`validate` when it can answer from memory; ``None`` when the answer needs I/O (a
        cache miss or a stale view), so an event loop can hand those few calls to a thread."""
        n = len(secret)
        if n == _TOKEN_LEN:
            h = self._hash(secret)
        elif n <= _JWT_MAX and secret.startswith("eyJ"):
            h = self._jwt_keys.get(secret) or self._jwt_key(secret)
        else:
            raise InvalidToken("malformed token")
        now = time.time()
        if not -0.05 <= now - self._synced_at <= self._stale_after:
            return None
        entry = self._tokens.get(h)
        if entry is None:
            if h in self._negative:
                raise InvalidToken("unknown token")
            if h in self._announced_revoked:
                raise InvalidToken("token is revoked")
            return None
        memo = entry.memo
        if (
            memo is not None
            and memo.gen == self._gen
            and memo.asked_scope == needed_scope
            and memo.asked_org == org_id
            and entry.issued <= now < entry.valid_to
        ):
            caller = memo
        else:
            gen = self._gen
            user = self._users.get(entry.user_id)
            if user is None:
                return None
            # :meth:`validate` from here on, without hashing the secret a second time.
            try:
                if entry.revoked:
                    raise InvalidToken("token is revoked")
                org = self.decide(entry, user, now, needed_scope, org_id)
            except DomainError as exc:
                exc.token_key = h
                raise
            caller = entry.memo = Caller(entry, user, h, org, gen, needed_scope, org_id)
        if entry.listed != self._epoch:
            entry.listed = self._epoch
            self._used.append((h, entry))
        entry.used = now
        entry.used_ip = ip
        return caller

    def _jwt_key(self, jwt: str) -> bytes:
        """The cache key of a JWT access token — the keyed hash of the whole token, as stored —
        remembered by the token's text once it names a stored token.

        A JWT is ten times a PAT's length and hashing it was most of its validation cost. The
        memo maps the exact text to its hash, a pure function of it (one pepper per process),
        so it changes no decision: a hit needs the whole presented string equal to one already
        hashed (a dict compares two strings only once their full 64-bit ``hash()`` — SipHash,
        randomly keyed per process — matches: only the token itself gets that far, so no timing
        of the comparison says anything about a stored token), and the key it yields still has
        to find a live entry in
        the token cache, which revocation events empty by the stored hash. A JWT differing in any
        byte (header, claims, signature) misses, is hashed, and goes through signature checks
        and the database like any other. Only texts that found a stored record are remembered
        (garbage goes to the negative cache); bounded, emptied when full."""
        h = self._hash(jwt)
        if h in self._tokens:
            memo = self._jwt_keys
            if len(memo) >= self._jwt_keys_max:
                memo.clear()
            memo[jwt] = h
        return h

    # ---------------------------------------------------------------- cache misses
    def _miss(self, secret: str, h: bytes) -> CachedToken:
        if h in self._negative:
            raise InvalidToken("unknown token")
        if h in self._announced_revoked:
            raise InvalidToken("token is revoked")
        if len(secret) == _TOKEN_LEN:
            token_format.parse(secret)  # reject typos and garbage before any database read
        else:  # a JWT access token: its signature and claims first, then the issued record
            self._verify_jwt(secret, h)
        gen_before = self._gen
        record = self._lookup(secret, h)
        if record is None:
            if len(self._negative) >= self._negative_max:
                self._negative.clear()
            self._negative.add(h)
            raise InvalidToken("unknown token")
        entry = self.make_entry(record)
        # Cache only when the stored hash is this key (so the hashes in later events evict it)
        # and no change was applied meanwhile (so the read cannot predate a revocation).
        with self._sync_lock, self._cache_lock:  # no change can land between check and store
            if record.secret_hash == h and self._gen == gen_before:
                self._store(h, entry)
        return entry

    def _verify_jwt(self, secret: str, h: bytes) -> None:
        verify = self._jwt_verifier
        try:
            if verify is None:
                raise InvalidToken("access tokens are not accepted here")
            verify(secret)
        except InvalidToken:
            if len(self._negative) >= self._negative_max:
                self._negative.clear()
            self._negative.add(h)
            raise

    def _lookup(self, secret: str, h: bytes) -> TokenRecord | None:
        try:
            with self._reader() as uow:
                record = uow.tokens.by_hash(h)
                if record is None:
                    for pepper in self._hasher.older():
                        record = uow.tokens.by_hash(self._hasher.hash_with(pepper, secret))
                        if record is not None:
                            break
            if record is not None and record.secret_hash != h:
                self._rehash(record, h)
            return record
        except Unavailable:
            raise
        except Exception as exc:
            raise Unavailable("token store unavailable") from exc

    def _rehash(self, record: TokenRecord, h: bytes) -> None:
        """Move a token hashed with a retired pepper to the current one (on its first use).

        Compare-and-set on the hash alone, so a concurrent revocation is never undone; the
        event names both hashes, so every node drops what it cached under either.
        """
        try:
            with self._writer() as uow:
                if uow.tokens.rehash(record.authorization_id, record.secret_hash, h, self._hasher.current_id):
                    uow.events.append(
                        InvalidationEvent(
                            EventType.TOKEN_CHANGED, {"hashes": [record.secret_hash.hex(), h.hex()]}
                        )
                    )
                    uow.commit()
                    log.info(
                        "token %s re-hashed with pepper %s", record.authorization_id, self._hasher.current_id
                    )
        except Exception as exc:  # the token stays valid; it is just not cached
            log.warning("re-hash of token %s failed: %s", record.authorization_id, exc)

    def authorization_id(self, caller: Caller) -> str | None:
        """The caller token's authorizationId (a read; not for the hot path)."""
        with self._reader() as uow:
            record = uow.tokens.by_hash(caller.key)
        return record.authorization_id if record else None

    def make_entry(self, record: TokenRecord) -> CachedToken:
        """Build a cache entry; equal scope sets and target tuples share one object."""
        intern = self._interned.setdefault
        return CachedToken(
            kind=record.kind,
            user_id=intern(record.user_id, record.user_id),  # type: ignore[arg-type]
            org_id=intern(record.org_id, record.org_id),  # type: ignore[arg-type]
            targets=None if record.target_orgs is None else intern(record.target_orgs, record.target_orgs),  # type: ignore[arg-type]
            scopes=self._catalog.expand(record.scopes),
            literal_scopes=intern(record.scopes, record.scopes),  # type: ignore[arg-type]
            issued=record.valid_from.timestamp(),
            valid_to=record.valid_to.timestamp(),
            revoked=record.revoked_at is not None,
            client_id=None if record.client_id is None else intern(record.client_id, record.client_id),  # type: ignore[arg-type]
        )

    def _store(self, h: bytes, entry: CachedToken) -> None:
        tokens = self._tokens
        if len(tokens) >= self._max_entries:
            # Evict the oldest-inserted tenth (dicts keep insertion order); misses reload.
            for key in list(tokens)[: max(1, self._max_entries // 10)]:
                tokens.pop(key, None)
        tokens[h] = entry

    def preload(self, h: bytes, record: TokenRecord) -> None:
        """Insert a record directly (warm-up and benchmarks)."""
        self._store(h, self.make_entry(record))

    def _load_user(self, user_id: str) -> UserState:
        """Read an owner's state; cache it only if no event was applied during the read (an event
        about this user landing mid-read would otherwise be lost behind a stale cached state)."""
        gen_before = self._gen
        try:
            with self._reader() as uow:
                user = uow.users.get(user_id)
                memberships = uow.users.memberships_of(user_id) if user else []
                own = uow.watermarks.for_subject(SubjectType.USER, user_id) if user else {}
                marks = {
                    m.org_id: uow.watermarks.for_subject(
                        SubjectType.MEMBER, member_subject(m.org_id, user_id)
                    )
                    for m in memberships
                }
        except Unavailable:
            raise
        except Exception as exc:
            raise Unavailable("user store unavailable") from exc
        if user is None:
            state = UserState(user_id, "", False, {})
        else:
            global_cuts = effective_cutoffs({k: v.timestamp() for k, v in own.items()})
            members = {}
            for m in memberships:
                cuts = dict(global_cuts)
                mine = effective_cutoffs({k: v.timestamp() for k, v in marks[m.org_id].items()})
                for kind, ts in mine.items():
                    cuts[kind] = max(ts, cuts.get(kind, ts))
                members[m.org_id] = MemberState(m.role, m.status is UserStatus.ACTIVE, cuts)
            state = UserState(user_id, user.upn, user.status is UserStatus.ACTIVE, members)
        with self._sync_lock, self._cache_lock:  # no change can land between check and store
            if self._gen == gen_before:
                self._users[user_id] = state
        return state

    # ---------------------------------------------------------------- coherence
    def sync(self) -> int:
        """Apply every event newer than the last applied one; returns how many were applied.

        Calls that queue while another sync runs coalesce: once a sync that *began* after this
        call has completed, every event committed before this call is applied, so the call
        returns at once. (Every commit with events syncs — read-your-writes — and under load
        the commits of every worker thread queued here for one read each.)"""
        asked = self._syncs_begun
        with self._sync_lock:
            if self._syncs_done > asked:
                return 0
            self._syncs_begun += 1
            number = self._syncs_begun
            applied = 0
            with self._reader() as uow:
                if self._synced_at == float("-inf"):
                    self._seq = uow.events.latest_seq()
                    self._load_rules(uow)
                    self._load_org_cutoffs(uow)
                    self._load_client_cutoffs(uow)
                while True:
                    batch = uow.events.since(self._seq, limit=1000)
                    for event in batch:
                        if event.seq != self._seq + 1 and self._seq:
                            log.warning("event gap %s -> %s: flushing cache", self._seq, event.seq)
                            self._flush()
                            self._load_client_cutoffs(uow)
                        try:
                            self._apply(event, uow)
                        finally:  # after the change: an answer decided before it is then void
                            self._gen += 1
                        self._seq = event.seq
                        applied += 1
                    if len(batch) < 1000:
                        break
            self._synced_at = time.time()
            self._syncs_done = number
            if self._announced_revoked:  # a sync that began after a mark (and its hold): the table decides
                now = time.time()
                with self._cache_lock:
                    self._announced_revoked = {
                        h: (n, hold)
                        for h, (n, hold) in self._announced_revoked.items()
                        if n >= number or hold > now
                    }
            return applied

    def apply_announced(
        self, events: Sequence[InvalidationEvent], kind: AnnouncementKind = AnnouncementKind.COMMITTED
    ) -> int:
        """Apply at once what an announcement says that can only narrow access, ahead of the
        events-table read that must still follow (:meth:`sync`); returns how many events.

        ``COMMITTED`` events: revoked and changed tokens leave the cache (revoked ones are
        refused without a database read until a later sync), changed owners are re-read.
        ``INTENT``: the revocation is authorised and being committed — its tokens are refused
        for up to ``INTENT_HOLD_SECONDS`` (however many syncs run before the commit lands), or
        until ``WITHDRAWN`` says the commit failed. Nothing here admits a token, raises a
        cut-off's effect or marks the view fresh, so a forged or replayed announcement can at
        worst refuse a valid token for that long."""
        applied = 0
        now = time.time()
        with self._cache_lock:
            for event in events:
                if kind is AnnouncementKind.COMMITTED and event.seq <= self._seq:
                    continue  # the events table got there first
                try:
                    if kind is AnnouncementKind.WITHDRAWN:
                        self._withdraw(event)
                    elif kind is AnnouncementKind.INTENT and event.type not in INTENT_TYPES:
                        continue
                    else:
                        hold = now + INTENT_HOLD_SECONDS if kind is AnnouncementKind.INTENT else 0.0
                        self._apply_early(event, hold)
                except (TypeError, ValueError, AttributeError):
                    log.warning("ignoring a malformed announced event (seq %s)", event.seq)
                    continue
                self._gen += 1
                applied += 1
        return applied

    def _apply_early(self, event: InvalidationEvent, hold: float) -> None:
        p = event.payload
        if event.type in (EventType.TOKEN_REVOKED, EventType.TOKEN_CHANGED):
            keys = [bytes.fromhex(x) for x in p.get("hashes", ())]
            for h in keys:
                self._tokens.pop(h, None)
            marks = self._announced_revoked
            if event.type is EventType.TOKEN_REVOKED and len(marks) < ANNOUNCED_REVOKED_MAX:
                begun = self._syncs_begun
                for h in keys:
                    marks[h] = (begun, hold)
        elif event.type in (EventType.USER_CHANGED, EventType.MEMBERSHIP_CHANGED):
            ids = [p["user_id"]] if "user_id" in p else []
            for user_id in [*ids, *p.get("user_ids", ())]:
                self._users.pop(str(user_id), None)

    def _withdraw(self, event: InvalidationEvent) -> None:
        """Forget an intent's marks (its transaction rolled back); a committed mark stays."""
        marks = self._announced_revoked
        for x in event.payload.get("hashes", ()):
            mark = marks.get(bytes.fromhex(x))
            if mark is not None and mark[1] > 0:
                del marks[bytes.fromhex(x)]

    def sync_or_fail(self) -> None:
        """Sync now; if the database cannot be reached, refuse to answer (fail closed)."""
        try:
            self.sync()
        except Exception as exc:
            raise Unavailable("cannot confirm token state: event store unreachable") from exc

    @property
    def seq(self) -> int:
        return self._seq

    def seconds_since_sync(self) -> float:
        return time.time() - self._synced_at

    def _apply(self, event: InvalidationEvent, uow: UnitOfWork) -> None:
        p = event.payload
        if event.type in (EventType.TOKEN_REVOKED, EventType.TOKEN_CHANGED):
            for hex_hash in p.get("hashes", ()):
                self._tokens.pop(bytes.fromhex(hex_hash), None)
        elif event.type in (EventType.USER_CHANGED, EventType.MEMBERSHIP_CHANGED):
            self._users.pop(p.get("user_id", ""), None)
            for user_id in p.get("user_ids", ()):
                self._users.pop(user_id, None)
        elif event.type in (EventType.RULE_ADDED, EventType.RULE_DELETED):
            self._load_rules(uow)
        elif event.type is EventType.ORG_CHANGED:
            self._load_org_cutoffs(uow)
        elif event.type is EventType.CLIENT_CHANGED:
            self._load_client_cutoffs(uow)

    def _load_rules(self, uow: UnitOfWork) -> None:
        self._rules = RuleIndex.build(uow.rules.find(), self._catalog)
        self._has_rules = bool(self._rules)

    def _load_org_cutoffs(self, uow: UnitOfWork) -> None:
        self._org_cutoffs = {
            org: {TokenKind(k): v.timestamp() for k, v in marks.items() if k in _KIND_VALUES}
            for org, marks in uow.watermarks.for_type(SubjectType.ORG).items()
        }

    def _load_client_cutoffs(self, uow: UnitOfWork) -> None:
        self._client_cutoffs = {
            client: client_cutoffs({k: v.timestamp() for k, v in marks.items()})
            for client, marks in uow.watermarks.for_type(SubjectType.CLIENT).items()
        }

    def _flush(self) -> None:
        self._jwt_keys.clear()
        self._tokens.clear()
        self._users.clear()
        self._negative.clear()

    # ---------------------------------------------------------------- usage
    def drain_usage(self) -> list[tuple[bytes, datetime, str | None]]:
        """Take the uses listed since the last drain (secret hash, time, ip), newest per token: a
        token's first use in each usage epoch (``usage_resolution_seconds``), at its latest use."""
        now = time.time()
        if now >= self._epoch_ends:  # a new epoch: every token's next use is listed again
            self._epoch += 1
            self._epoch_ends = now + self._usage_resolution
        used, self._used = self._used, []
        entries = dict(used)  # two threads may both have listed a token's first use
        return [(h, datetime.fromtimestamp(e.used, UTC), e.used_ip) for h, e in entries.items()]

    def cache_size(self) -> int:
        return len(self._tokens)


def flush_usage(validator: Validator, uow_factory: ReaderFactory) -> int:
    """Write batched last-used times and IPs in one statement; returns how many tokens."""
    uses = validator.drain_usage()
    if uses:
        with uow_factory() as uow:
            uow.tokens.record_usage(uses)
            uow.commit()
    return len(uses)

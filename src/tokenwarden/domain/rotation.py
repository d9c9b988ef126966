"""Rotation of a managed credential as a journaled state machine (issue 13).

Every step is committed to the journal (table ``rotations``) *before* the next external action,
so a crash anywhere leaves a row whose step says what is known, and :func:`recovery_for` says
what the next run does about it. The invariants:

* never two live successors: one open rotation per credential (a unique index), and a
  successor is always recorded (or looked up by its unique display name) before another is made;
* never a stored secret that does not work: the store's write is read back and compared before
  it is promoted, and a failed write is discarded so the previous version is served again;
* never an untracked live token: a successor whose secret was lost (crash between create and
  store) is revoked, never left alive.

The seed revokes the old token even when storing failed; here the predecessor is revoked only
after the successor is stored, read back and promoted (and after the overlap window).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum


class Step(StrEnum):
    PLANNED = "planned"  # journaled; the successor may or may not exist at the source
    CREATED = "created"  # the successor exists (id known); its secret only in memory
    STORED = "stored"  # written to the store, not yet read back
    PROMOTED = "promoted"  # read back, compared, served; predecessor still live (overlap)
    REVOKED = "revoked"  # predecessor revoked; consumers told next
    DONE = "done"
    ROLLING_BACK = "rolling_back"  # store write or read-back failed: undo in progress
    ROLLED_BACK = "rolled_back"  # successor revoked, predecessor kept and still served
    FAILED = "failed"  # nothing was created (the source refused): predecessor untouched


FINAL_STEPS = frozenset({Step.DONE, Step.ROLLED_BACK, Step.FAILED})

# the forward path and the legal moves out of each step
TRANSITIONS: dict[Step, frozenset[Step]] = {
    Step.PLANNED: frozenset({Step.CREATED, Step.FAILED, Step.ROLLING_BACK}),
    Step.CREATED: frozenset({Step.STORED, Step.ROLLING_BACK}),
    Step.STORED: frozenset({Step.PROMOTED, Step.ROLLING_BACK}),
    Step.PROMOTED: frozenset({Step.REVOKED}),
    Step.REVOKED: frozenset({Step.DONE}),
    Step.ROLLING_BACK: frozenset({Step.ROLLED_BACK}),
    Step.DONE: frozenset(),
    Step.ROLLED_BACK: frozenset(),
    Step.FAILED: frozenset(),
}


class Reason(StrEnum):
    EXPIRING = "expiring"  # inside the threshold before expiry
    FORCED = "forced"  # an operator asked (rotate now without --compromised)
    COMPROMISED = "compromised"  # emergency: predecessor revoked at once, overlap ignored


class Recovery(StrEnum):
    """What the next run does with a rotation it finds unfinished."""

    FIND_AND_REVOKE_ORPHAN = "find_and_revoke_orphan"  # planned: a successor may exist unrecorded
    REVOKE_SUCCESSOR = "revoke_successor"  # created: its secret is lost, it must not live
    VERIFY_STORED = "verify_stored"  # stored: read back, compare the fingerprint, then go on or undo
    REVOKE_PREDECESSOR = "revoke_predecessor"  # promoted: finish (after the overlap window)
    NOTIFY = "notify"  # revoked: tell the consumers and contacts, then done
    FINISH_ROLLBACK = "finish_rollback"  # rolling back: discard the write, revoke the successor
    NOTHING = "nothing"


def check_transition(current: Step, target: Step) -> None:
    """Raise ValueError for a move the state machine does not have."""
    if target not in TRANSITIONS[current]:
        raise ValueError(f"rotation cannot go from {current} to {target}")


def recovery_for(step: Step) -> Recovery:
    return {
        Step.PLANNED: Recovery.FIND_AND_REVOKE_ORPHAN,
        Step.CREATED: Recovery.REVOKE_SUCCESSOR,
        Step.STORED: Recovery.VERIFY_STORED,
        Step.PROMOTED: Recovery.REVOKE_PREDECESSOR,
        Step.REVOKED: Recovery.NOTIFY,
        Step.ROLLING_BACK: Recovery.FINISH_ROLLBACK,
    }.get(step, Recovery.NOTHING)


_VERSION_SUFFIX = re.compile(r"-v\d+$")


def display_base(display_name: str) -> str:
    """The display name without its ``-vN`` rotation suffix."""
    return _VERSION_SUFFIX.sub("", display_name)


def successor_display_name(base: str, version: int, *, max_len: int = 256) -> str:
    """``base-vN`` (the seed used a timestamp; a counter is stable and unique per credential),
    the base cut so the suffix always fits."""
    suffix = f"-v{version}"
    return base[: max_len - len(suffix)] + suffix


@dataclass(frozen=True, slots=True)
class RotationSettings:
    """Per credential: when to rotate, for how long the successor lives, the overlap."""

    threshold_days: int = 7
    valid_days: int = 30
    overlap_minutes: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.threshold_days <= 365:
            raise ValueError("thresholdDays must be between 0 and 365")
        if not 1 <= self.valid_days <= 366:
            raise ValueError("validDays must be between 1 and 366")
        if self.threshold_days >= self.valid_days:
            raise ValueError("thresholdDays must be less than validDays (or every run would rotate)")
        if not 0 <= self.overlap_minutes <= 7 * 24 * 60:
            raise ValueError("overlapMinutes must be between 0 and 10080 (7 days)")


def is_due(valid_to: datetime | None, settings: RotationSettings, now: datetime) -> bool:
    """Rotate when the credential expires within the threshold (or has no known expiry).
    An expired credential is due too: rotating it is how the service recovers."""
    return valid_to is None or valid_to - now <= timedelta(days=settings.threshold_days)


def revoke_after(promoted_at: datetime, settings: RotationSettings, reason: Reason) -> datetime:
    """When the predecessor may be revoked: at once for a compromised one, else after the
    overlap window during which consumers still holding it keep working."""
    if reason is Reason.COMPROMISED:
        return promoted_at
    return promoted_at + timedelta(minutes=settings.overlap_minutes)

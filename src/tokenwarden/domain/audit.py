"""Audit events: names follow Azure DevOps where one exists."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class AuditEventType(StrEnum):
    PAT_CREATE = "Token.PatCreateEvent"
    PAT_UPDATE = "Token.PatUpdateEvent"
    PAT_REGENERATE = "Token.PatRegenerateEvent"
    PAT_REVOKE = "Token.PatRevokeEvent"
    PAT_SYSTEM_REVOKE = "Token.PatSystemRevokeEvent"
    REVOCATION_RULE_CREATE = "Token.RevocationRuleCreateEvent"
    REVOCATION_RULE_DELETE = "Token.RevocationRuleDeleteEvent"
    USER_TOKENS_REVOKE = "Token.UserTokensRevokeEvent"
    SIGN_IN_SESSIONS_REVOKE = "Token.SignInSessionsRevokeEvent"
    REFRESH_TOKENS_INVALIDATE = "Token.RefreshTokensInvalidateEvent"
    TOKEN_LOOKUP = "Token.LookupByValueEvent"
    RISKY_USERS_REVOKE = "Token.RiskyUsersRevokeEvent"
    BULK_REVOKE_JOB = "Token.BulkRevokeJobEvent"
    BREAK_GLASS_REQUEST = "Token.BreakGlassRequestEvent"
    BREAK_GLASS_EXECUTE = "Token.BreakGlassExecuteEvent"
    BREAK_GLASS_REPORT = "Token.BreakGlassReportEvent"
    USER_RISK_CHANGE = "User.RiskChange"
    ORG_CREATE = "Organization.Create"
    USER_CREATE = "User.Create"
    USER_UPDATE = "User.Update"
    USER_DISABLE = "User.Disable"
    USER_OFFBOARD = "User.Offboard"  # issue 17: tokens cut, credentials and watches handed over
    # ---- issue 17: SCIM 2.0 provisioning
    SCIM_CONFIGURE = "Scim.Configure"
    SCIM_GROUP_CREATE = "Scim.GroupCreate"
    SCIM_GROUP_DELETE = "Scim.GroupDelete"
    SCIM_GROUP_PATCH = "Scim.GroupPatch"
    SCIM_GROUP_REPLACE = "Scim.GroupReplace"
    SCIM_TOKEN_CREATE = "Scim.TokenCreate"
    SCIM_USER_CREATE = "Scim.UserCreate"
    SCIM_USER_DELETE = "Scim.UserDelete"
    SCIM_USER_PATCH = "Scim.UserPatch"
    SCIM_USER_REPLACE = "Scim.UserReplace"
    MEMBERSHIP_CHANGE = "Organization.MembershipChange"
    MEMBER_INVITE = "Organization.MemberInvite"
    MEMBER_INVITE_ACCEPT = "Organization.MemberInviteAccept"
    MEMBER_INVITE_DECLINE = "Organization.MemberInviteDecline"
    MEMBER_INVITE_CANCEL = "Organization.MemberInviteCancel"
    POLICY_UPDATE = "Policy.PolicyValueUpdated"
    # OAuth 2.0 authorization server (issue 11)
    OAUTH_CONSENT = "OAuth.ConsentEvent"
    OAUTH_TOKEN_ISSUE = "OAuth.TokenIssueEvent"
    OAUTH_CODE_REPLAY = "OAuth.CodeReplayEvent"
    OAUTH_REFRESH_REUSE = "OAuth.RefreshTokenReuseEvent"
    OAUTH_TOKEN_REVOKE = "OAuth.TokenRevokeEvent"
    SIGNING_KEY_ROTATE = "Keys.SigningKeyRotateEvent"
    # the OAuth client registry (issue 11)
    CLIENT_CREATE = "OAuth.ClientCreateEvent"
    CLIENT_UPDATE = "OAuth.ClientUpdateEvent"
    CLIENT_SECRET_ROTATE = "OAuth.ClientSecretRotateEvent"
    CLIENT_DISABLE = "OAuth.ClientDisableEvent"
    CLIENT_ENABLE = "OAuth.ClientEnableEvent"
    CLIENT_DELETE = "OAuth.ClientDeleteEvent"
    # ---- issue 11: local accounts and browser sessions
    PASSWORD_SET = "User.PasswordSet"
    SIGN_IN = "Session.SignIn"
    SIGN_IN_FAILED = "Session.SignInFailed"
    SIGN_IN_THROTTLED = "Session.SignInThrottled"
    SIGN_OUT = "Session.SignOut"
    SESSION_REVOKE = "Session.Revoke"
    # ---- issue 12: lifecycle jobs
    PAT_EXPIRED = "Token.PatExpiredEvent"
    # issue 14: detection
    ALERT_RAISE = "Security.AlertRaiseEvent"
    ALERT_ACKNOWLEDGE = "Security.AlertAcknowledgeEvent"
    ALERT_CLOSE = "Security.AlertCloseEvent"
    DETECTION_POLICY_UPDATE = "Security.DetectionPolicyUpdateEvent"
    WEBHOOK_CREATE = "Notifications.WebhookCreateEvent"
    WEBHOOK_DELETE = "Notifications.WebhookDeleteEvent"
    NOTIFICATION_REPLAY = "Notifications.ReplayEvent"
    JOB_RUN = "Jobs.RunRequestedEvent"
    # issue 16: second factors
    MFA_ENROLL = "Mfa.EnrollEvent"
    MFA_REMOVE = "Mfa.RemoveEvent"
    MFA_RESET = "Mfa.ResetEvent"
    MFA_STEP_UP = "Mfa.StepUpEvent"
    MFA_FAILED = "Mfa.FailedEvent"
    MFA_RECOVERY_CODE_USED = "Mfa.RecoveryCodeUsedEvent"
    MFA_RECOVERY_CODES_RENEW = "Mfa.RecoveryCodesRenewEvent"
    POLICY_ENFORCE = "Policy.EnforcementEvent"
    TOKEN_WATCHERS_CHANGE = "Token.WatchersChangeEvent"
    # ---- issue 13: rotation
    MANAGED_ADD = "Rotation.CredentialAddEvent"
    MANAGED_UPDATE = "Rotation.CredentialUpdateEvent"
    MANAGED_REMOVE = "Rotation.CredentialRemoveEvent"
    ROTATION_REQUEST = "Rotation.RotateRequestedEvent"
    ROTATION_COMPLETE = "Rotation.RotateEvent"
    ROTATION_FAIL = "Rotation.RotateFailedEvent"
    SECRET_READ = "Rotation.SecretReadEvent"


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One immutable audit row. ``details`` must never contain a secret."""

    at: datetime
    event_type: str
    org_id: str | None
    actor_id: str | None
    actor_upn: str | None
    target_type: str
    target_id: str
    ip: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    id: int | None = None
    user_agent: str | None = None
    # its place in the tamper-evident chain of its organization (domain/audit_chain.py)
    chain_seq: int | None = None
    prev_hash: str | None = None
    hash: str | None = None

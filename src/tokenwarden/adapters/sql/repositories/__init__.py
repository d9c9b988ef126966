"""SQL implementations of the storage ports (SQLite and PostgreSQL share this code), one module
per port."""

from __future__ import annotations

from tokenwarden.adapters.sql.repositories.audit import SqlAuditRepository
from tokenwarden.adapters.sql.repositories.break_glass import SqlBreakGlassRepository
from tokenwarden.adapters.sql.repositories.bulk_jobs import SqlBulkJobRepository
from tokenwarden.adapters.sql.repositories.directory import (
    SqlInvitationRepository,
    SqlOrgRepository,
    SqlUserRepository,
)
from tokenwarden.adapters.sql.repositories.events import SqlEventRepository
from tokenwarden.adapters.sql.repositories.oauth import SqlOAuthRepository
from tokenwarden.adapters.sql.repositories.policies import SqlPolicyRepository
from tokenwarden.adapters.sql.repositories.reports import SqlReportRepository
from tokenwarden.adapters.sql.repositories.rules import SqlRuleRepository
from tokenwarden.adapters.sql.repositories.signals import SqlSignalRepository
from tokenwarden.adapters.sql.repositories.tokens import SqlTokenRepository
from tokenwarden.adapters.sql.repositories.watermarks import SqlWatermarkRepository

__all__ = [
    "SqlAuditRepository",
    "SqlBreakGlassRepository",
    "SqlBulkJobRepository",
    "SqlEventRepository",
    "SqlInvitationRepository",
    "SqlOAuthRepository",
    "SqlOrgRepository",
    "SqlPolicyRepository",
    "SqlReportRepository",
    "SqlRuleRepository",
    "SqlSignalRepository",
    "SqlTokenRepository",
    "SqlUserRepository",
    "SqlWatermarkRepository",
]

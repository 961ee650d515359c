"""All tables, one module per aggregate. Importing this package registers every table."""

from shoal.db.models.accounts import (
    Account,
    AccountMember,
    ApiKey,
    AuthSession,
    LoginAttempt,
    RefreshToken,
    User,
)
from shoal.db.models.agents import Agent
from shoal.db.models.billing import BillingSubscription, BillingWebhookEvent, UsageEntry
from shoal.db.models.runs import AgentRun, IdempotencyKey, RunEvent
from shoal.db.models.sandboxes import Sandbox
from shoal.db.models.threads import Message, Project, Thread

__all__ = [
    "Account",
    "AccountMember",
    "Agent",
    "AgentRun",
    "ApiKey",
    "AuthSession",
    "BillingSubscription",
    "BillingWebhookEvent",
    "IdempotencyKey",
    "LoginAttempt",
    "Message",
    "Project",
    "RefreshToken",
    "RunEvent",
    "Sandbox",
    "Thread",
    "UsageEntry",
    "User",
]

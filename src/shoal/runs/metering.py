"""Sandbox time that no single command accounts for: background sessions, metered when they
end (a tool saw them finished, or their sandbox stopped or was deleted)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shoal.billing import service as billing
from shoal.config import Settings
from shoal.db.session import unit_of_work
from shoal.observability.metrics import SANDBOX_EXEC_SECONDS
from shoal.sandboxes.manager import SessionMeter, SessionTime


def session_meter(
    settings: Settings, session_factory: async_sessionmaker[AsyncSession]
) -> SessionMeter:
    """One ``exec`` ledger row per ended session (idempotent: a session seen ended twice is
    charged once), on the sandbox's account and project; no run: sessions outlive runs."""

    async def meter(ended: list[SessionTime]) -> None:
        async with unit_of_work(session_factory) as session:
            for item in ended:
                added = await billing.record_exec_usage(
                    session,
                    settings=settings,
                    account_id=item.account_id,
                    project_id=item.project_id,
                    thread_id=None,
                    run_id=None,
                    attempt=None,
                    seconds=item.seconds,
                    key=item.key,
                )
                if added:
                    SANDBOX_EXEC_SECONDS.observe(item.seconds)

    return meter

"""account suspension

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 23:20:00.000000

An operator can suspend an account (`shoal accounts suspend`): nullable columns only, so the
upgrade is instant on a live Postgres and existing accounts stay active.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shoal.db.base

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('suspended_at', shoal.db.base.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column('suspended_reason', sa.String(length=500), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.drop_column('suspended_reason')
        batch_op.drop_column('suspended_at')

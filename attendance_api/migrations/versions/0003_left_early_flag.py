"""left_early flag beside the arrival status (a late arrival who leaves early stays late)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("attendance_records") as batch:
        batch.add_column(
            sa.Column("left_early", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    # Rows written before this revision lost their arrival status at check-out; the minutes
    # late survived, so the arrival status is recovered from them.
    op.execute(
        "UPDATE attendance_records SET left_early = TRUE, "
        "status = CASE WHEN minutes_late > 0 THEN 'late' ELSE 'present' END "
        "WHERE status = 'left_early'"
    )


def downgrade() -> None:
    op.execute("UPDATE attendance_records SET status = 'left_early' WHERE left_early")
    with op.batch_alter_table("attendance_records") as batch:
        batch.drop_column("left_early")

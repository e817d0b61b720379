"""The Alembic migrations build exactly the schema the models map, on SQLite and PostgreSQL,
and can be walked down and up again."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from attendance_api.db import MIGRATIONS, make_engine, migrate
from attendance_api.models import Base


def alembic_config(connection: object) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def test_migrations_match_the_models_and_walk_down_and_up(database_url: str) -> None:
    engine = make_engine(database_url)
    migrate(engine)
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
    with engine.begin() as connection:
        command.downgrade(alembic_config(connection), "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    migrate(engine)
    assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())
    engine.dispose()


def test_stored_left_early_statuses_become_the_flag_beside_the_arrival(database_url: str) -> None:
    """Migration 0003: before it, check-out overwrote `late` with `left_early`; the minutes
    late survived, so the arrival status is recovered from them."""
    from sqlalchemy import text

    engine = make_engine(database_url)
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), "0002")
    now = "2026-03-02 15:00:00+00:00"
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO users (id, employee_code, email, password_hash, first_name, "
                "last_name, role, status, created_at, updated_at) VALUES "
                "(1, 'E-1', 'a@x.test', 'x', 'A', 'T', 'employee', 'active', :now, :now), "
                "(2, 'E-2', 'b@x.test', 'x', 'B', 'T', 'employee', 'active', :now, :now), "
                "(3, 'E-3', 'c@x.test', 'x', 'C', 'T', 'employee', 'active', :now, :now)"
            ),
            {"now": now},
        )
        connection.execute(
            text(
                "INSERT INTO schedules (id, name, time_in, time_out, late_threshold_minutes, "
                "status, created_at, updated_at) VALUES "
                "(1, 'Night', '23:00:00', '07:00:00', 30, 'active', :now, :now)"
            ),
            {"now": now},
        )
        connection.execute(
            text(
                "INSERT INTO attendance_sessions (id, schedule_id, work_date, status, "
                "attendance_required, session_type, created_at, updated_at) VALUES "
                "(1, 1, '2026-03-02', 'completed', TRUE, 'Normal', :now, :now)"
            ),
            {"now": now},
        )
        connection.execute(
            text(
                "INSERT INTO attendance_records (id, session_id, user_id, work_date, status, "
                "minutes_late, overtime_minutes, created_at, updated_at) VALUES "
                "(1, 1, 1, '2026-03-02', 'left_early', 40, 0, :now, :now), "
                "(2, 1, 2, '2026-03-02', 'left_early', 0, 0, :now, :now), "
                "(3, 1, 3, '2026-03-02', 'late', 20, 0, :now, :now)"
            ),
            {"now": now},
        )
    migrate(engine)
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT id, status, left_early FROM attendance_records ORDER BY id")
        ).all()
    assert [(r[0], r[1], bool(r[2])) for r in rows] == [
        (1, "late", True),
        (2, "present", True),
        (3, "late", False),
    ]
    engine.dispose()

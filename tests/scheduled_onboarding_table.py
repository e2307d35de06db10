"""The requests table of the scheduled-onboarding DAG, for the tests: created from the DDL file, seeded, read."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_whatsapp.onboarding.requests_table import REQUEST_COLUMNS

DDL = Path(__file__).resolve().parents[1] / "dags" / "whatsapp_onboarding_requests.sql"
# What a test may set: the columns a run reads (but its own count) and an earlier outcome's ID.
SEED_COLUMNS = (*(column for column in REQUEST_COLUMNS if column != "attempts"), "phone_number_id")
TABLE_COLUMNS = (*SEED_COLUMNS, "error_code", "error_subcode", "error_message", "attempts")


def ddl_statements() -> list[str]:
    """The DDL file's statements, comments stripped."""
    lines = [line.split("--")[0] for line in DDL.read_text().splitlines()]
    return [statement.strip() for statement in "\n".join(lines).split(";") if statement.strip()]


def seed_rows(
    execute: Callable[[str, Iterable[Any]], Any], placeholder: str, rows: Iterable[Mapping[str, Any]]
) -> None:
    """Insert ``rows`` (dicts of some of :data:`SEED_COLUMNS`, and ``created_at``; ``status`` defaults to
    ``pending``, ``created_at`` to now)."""
    for row in rows:
        values = {"status": "pending", **row}
        columns = [column for column in (*SEED_COLUMNS, "created_at") if column in values or column in SEED_COLUMNS]
        marks = ", ".join([placeholder] * len(columns))
        execute(
            f"INSERT INTO whatsapp_onboarding_requests ({', '.join(columns)}) VALUES ({marks})",
            [values.get(column) for column in columns],
        )


def table_by_request(records: Iterable[Iterable[Any]]) -> dict[str, dict[str, Any]]:
    """Rows of ``SELECT`` :data:`TABLE_COLUMNS`, by request ID."""
    rows = [dict(zip(TABLE_COLUMNS, record, strict=True)) for record in records]
    return {row["request_id"]: row for row in rows}


SELECT_TABLE = f"SELECT {', '.join(TABLE_COLUMNS)} FROM whatsapp_onboarding_requests ORDER BY request_id"


class RequestsTable:
    """The requests table in a SQLite file, which the DAG reaches through ``whatsapp_onboarding_db``."""

    @classmethod
    def connected(cls, path: Path, monkeypatch: pytest.MonkeyPatch) -> RequestsTable:
        """A new table in ``path``, and ``whatsapp_onboarding_db`` (by environment) pointing at it."""
        monkeypatch.setenv(
            "AIRFLOW_CONN_WHATSAPP_ONBOARDING_DB", json.dumps({"conn_type": "sqlite", "host": str(path)})
        )
        return cls(path)

    def __init__(self, path: Path) -> None:
        self.path = path
        with sqlite3.connect(path) as connection:
            for statement in ddl_statements():
                connection.execute(statement)

    def seed(self, *rows: dict[str, Any]) -> None:
        with sqlite3.connect(self.path) as connection:
            seed_rows(connection.execute, "?", rows)

    def rows(self) -> dict[str, dict[str, Any]]:
        with sqlite3.connect(self.path) as connection:
            return table_by_request(connection.execute(SELECT_TABLE).fetchall())

    def reset(self, request_id: str) -> None:
        with sqlite3.connect(self.path) as connection:
            connection.execute(
                "UPDATE whatsapp_onboarding_requests SET status = 'pending' WHERE request_id = ?", [request_id]
            )

"""Registry imports started from the console: one row per uploaded file, with its progress and its
report, so that any worker can show them while the one that received the file imports it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from services.models.base import Base, BigId


class RegistryImport(Base):
    """An upload of a committee's registry (CSV/XLSX) and how far its import got. ``status``: queued,
    counting, running, done, failed; a row still unfinished whose ``updated_at`` stops moving was
    interrupted (its worker stopped). The file itself is kept only while it is imported."""

    __tablename__ = "registry_imports"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    committee_id: Mapped[int] = mapped_column(ForeignKey("regions.id", ondelete="RESTRICT"), index=True)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="SET NULL"))
    filename: Mapped[str] = mapped_column(String(200))
    flag_missing: Mapped[bool] = mapped_column(Boolean)  # residents not in the file are flagged moved out
    locale: Mapped[str] = mapped_column(String(16))  # the reasons of rejected rows are worded in it
    status: Mapped[str] = mapped_column(String(16))
    total_rows: Mapped[int | None] = mapped_column(Integer)  # data rows of the file (None: not counted yet)
    done_rows: Mapped[int] = mapped_column(Integer, default=0)
    # Counts (imported, updated, unchanged, flagged, restored, households_updated, rejected) and the
    # rejected rows as [line, reason] (the first REJECTED_KEPT of them); never a cell of the file.
    report: Mapped[dict | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(String(500))  # why the whole file was refused
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]

"""Importing a CSV file: stage it, preview what it would do, then save it in one transaction.

The upload is parsed once, streamed (webapp/tracking/csv_formats.py), into pending_import_rows
in batches; SQL then marks each row new, duplicate or conflict against the user's entries. The
preview page shows those counts and the reasons with line numbers; the confirmation re-checks
against the entries as they are then (another tab may have logged a weight) and copies the new
rows with one INSERT ... SELECT. Nothing reaches weight_entries before that click, and a file
that cannot be read leaves nothing staged either. See docs/DECISIONS.md, "Accounts and data".
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import IO

import sqlalchemy as sa
from flask_babel import gettext as _
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased
from sqlalchemy.orm.exc import StaleDataError

from ..events.outbox import announce_to_user
from ..extensions import db
from ..models import PendingImport, PendingImportRow, User, WeightEntry
from ..reminders.lifecycle import record_weight_logged
from ..timeutil import UTCDateTime, utcnow
from .csv_formats import CsvImport, ImportFileError, ImportOptions, ParsedRow, RefusedRow
from .queries import ENTRIES_CHANGED

# How long a preview waits for its confirmation; older ones are deleted at the next upload.
PENDING_FOR = timedelta(hours=1)
BATCH_ROWS = 1000
# Commit (and so show progress) every this many batches: a few times a second at full speed.
PROGRESS_BATCHES = 5
# The preview lists this many refused rows and conflicts; the counts are always complete.
SHOWN_PROBLEMS = 200
MAX_FILENAME = 255


@dataclass(frozen=True)
class ImportResult:
    added: int
    counted_as_activity: bool


def _expired_before(now: datetime) -> datetime:
    return now - PENDING_FOR


def _delete_pending(condition) -> None:
    ids = db.select(PendingImport.id).where(condition)
    # Rows first: SQLite does not enforce the cascade unless foreign keys are switched on.
    # No session synchronisation: "fetch" would read back every deleted row's id (100,000 of them).
    unsynced = {"synchronize_session": False}
    db.session.execute(
        sa.delete(PendingImportRow).where(PendingImportRow.import_id.in_(ids)).execution_options(**unsynced)
    )
    db.session.execute(sa.delete(PendingImport).where(condition).execution_options(**unsynced))


def delete_pending_imports_of(user_id: int) -> None:
    """Drop every pending import of a user (a new upload, or the account going)."""
    _delete_pending(PendingImport.user_id == user_id)


def _classify(pending: PendingImport, user_id: int) -> None:
    """Mark each staged row new, duplicate or conflict, by the file itself and the user's entries."""
    row = PendingImportRow
    earlier = aliased(PendingImportRow)
    same_second_earlier = sa.and_(
        earlier.import_id == pending.id, earlier.measured_at == row.measured_at, earlier.id < row.id
    )
    entry_in_that_second = sa.and_(
        WeightEntry.user_id == user_id,
        WeightEntry.measured_at >= row.measured_at,
        WeightEntry.measured_at < row.measured_until,
    )
    mine = row.import_id == pending.id
    db.session.execute(
        sa.update(row).where(mine).values(status="new").execution_options(synchronize_session=False)
    )
    steps = [
        ("duplicate", sa.exists().where(same_second_earlier, earlier.mass_g == row.mass_g)),
        ("conflict", sa.exists().where(same_second_earlier)),
        ("duplicate", sa.exists().where(entry_in_that_second, WeightEntry.mass_g == row.mass_g)),
        ("conflict", sa.exists().where(entry_in_that_second)),
    ]
    for status, condition in steps:
        db.session.execute(
            sa.update(row)
            .where(mine, row.status == "new", condition)
            .values(status=status)
            .execution_options(synchronize_session=False)
        )


def _count(pending: PendingImport) -> dict[str, int]:
    counts = db.session.execute(
        db.select(PendingImportRow.status, sa.func.count())
        .where(PendingImportRow.import_id == pending.id)
        .group_by(PendingImportRow.status)
    ).all()
    return {status: count for status, count in counts}


def _size(stream: IO[bytes]) -> int:
    stream.seek(0, 2)
    size = stream.tell()
    stream.seek(0)
    return size


def stage_import(
    user: User, stream: IO[bytes], filename: str, options: ImportOptions, now: datetime | None = None
) -> PendingImport:
    """Parse an upload into a pending import and classify its rows; raises ImportFileError.

    Commits as it goes (every PROGRESS_BATCHES batches, with how far it has read), so the page's
    progress poll can see it; a file that turns out unreadable is then deleted again, staged
    rows and all, before the error is raised: nothing stays behind.
    """
    now = now or utcnow()
    size = max(_size(stream), 1)
    _delete_pending(sa.or_(PendingImport.user_id == user.id, PendingImport.created_at < _expired_before(now)))
    pending_id = None
    try:
        parsed = CsvImport(stream, options)
        pending = PendingImport(
            token=secrets.token_urlsafe(32),
            user_id=user.id,
            filename=(filename or "")[:MAX_FILENAME],
            file_format=parsed.format,
            unit=parsed.unit,
            created_at=now,
            ready=False,
        )
        db.session.add(pending)
        db.session.commit()
        pending_id = pending.id
        refused: list[tuple[int, str]] = []
        refused_count = 0
        batch: list[dict] = []
        batches = 0
        for item in parsed:
            if isinstance(item, RefusedRow):
                refused_count += 1
                if len(refused) < SHOWN_PROBLEMS:
                    refused.append((item.line, item.reason))
                continue
            batch.append(_staged(pending_id, item))
            if len(batch) >= BATCH_ROWS:
                db.session.execute(sa.insert(PendingImportRow), batch)
                batches += 1
                if batches % PROGRESS_BATCHES == 0:
                    pending.lines_read = item.line
                    pending.percent_read = min(99, stream.tell() * 100 // size)
                    db.session.commit()
                batch = []
        if batch:
            db.session.execute(sa.insert(PendingImportRow), batch)
        pending.percent_read = 100
        _classify(pending, user.id)
        counts = _count(pending)
        conflicts = db.session.execute(
            db.select(PendingImportRow.line)
            .where(PendingImportRow.import_id == pending.id, PendingImportRow.status == "conflict")
            .order_by(PendingImportRow.line)
            .limit(SHOWN_PROBLEMS)
        ).scalars()
        conflict = _("an entry at that moment already has another weight; the existing entry is kept")
        problems = sorted(refused + [(line, conflict) for line in conflicts])[:SHOWN_PROBLEMS]
        pending.added_count = counts.get("new", 0)
        pending.duplicate_count = counts.get("duplicate", 0)
        pending.conflict_count = counts.get("conflict", 0)
        pending.refused_count = refused_count
        pending.problems = json.dumps(problems)
        pending.ready = True
        db.session.commit()
    except Exception as error:
        db.session.rollback()
        if pending_id is not None:
            _delete_pending(PendingImport.id == pending_id)
            db.session.commit()
        if isinstance(error, IntegrityError | StaleDataError):
            # A second upload from another tab replaced this one while it was being read.
            raise ImportFileError(
                _("A newer upload replaced this one. Nothing was imported from it.")
            ) from None
        raise
    return pending


def import_in_progress(user: User) -> PendingImport | None:
    """The user's upload that is still being read, for the progress the import page polls."""
    return db.session.scalar(
        db.select(PendingImport)
        .where(PendingImport.user_id == user.id, PendingImport.ready.is_(False))
        .order_by(PendingImport.id.desc())
        .limit(1)
    )


def _staged(import_id: int, row: ParsedRow) -> dict:
    return {
        "import_id": import_id,
        "line": row.line,
        "measured_at": row.measured_at,
        "measured_until": row.measured_at + timedelta(seconds=1),
        "mass_g": row.mass_g,
        "note": row.note,
        "status": "new",
    }


def pending_import(user: User, token: str, now: datetime | None = None) -> PendingImport | None:
    """The user's pending import with this token, if it has not expired; None for anyone else's."""
    now = now or utcnow()
    if not token or len(token) > 64:
        return None
    return db.session.scalar(
        db.select(PendingImport).where(
            PendingImport.token == token,
            PendingImport.user_id == user.id,
            PendingImport.created_at >= _expired_before(now),
            PendingImport.ready.is_(True),
        )
    )


def problems_of(pending: PendingImport) -> list[tuple[int, str]]:
    return [(int(line), str(reason)) for line, reason in json.loads(pending.problems or "[]")]


def confirm_import(user: User, pending: PendingImport, now: datetime | None = None) -> ImportResult | None:
    """Save a pending import's new rows in one transaction, then drop it; commits.

    None if another request (a double click) saved or cancelled it first: the row lock makes the
    second one wait on PostgreSQL, and it then finds the import gone.

    The activity clocks move only if an imported entry is newer than the user's last weight
    (or sign-up, for someone who never logged one): importing old history is not a sign of life.
    """
    now = now or utcnow()
    locked = db.session.scalar(
        db.select(PendingImport.id).where(PendingImport.id == pending.id).with_for_update()
    )
    if locked is None:
        db.session.rollback()
        return None
    _classify(pending, user.id)  # the entries may have changed since the preview
    new_rows = db.select(PendingImportRow).where(
        PendingImportRow.import_id == pending.id, PendingImportRow.status == "new"
    )
    added, newest = db.session.execute(
        db.select(sa.func.count(), sa.func.max(PendingImportRow.measured_at)).where(
            PendingImportRow.import_id == pending.id, PendingImportRow.status == "new"
        )
    ).one()
    stamp = sa.literal(now, UTCDateTime())
    db.session.execute(
        sa.insert(WeightEntry).from_select(
            ["user_id", "measured_at", "mass_g", "note", "created_at", "updated_at"],
            db.select(
                sa.literal(user.id, sa.Integer()),
                PendingImportRow.measured_at,
                PendingImportRow.mass_g,
                PendingImportRow.note,
                stamp,
                stamp,
            )
            .where(new_rows.whereclause)
            .order_by(PendingImportRow.measured_at, PendingImportRow.line),
        )
    )
    activity = bool(added) and newest is not None and newest > (user.last_weight_at or user.created_at)
    if activity:
        record_weight_logged(user, now)  # announces it
    elif added:
        announce_to_user(user.id, ENTRIES_CHANGED)  # old history: not activity, but other tabs show it
    _delete_pending(PendingImport.id == pending.id)
    db.session.commit()
    return ImportResult(added=added, counted_as_activity=activity)


def discard_import(pending: PendingImport) -> None:
    """Drop a pending import without saving anything; commits."""
    _delete_pending(PendingImport.id == pending.id)
    db.session.commit()

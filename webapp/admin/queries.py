"""The admin side's queries: who is inactive, page by page, and the overview counts.

Paging is keyset ("seek") paging on (users.last_active_at, users.id), never OFFSET: each page is
one range scan of ix_users_last_active_at that starts where the previous page ended, so page
20 000 costs what page 1 costs.

Query plans, checked with EXPLAIN (tests/test_admin.py asserts the SQLite one):
- SQLite: `SEARCH users USING INDEX ix_users_last_active_at (last_active_at>? AND last_active_at<?)`
  and no `USE TEMP B-TREE FOR ORDER BY`: the index holds the rowid (= id), so the order is free.
- PostgreSQL 1,000,000 users (98 % inactive), 51-row page: `Index Scan [Backward] using
  ix_users_last_active_at` with `Index Cond` on the range and the tie-break as a `Filter`, under an
  `Incremental Sort` (presorted key last_active_at) that only sorts ties; 52 rows read, about
  0.4 ms for a deep page in either direction, 4 ms cold. An OFFSET of 500 000 would read 500 051.
- Email search is a substring match (ILIKE '%...%'): no B-tree helps, so with a search the
  planner seq-scans users (about 0.85 s for a million rows). A pg_trgm GIN index would fix that
  on PostgreSQL if it matters; it is left out to keep the schema the same on both backends.
- Without a threshold from the admin, each user is inactive by their own "remind me after"
  (Settings; 0 = REMINDER_AFTER_DAYS): the same range scan, bounded by the shortest value anyone
  may hold, with each row's own cut-off (a CASE on remind_after_days) as a filter on it. The rows
  it reads and drops are the users active more recently than their own setting but longer ago
  than the shortest one, at most the last 60 days' worth (tests/test_admin.py asserts the plan).
- Counts: the total is one pass over users (about 0.15 s per million); "inactive" is the total
  minus the recent end of each "remind me after" value's range of
  ix_users_remind_after_days_last_active, so it never walks the (large) inactive range.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from ..extensions import db
from ..models import MAX_ID, AdminAction, Reminder, User
from ..reminders.lifecycle import cutoffs_by_choice
from ..text import has_control_characters
from ..timeutil import UTCDateTime

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_THRESHOLD_DAYS = 3650
MAX_SEARCH_LENGTH = 254
# What the "Show" filter narrows the inactive users to (the rule itself is always applied).
KINDS = {
    "any": _l("Everyone inactive"),
    "weight": _l("Stale weight (has logged a weight before)"),
    "goal": _l("Stale goal (has set a goal before)"),
    "never": _l("Never logged anything"),
}
SORTS = {
    "longest": _l("Longest inactive first"),
    "shortest": _l("Most recently inactive first"),
}
# What the table shows for each reminder_state (the CSV keeps the plain values).
REMINDER_STATES = {
    "none": _l("none"),
    "open": _l("open"),
    "dismissed": _l("dismissed"),
    "reminders off": _l("reminders off"),
}
WHOLE_NUMBER = re.compile(r"-?[0-9]{1,12}")


@dataclass(frozen=True)
class Cursor:
    """A position in the list: the (last_active_at, id) of a row that a page starts after or before."""

    last_active_at: datetime
    user_id: int

    def encode(self) -> str:
        micros = (self.last_active_at - EPOCH) // timedelta(microseconds=1)
        return f"{micros}_{self.user_id}"

    @classmethod
    def decode(cls, raw: str) -> Cursor:
        """Parse an encoded cursor; raises ValueError for anything a page link could not have made."""
        micros, sep, user_id = raw.partition("_")
        if not sep or not all(
            part.isascii() and part.isdigit() and len(part) <= 18 for part in (micros, user_id)
        ):
            raise ValueError(raw)
        try:
            moment = EPOCH + timedelta(microseconds=int(micros))
        except OverflowError:
            raise ValueError(raw) from None
        if moment.year > 9000 or int(user_id) > MAX_ID:
            raise ValueError(raw)
        return cls(moment, int(user_id))

    @classmethod
    def of(cls, user: User) -> Cursor:
        return cls(user.last_active_at, user.id)


@dataclass
class InactiveFilter:
    """The admin's choice of who to list: parsed from query parameters, every bad value made sane.

    days=None (no threshold given) lists each user by their own "remind me after" setting, whose
    0 means site_days (REMINDER_AFTER_DAYS); a number applies to everyone alike.
    """

    days: int | None
    kind: str = "any"
    search: str = ""
    sort: str = "longest"
    after: Cursor | None = None
    before: Cursor | None = None
    notices: list[str] = field(default_factory=list)
    site_days: int = 7

    @classmethod
    def from_args(cls, args, site_days: int) -> InactiveFilter:
        """Read the filters from request args; a bad value falls back to its default with a notice."""
        notices: list[str] = []
        days: int | None = None
        raw_days = (args.get("days") or "").strip()
        if raw_days:
            if not WHOLE_NUMBER.fullmatch(raw_days):
                notices.append(
                    _(
                        "“%(value)s” is not a whole number of days; showing each user by their own setting.",
                        value=raw_days[:40],
                    )
                )
            elif int(raw_days) < 1:
                notices.append(
                    _("The threshold must be at least 1 day; showing each user by their own setting.")
                )
            elif int(raw_days) > MAX_THRESHOLD_DAYS:
                days = MAX_THRESHOLD_DAYS
                notices.append(
                    _("The threshold is at most %(days)d days; showing %(days)d.", days=MAX_THRESHOLD_DAYS)
                )
            else:
                days = int(raw_days)
        kind = args.get("kind") or "any"
        if kind not in KINDS:
            notices.append(_("Unknown “Show” choice; showing everyone inactive."))
            kind = "any"
        sort = args.get("sort") or "longest"
        if sort not in SORTS:
            notices.append(_("Unknown sort order; showing the longest inactive first."))
            sort = "longest"
        search = (args.get("q") or "").strip()
        if has_control_characters(search):
            # PostgreSQL refuses NUL even in a LIKE pattern; no address holds any of them.
            notices.append(_("The email search had control characters, so it was left out."))
            search = ""
        if len(search) > MAX_SEARCH_LENGTH:
            search = search[:MAX_SEARCH_LENGTH]
            notices.append(_("The email search was cut to %(max)d characters.", max=MAX_SEARCH_LENGTH))
        after = before = None
        for name in ("after", "before"):
            raw = args.get(name)
            if not raw:
                continue
            try:
                cursor = Cursor.decode(raw)
            except ValueError:
                notices.append(_("That page link was not valid; showing the first page."))
                after = before = None
                break
            if name == "after":
                after = cursor
            else:
                before = cursor
        if after and before:
            notices.append(_("A page link cannot go both ways; showing the first page."))
            after = before = None
        return cls(days, kind, search, sort, after, before, notices, site_days)

    def params(self, **overrides) -> dict:
        """Query parameters that reproduce this filter (without defaults), for links and forms."""
        values = {"days": self.days, "kind": self.kind, "q": self.search, "sort": self.sort}
        values.update(overrides)
        return {key: value for key, value in values.items() if value not in (None, "", "any", "longest")}


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def own_cutoff(now: datetime, site_days: int):
    """The SQL value "now minus this user's own remind-after days" (0 = site_days), per row."""
    cutoffs = cutoffs_by_choice(now, site_days)
    return sa.case(
        *((User.remind_after_days == days, sa.literal(cutoff, UTCDateTime)) for days, cutoff in cutoffs),
        else_=sa.literal(now - timedelta(days=site_days), UTCDateTime),
    )


def own_days_range(now: datetime, site_days: int) -> tuple[datetime, datetime]:
    """(earliest, latest) of the cut-offs any user may hold: everyone before the first is inactive."""
    cutoffs = [cutoff for _days, cutoff in cutoffs_by_choice(now, site_days)]
    return min(cutoffs), max(cutoffs)


def still_active_count_query(now: datetime, site_days: int):
    """How many users were active more recently than their own days: one query, summing one count
    per value a user may hold, each a range of ix_users_remind_after_days_last_active read from the
    index alone (a row-by-row CASE over the recent end cost SQLite 200 ms per 100,000 users)."""
    counts = [
        sa.select(sa.func.count().label("n"))
        .select_from(User)
        .where(User.remind_after_days == days, User.last_active_at > cutoff)
        for days, cutoff in cutoffs_by_choice(now, site_days)
    ]
    # A subquery each, as in due_users_query: SQLite takes no aggregate member of a bare compound.
    every = sa.union_all(*(sa.select(count.subquery().c.n) for count in counts)).subquery()
    # PostgreSQL sums bigints to a numeric; the cast keeps the count an int.
    return sa.select(sa.cast(sa.func.coalesce(sa.func.sum(every.c.n), 0), sa.BigInteger))


def is_inactive(now: datetime, site_days: int):
    """The condition "inactive by their own setting", as a range on last_active_at plus a filter."""
    _earliest, latest = own_days_range(now, site_days)
    return sa.and_(User.last_active_at <= latest, User.last_active_at <= own_cutoff(now, site_days))


def inactive_users_query(flt: InactiveFilter, now: datetime):
    """Users inactive for at least flt.days (or their own days), narrowed by the filters; unordered, unpaged.

    Inactive means the rule's own test: last_active_at (the latest of sign-up, last weight entry
    and last goal change) at or before now - days, so a user inactive exactly `days` is listed.
    """
    if flt.days is None:
        query = db.select(User).where(is_inactive(now, flt.site_days))
    else:
        query = db.select(User).where(User.last_active_at <= now - timedelta(days=flt.days))
    if flt.kind == "weight":
        query = query.where(User.last_weight_at.is_not(None))
    elif flt.kind == "goal":
        query = query.where(User.last_goal_at.is_not(None))
    elif flt.kind == "never":
        query = query.where(User.last_weight_at.is_(None), User.last_goal_at.is_(None))
    if flt.search:
        # A substring search cannot use the email index; the range on last_active_at bounds the walk.
        query = query.where(User.email.ilike(f"%{_escape_like(flt.search.lower())}%", escape="\\"))
    return query


def _seek(query, cursor: Cursor, ascending: bool):
    """Rows strictly after the cursor in the given direction of (last_active_at, id).

    Written as `col >= x AND (col > x OR id > y)` rather than a row-value comparison so that
    both SQLite and PostgreSQL see a plain range on the indexed column.
    """
    at, user_id = cursor.last_active_at, cursor.user_id
    if ascending:
        return query.where(User.last_active_at >= at, sa.or_(User.last_active_at > at, User.id > user_id))
    return query.where(User.last_active_at <= at, sa.or_(User.last_active_at < at, User.id < user_id))


def _ordered(query, ascending: bool):
    if ascending:
        return query.order_by(User.last_active_at.asc(), User.id.asc())
    return query.order_by(User.last_active_at.desc(), User.id.desc())


@dataclass
class Page:
    users: list[User]
    next_cursor: Cursor | None
    prev_cursor: Cursor | None


def inactive_users_page(flt: InactiveFilter, now: datetime, size: int) -> Page:
    """One page of the inactive list, by keyset: LIMIT size+1 after (or before) the cursor."""
    # "Longest inactive first" is the oldest last_active_at first.
    forward = flt.sort == "longest"
    base = inactive_users_query(flt, now)
    if flt.before is not None:
        rows = list(
            db.session.scalars(_ordered(_seek(base, flt.before, not forward), not forward).limit(size + 1))
        )
        more_before = len(rows) > size
        users = list(reversed(rows[:size]))
        return Page(
            users,
            next_cursor=Cursor.of(users[-1]) if users else None,
            prev_cursor=Cursor.of(users[0]) if users and more_before else None,
        )
    query = base if flt.after is None else _seek(base, flt.after, forward)
    rows = list(db.session.scalars(_ordered(query, forward).limit(size + 1)))
    users = rows[:size]
    return Page(
        users,
        next_cursor=Cursor.of(users[-1]) if len(rows) > size else None,
        prev_cursor=Cursor.of(users[0]) if flt.after is not None and users else None,
    )


def iter_inactive_users(flt: InactiveFilter, now: datetime, batch: int = 1000):
    """Every user the filter lists, in its order, fetched by keyset in batches (for the CSV)."""
    forward = flt.sort == "longest"
    base = inactive_users_query(flt, now)
    cursor: Cursor | None = None
    while True:
        query = base if cursor is None else _seek(base, cursor, forward)
        rows = list(db.session.scalars(_ordered(query, forward).limit(batch)))
        yield from rows
        if len(rows) < batch:
            return
        cursor = Cursor.of(rows[-1])
        db.session.expunge_all()  # keep memory flat over a million rows


def latest_reminders(user_ids: list[int]) -> dict[int, Reminder]:
    """Each user's newest reminder (by id, which grows with time), in one indexed query."""
    if not user_ids:
        return {}
    newest = (
        db.select(sa.func.max(Reminder.id)).where(Reminder.user_id.in_(user_ids)).group_by(Reminder.user_id)
    )
    reminders = db.session.scalars(db.select(Reminder).where(Reminder.id.in_(newest)))
    return {reminder.user_id: reminder for reminder in reminders}


def emails_by_id(user_ids) -> dict[int, str]:
    """Emails of the given users (for "reminded by ..."), in one query."""
    ids = {user_id for user_id in user_ids if user_id is not None}
    if not ids:
        return {}
    return dict(db.session.execute(db.select(User.id, User.email).where(User.id.in_(ids))).all())


def reminder_state(user: User, latest: Reminder | None) -> str:
    """What the table says about a user's reminders: none, open, dismissed or reminders off."""
    if not user.reminders_enabled:
        return "reminders off"
    if latest is not None and latest.status in ("open", "dismissed"):
        return latest.status
    return "none"


def days_inactive(user: User, now: datetime) -> int:
    return max(0, (now - user.last_active_at).days)


@dataclass
class Overview:
    users: int
    active_7_days: int
    inactive: int
    open_reminders: int
    dismissed_this_week: int


def overview_counts(now: datetime, site_days: int) -> Overview:
    """The counts at the top of the page ("inactive" by each user's own setting).

    Inactive users are usually the many, so "inactive" is the total minus a count of the users
    still active by their own days (still_active_count_query: the recent end of each value's range),
    never a count over the long end. The total itself is one pass over
    the table (about 0.15 s for a million rows on PostgreSQL; see the module notes).
    """
    week_ago = now - timedelta(days=7)

    def count(*where) -> int:
        return db.session.scalar(db.select(sa.func.count()).select_from(User).where(*where)) or 0

    total = count()
    active_7 = count(User.last_active_at > week_ago)
    inactive = max(0, total - (db.session.scalar(still_active_count_query(now, site_days)) or 0))
    open_reminders = (
        db.session.scalar(
            db.select(sa.func.count()).select_from(Reminder).where(Reminder.open_for_user_id.is_not(None))
        )
        or 0
    )
    dismissed = (
        db.session.scalar(
            db.select(sa.func.count())
            .select_from(Reminder)
            .where(Reminder.ended_at >= week_ago, Reminder.status == "dismissed")
        )
        or 0
    )
    return Overview(total, active_7, inactive, open_reminders, dismissed)


def recent_admin_actions(actions: tuple[str, ...], limit: int = 10) -> list[AdminAction]:
    """The newest audit rows of the given kinds, with who did it to whom."""
    return list(
        db.session.scalars(
            db.select(AdminAction)
            .where(AdminAction.action.in_(actions))
            .order_by(AdminAction.created_at.desc(), AdminAction.id.desc())
            .options(sa.orm.joinedload(AdminAction.admin), sa.orm.joinedload(AdminAction.user))
            .limit(limit)
        )
    )

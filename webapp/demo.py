"""Sample data for a fresh install: people with weeks of backdated history, some of them gone quiet.

The rows are written the way the app itself would have written them over time, so the activity
clocks on each user (last_weight_at, last_goal_at, last_active_at, reminder_clock) agree with the
weights, goals and reminders below them, and the reminder scan treats them like anyone else.
"""

from __future__ import annotations

import random
import secrets
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta

import sqlalchemy as sa

from .extensions import db
from .models import GoalChange, Reminder, User, WeightEntry
from .timeutil import get_zone, utcnow

DEMO_DOMAIN = "example.com"
ADMIN_EMAIL = f"admin@{DEMO_DOMAIN}"
MIN_KG, MAX_KG = 35.0, 250.0
NOTES = ("after a run", "holiday week", "weighed after breakfast", "new scale", "felt great today")


@dataclass(frozen=True)
class Profile:
    """One sample person: how long they have used the app, where they are heading, when they stopped.

    `idle` is a number of days without any activity; `idle_past_threshold` adds REMINDER_AFTER_DAYS
    to it, so those people are inactive whatever the threshold is configured to.
    """

    name: str
    display_name: str
    unit: str
    timezone: str
    history_days: int
    start_kg: float | None
    goal_kg: float | None
    idle: int
    idle_past_threshold: bool = False
    reminders_enabled: bool = True
    dismissed_reminder: bool = False
    # A goal set this many days ago, after the weights stopped: stale weight, fresh goal.
    late_goal_days_ago: int | None = None
    kg_per_day: float = 0.0


PROFILES: tuple[Profile, ...] = (
    Profile("ada", "Ada", "kg", "Europe/London", 84, 84.0, 76.0, idle=0, kg_per_day=-0.08),
    Profile("grace", "Grace", "lb", "America/New_York", 63, 79.5, 72.5, idle=1, kg_per_day=-0.07),
    Profile("alan", "Alan", "kg", "Europe/Berlin", 56, 61.0, 66.0, idle=0, kg_per_day=0.05),
    Profile("katherine", "Katherine", "lb", "America/Chicago", 90, 68.0, 68.0, idle=2),
    Profile(
        "radia",
        "Radia",
        "kg",
        "Asia/Kolkata",
        60,
        72.0,
        67.0,
        idle=6,
        idle_past_threshold=True,
        kg_per_day=-0.05,
        late_goal_days_ago=2,
    ),
    Profile(
        "linus",
        "Linus",
        "kg",
        "Europe/Helsinki",
        42,
        91.0,
        84.0,
        idle=2,
        idle_past_threshold=True,
        kg_per_day=-0.09,
    ),
    Profile(
        "margaret",
        "Margaret",
        "lb",
        "America/Los_Angeles",
        70,
        70.0,
        64.0,
        idle=5,
        idle_past_threshold=True,
        kg_per_day=-0.06,
    ),
    Profile(
        "tim", "Tim", "kg", "Europe/Paris", 49, 88.0, 80.0, idle=14, idle_past_threshold=True, kg_per_day=-0.1
    ),
    Profile(
        "hedy",
        "Hedy",
        "kg",
        "Europe/Vienna",
        35,
        55.0,
        59.0,
        idle=25,
        idle_past_threshold=True,
        kg_per_day=0.06,
    ),
    Profile("dennis", "", "kg", "Asia/Tokyo", 0, None, None, idle=3, idle_past_threshold=True),
    Profile(
        "barbara",
        "Barbara",
        "kg",
        "Australia/Sydney",
        45,
        77.0,
        71.0,
        idle=10,
        idle_past_threshold=True,
        reminders_enabled=False,
        kg_per_day=-0.07,
    ),
    Profile(
        "edsger",
        "Edsger",
        "kg",
        "Europe/Amsterdam",
        40,
        95.0,
        88.0,
        idle=5,
        idle_past_threshold=True,
        dismissed_reminder=True,
        kg_per_day=-0.08,
    ),
)


@dataclass
class DemoResult:
    """What a demo run did, for the command to report."""

    users_created: list[str] = field(default_factory=list)
    users_skipped: list[str] = field(default_factory=list)
    entries_created: int = 0
    goals_created: int = 0
    reminders_opened: int = 0
    sample_password: str | None = None
    admin_password: str | None = None
    admin_skipped: bool = False


def generate_password() -> str:
    """A fresh random password to print once; never derived from --seed."""
    return secrets.token_urlsafe(12)


def _password_hash(password: str) -> str:
    """The hash User.set_password would store (same method, same cost)."""
    holder = User()
    holder.set_password(password)
    return holder.password_hash


def _local_morning(day: datetime, zone_name: str, rng: random.Random) -> datetime:
    """A plausible weigh-in time (06:00-09:00 local) on the given day, in UTC."""
    zone = get_zone(zone_name)
    local_day = day.astimezone(zone).date()
    minutes = rng.randint(6 * 60, 9 * 60)
    local = datetime.combine(local_day, time(minutes // 60, minutes % 60), tzinfo=zone)
    return local.astimezone(day.tzinfo)


def _weights(
    profile: Profile, start_kg: float, created_at: datetime, last_day: datetime, rng: random.Random
) -> list[dict]:
    """Weight rows from sign-up to the last active day: most days, a trend, daily noise."""
    rows: list[dict] = []
    days = (last_day.date() - created_at.date()).days
    for offset in range(days + 1):
        # Always the first and last day, so the history's ends are where the profile says.
        if 0 < offset < days and rng.random() < 0.25:
            continue
        measured_at = _local_morning(created_at + timedelta(days=offset), profile.timezone, rng)
        measured_at = min(max(measured_at, created_at), last_day)
        kg = start_kg + profile.kg_per_day * offset + rng.gauss(0.0, 0.35)
        kg = min(MAX_KG, max(MIN_KG, kg))
        note = rng.choice(NOTES) if rng.random() < 0.06 else ""
        rows.append(
            {
                "measured_at": measured_at,
                "mass_g": round(kg * 1000),
                "note": note,
                "created_at": measured_at,
                "updated_at": measured_at,
            }
        )
    rows.sort(key=lambda row: row["measured_at"])
    return rows


def _add_sample_user(
    profile: Profile,
    now: datetime,
    after_days: int,
    password_hash: str,
    rng: random.Random,
    result: DemoResult,
) -> None:
    idle_days = profile.idle + (after_days if profile.idle_past_threshold else 0)
    last_day = now - timedelta(days=idle_days, hours=rng.randint(0, 5))
    created_at = now - timedelta(days=max(profile.history_days, idle_days), hours=rng.randint(6, 12))
    created_at = min(created_at, last_day)
    user = User(
        email=f"{profile.name}@{DEMO_DOMAIN}",
        password_hash=password_hash,
        display_name=profile.display_name,
        unit=profile.unit,
        timezone=profile.timezone,
        reminders_enabled=profile.reminders_enabled,
        # Sample people at example.com: their banners show, but nobody is there to email.
        email_reminders=False,
        created_at=created_at,
    )
    db.session.add(user)
    db.session.flush()

    weights = (
        _weights(profile, profile.start_kg, created_at, last_day, rng) if profile.start_kg is not None else []
    )
    if weights:
        for row in weights:
            row["user_id"] = user.id
        # One executemany for the whole history rather than an ORM object per row.
        db.session.execute(sa.insert(WeightEntry), weights)
        result.entries_created += len(weights)
        user.last_weight_at = weights[-1]["measured_at"]

    goals: list[GoalChange] = []
    if profile.goal_kg is not None and weights:
        # The goal is set just after the first weigh-in, from that weight.
        first = weights[0]
        goals.append(
            GoalChange(
                user_id=user.id,
                target_g=round(profile.goal_kg * 1000),
                start_g=first["mass_g"],
                created_at=first["measured_at"] + timedelta(minutes=2),
            )
        )
    if profile.late_goal_days_ago is not None and profile.goal_kg is not None and weights:
        latest = weights[-1]
        goals.append(
            GoalChange(
                user_id=user.id,
                target_g=round((profile.goal_kg - 2) * 1000),
                start_g=latest["mass_g"],
                created_at=now - timedelta(days=profile.late_goal_days_ago, hours=3),
            )
        )
    db.session.add_all(goals)
    result.goals_created += len(goals)
    if goals:
        user.last_goal_at = max(goal.created_at for goal in goals)

    user.last_active_at = max(
        t for t in (created_at, user.last_weight_at, user.last_goal_at) if t is not None
    )
    user.reminder_clock = user.last_active_at if profile.reminders_enabled else None
    if profile.dismissed_reminder and profile.reminders_enabled:
        # Reminded once the quiet period ran out, dismissed a few days ago: the clock restarts there.
        opened = min(user.last_active_at + timedelta(days=after_days), now - timedelta(days=2))
        dismissed = min(opened + timedelta(days=1), now - timedelta(hours=1))
        db.session.add(
            Reminder(
                user_id=user.id,
                status="dismissed",
                open_for_user_id=None,
                inactive_since=user.last_active_at,
                source="scan",
                created_at=opened,
                ended_at=dismissed,
            )
        )
        user.reminder_clock = dismissed
    result.users_created.append(user.email)


def fill_demo_data(
    now: datetime | None = None, after_days: int = 7, seed: int | None = None, scan_reminders: bool = True
) -> DemoResult:
    """Add the sample users and the admin account that are missing; commits. Safe to run again."""
    from .reminders.lifecycle import scan

    now = now or utcnow()
    rng = random.Random(seed)
    result = DemoResult()
    emails = [f"{profile.name}@{DEMO_DOMAIN}" for profile in PROFILES] + [ADMIN_EMAIL]
    existing = set(db.session.scalars(db.select(User.email).where(User.email.in_(emails))))

    missing = [profile for profile in PROFILES if f"{profile.name}@{DEMO_DOMAIN}" not in existing]
    result.users_skipped = sorted(email for email in existing if email != ADMIN_EMAIL)
    if missing:
        result.sample_password = generate_password()
        # Every sample account shares one password, so one hash (not twelve slow ones) will do.
        password_hash = _password_hash(result.sample_password)
        for profile in missing:
            _add_sample_user(profile, now, after_days, password_hash, rng, result)

    if ADMIN_EMAIL in existing:
        result.admin_skipped = True
    else:
        result.admin_password = generate_password()
        admin = User(
            email=ADMIN_EMAIL,
            display_name="Admin",
            is_admin=True,
            created_at=now,
            last_active_at=now,
            reminder_clock=now,
        )
        admin.set_password(result.admin_password)
        db.session.add(admin)
    db.session.commit()

    if scan_reminders:
        result.reminders_opened = len(scan(now, after_days))
    return result

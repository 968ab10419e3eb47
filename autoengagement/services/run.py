"""The daily run: every due config claimed, its audience delivered, each business isolated from the others."""

import datetime as dt
import logging
import os
import socket
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from autoengagement.models import AutoEngagementConfig
from autoengagement.services import results
from autoengagement.services.audience import iter_audience_chunks
from autoengagement.services.delivery import ChunkTally, RunContext, deliver_chunk, fail_interrupted, plan_chunk
from autoengagement.services.scheduling import Due, schedule_for
from notifications.backends import get_backend
from notifications.backends.base import ChannelBackend
from notifications.models import NotificationLog

logger = logging.getLogger(__name__)

RunStatus = AutoEngagementConfig.RunStatus
Progress = Callable[["BusinessOutcome", int], None]


class UnknownBusinesses(Exception):
    def __init__(self, business_ids: Iterable[str]) -> None:
        self.business_ids = sorted(business_ids)
        super().__init__("unknown business or no auto-engagement config: " + ", ".join(self.business_ids))


class LeaseLost(Exception):
    """Another run took this config over (our lease expired): stop before sending anything more."""


@dataclass(kw_only=True)
class BusinessOutcome(ChunkTally):
    business_id: str
    config_id: str
    status: str
    local_date: str = ""
    error: str = ""


@dataclass
class RunSummary:
    outcomes: list[BusinessOutcome] = field(default_factory=list)
    dry_run: bool = False
    disabled: bool = False

    @property
    def failed_businesses(self) -> int:
        return sum(outcome.status == RunStatus.FAILED for outcome in self.outcomes)

    def as_dict(self) -> dict[str, object]:
        ran = [o for o in self.outcomes if o.status in (RunStatus.SUCCESS, RunStatus.FAILED, "dry_run")]
        return {
            "total_processed": len(ran),
            "total_notified": sum(o.notified for o in self.outcomes),
            "total_failed": self.failed_businesses,
            "total_missed": sum(o.status == RunStatus.MISSED for o in self.outcomes),
            "total_holdout": sum(o.holdout for o in self.outcomes),
            "notifications_sent": sum(o.sent for o in self.outcomes),
            "notifications_failed": sum(o.failed for o in self.outcomes),
            "notifications_skipped": sum(o.skipped for o in self.outcomes),
            "dry_run": self.dry_run,
            "disabled": self.disabled,
            "businesses": [asdict(o) for o in self.outcomes],
        }


@dataclass(frozen=True)
class Claim:
    config: AutoEngagementConfig | None
    status: str
    local_date: dt.date | None = None
    detail: str = ""


class BackendPool:
    """One opened backend per channel for the whole run, so connections and tokens are reused."""

    def __init__(self) -> None:
        self._backends: dict[str, ChannelBackend] = {}

    def __call__(self, channel: str) -> ChannelBackend:
        if channel not in self._backends:
            backend = get_backend(channel)
            backend.open()
            self._backends[channel] = backend
        return self._backends[channel]

    def close(self) -> None:
        for backend in self._backends.values():
            backend.close()
        self._backends.clear()


def _wall_clock() -> dt.datetime:
    return timezone.now()


def _lease_expiry() -> dt.datetime:
    return _wall_clock() + dt.timedelta(seconds=settings.AUTO_ENGAGEMENT_LEASE_SECONDS)


def new_run_owner() -> str:
    return f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def due_config_pks(*, now: dt.datetime) -> list[int]:
    """Configs whose send time has come (or passed too long ago, to be reported missed), or whose last run
    crashed today: the claim re-checks each under its row lock."""
    max_lateness = dt.timedelta(minutes=settings.AUTO_ENGAGEMENT_MAX_LATENESS_MINUTES)
    wall_clock = _wall_clock()
    due = []
    rows = AutoEngagementConfig.objects.filter(enabled=True).values_list(
        "pk", "run_time", "timezone", "last_run_local_date", "last_run_status", "lease_expires_at"
    )
    for pk, run_time, zone, last_local_date, status, lease_expires_at in rows.order_by("pk").iterator(2000):
        schedule = schedule_for(
            run_time=run_time,
            timezone_name=zone,
            last_run_local_date=last_local_date,
            now=now,
            max_lateness=max_lateness,
        )
        crashed = status == RunStatus.RUNNING and (lease_expires_at is None or lease_expires_at <= wall_clock)
        if schedule.state in (Due.DUE, Due.MISSED) or (crashed and schedule.state == Due.ALREADY_RAN):
            due.append(pk)
    return due


@transaction.atomic
def claim_config(*, config_pk: int, now: dt.datetime, owner: str, forced: bool = False) -> Claim:
    """Take a config for this run in one short transaction, or say why not.

    `forced` (--business) ignores the send time and lateness; the once-per-spell rule and the unique log
    constraint still make a double send impossible.
    """
    config = (
        AutoEngagementConfig.objects.select_for_update(skip_locked=True, of=("self",))
        .select_related("business")
        .filter(pk=config_pk)
        .first()
    )
    if config is None:
        return Claim(None, "busy", detail="another run is claiming it")
    wall_clock = _wall_clock()
    if not config.enabled:
        return Claim(config, "disabled")
    if config.is_leased(wall_clock):
        return Claim(config, "busy", detail="another run holds its lease")
    max_lateness = dt.timedelta(minutes=settings.AUTO_ENGAGEMENT_MAX_LATENESS_MINUTES)
    crashed = config.last_run_status == RunStatus.RUNNING
    schedule = schedule_for(
        run_time=config.run_time,
        timezone_name=config.timezone,
        last_run_local_date=None if forced else config.last_run_local_date,
        now=now,
        max_lateness=max_lateness,
    )
    state = schedule.state
    if crashed and config.last_run_local_date == schedule.local_date and not forced:
        # Resume a crashed run of today, within the same lateness bound as a first start.
        state = Due.DUE if now - schedule.send_at <= max_lateness else Due.MISSED
    if crashed:
        interrupted = fail_interrupted(config=config)
        logger.warning(
            "previous run was interrupted",
            extra={"business_id": config.business.business_id, "config_id": config.config_id, "rows": interrupted},
        )
    if forced and state != Due.DUE:
        state = Due.DUE
    if state == Due.MISSED:
        detail = (
            f"send time {config.run_time} {config.timezone} passed more than "
            f"{settings.AUTO_ENGAGEMENT_MAX_LATENESS_MINUTES} minutes ago; nothing sent today"
        )
        AutoEngagementConfig.objects.filter(pk=config.pk).update(
            last_run_status=RunStatus.MISSED,
            last_run_at=now,
            last_run_error=detail,
            last_run_local_date=schedule.local_date,
            lease_expires_at=None,
            lease_owner="",
            updated_at=wall_clock,
        )
        return Claim(config, RunStatus.MISSED, schedule.local_date, detail)
    if state != Due.DUE:
        return Claim(config, "not_due", schedule.local_date)
    config.mark_as_running(now=now, local_date=schedule.local_date, lease_expires_at=_lease_expiry(), owner=owner)
    # The day's rows are about to change: the stats count it (and any later day) from the log until refreshed.
    results.mark_stale_from(business_id=config.business_id, run_date=schedule.local_date)
    return Claim(config, "claimed", schedule.local_date)


def renew_lease(*, config: AutoEngagementConfig) -> None:
    renewed = AutoEngagementConfig.objects.filter(pk=config.pk, lease_owner=config.lease_owner).update(
        lease_expires_at=_lease_expiry()
    )
    if not renewed:
        raise LeaseLost(f"lease on {config.config_id} was taken over by another run")


def _context(config: AutoEngagementConfig, now: dt.datetime, local_date: dt.date) -> RunContext:
    return RunContext(
        config=config,
        business=config.business,
        now=now,
        run_date=local_date,
        template=config.get_message_template(),
    )


def run_config(
    *, claim: Claim, now: dt.datetime, backends: BackendPool, progress: Progress | None = None
) -> BusinessOutcome:
    """Deliver a claimed config's audience chunk by chunk, renewing the lease as it goes."""
    config = claim.config
    assert config is not None and claim.local_date is not None
    outcome = BusinessOutcome(
        business_id=config.business.business_id,
        config_id=config.config_id,
        status=RunStatus.SUCCESS,
        local_date=claim.local_date.isoformat(),
    )
    context = _context(config, now, claim.local_date)
    log_context = {"business_id": outcome.business_id, "config_id": outcome.config_id}
    results_day = (config.business_id, claim.local_date)
    try:
        for members in iter_audience_chunks(config=config, now=now, chunk_size=settings.AUTO_ENGAGEMENT_CHUNK_SIZE):
            try:
                outcome.add(deliver_chunk(context, members, backends))
            finally:
                # Again after the chunk's writes: a run that outlived its lease writes after the run that took
                # over refreshed the day, and this mark is what sends the day back to the log.
                results.mark_stale([results_day])
            renew_lease(config=config)
            if progress:
                progress(outcome, outcome.audience)
    except Exception as exc:
        outcome.status = RunStatus.FAILED
        outcome.error = f"{type(exc).__name__}: {exc}"
        logger.exception("business run failed", extra={**log_context, "error": outcome.error})
        if not isinstance(exc, LeaseLost):
            config.mark_as_failed(outcome.error)
        return outcome
    config.mark_as_completed(outcome.notified)
    _refresh_results_day(results_day, log_context)
    logger.info(
        "business run completed",
        extra={
            **log_context,
            "audience": outcome.audience,
            "notified": outcome.notified,
            "holdout": outcome.holdout,
            "sent": outcome.sent,
            "failed": outcome.failed,
            "skipped": outcome.skipped,
        },
    )
    return outcome


def _refresh_results_day(day: results.DayKey, log_context: dict[str, object]) -> None:
    """Summarise the run's day for the stats. A failure costs only speed (the stats count a stale day from the
    log), so it is logged and never turns a delivered run into a failed one."""
    try:
        results.refresh_days(business_id=day[0], run_dates=[day[1]])
    except Exception:
        logger.exception("results refresh failed; the stats count this day from the log", extra=log_context)


def _refresh_stale_results() -> None:
    """Summarise the days visits and deliveries changed since the last invocation (failures as above)."""
    try:
        results.refresh_stale_days()
    except Exception:
        logger.exception("results refresh failed; the stats count the stale days from the log")


def preview_config_run(*, config: AutoEngagementConfig, now: dt.datetime, local_date: dt.date) -> BusinessOutcome:
    """What a run would do now, writing and sending nothing."""
    outcome = BusinessOutcome(
        business_id=config.business.business_id,
        config_id=config.config_id,
        status="dry_run",
        local_date=local_date.isoformat(),
    )
    context = _context(config, now, local_date)
    for members in iter_audience_chunks(config=config, now=now, chunk_size=settings.AUTO_ENGAGEMENT_CHUNK_SIZE):
        rows, tally = plan_chunk(context, members)
        tally.notified = len({row.customer_id for row in rows if row.status == NotificationLog.Status.PENDING})
        tally.sent = sum(row.status == NotificationLog.Status.PENDING for row in rows)
        outcome.add(tally)
    return outcome


def run_due_configs(
    *,
    now: dt.datetime,
    business_ids: Iterable[str] | None = None,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> RunSummary:
    """Run every due config (or only the given businesses' configs, due or not)."""
    if settings.DISABLE_AUTO_ENGAGEMENT:
        logger.warning("auto-engagement is disabled (DISABLE_AUTO_ENGAGEMENT); nothing done")
        return RunSummary(dry_run=dry_run, disabled=True)
    forced = business_ids is not None
    if forced:
        wanted = set(business_ids)
        found = dict(
            AutoEngagementConfig.objects.filter(business__business_id__in=wanted).values_list(
                "business__business_id", "pk"
            )
        )
        if missing := wanted - set(found):
            raise UnknownBusinesses(missing)
        config_pks = sorted(found.values())
    else:
        config_pks = due_config_pks(now=now)
    summary = RunSummary(dry_run=dry_run)
    owner = new_run_owner()
    logger.info("run started", extra={"configs": len(config_pks), "dry_run": dry_run, "now": now.isoformat()})
    backends = BackendPool()
    try:
        for config_pk in config_pks:
            outcome = _run_one(
                config_pk=config_pk,
                now=now,
                owner=owner,
                forced=forced,
                dry_run=dry_run,
                backends=backends,
                progress=progress,
            )
            if outcome is not None:
                summary.outcomes.append(outcome)
                if progress:
                    progress(outcome, outcome.audience)
    finally:
        backends.close()
    if not dry_run:
        _refresh_stale_results()
    totals = summary.as_dict()
    totals.pop("businesses")
    logger.info("run finished", extra=totals)
    return summary


def _run_one(
    *,
    config_pk: int,
    now: dt.datetime,
    owner: str,
    forced: bool,
    dry_run: bool,
    backends: BackendPool,
    progress: Progress | None,
) -> BusinessOutcome | None:
    if dry_run:
        config = AutoEngagementConfig.objects.select_related("business").get(pk=config_pk)
        schedule = schedule_for(
            run_time=config.run_time,
            timezone_name=config.timezone,
            last_run_local_date=None if forced else config.last_run_local_date,
            now=now,
            max_lateness=dt.timedelta(minutes=settings.AUTO_ENGAGEMENT_MAX_LATENESS_MINUTES),
        )
        if schedule.state == Due.MISSED and not forced:
            return BusinessOutcome(
                business_id=config.business.business_id,
                config_id=config.config_id,
                status=RunStatus.MISSED,
                local_date=schedule.local_date.isoformat(),
                error="send time passed too long ago",
            )
        return preview_config_run(config=config, now=now, local_date=schedule.local_date)
    claim = claim_config(config_pk=config_pk, now=now, owner=owner, forced=forced)
    if claim.status == "claimed":
        return run_config(claim=claim, now=now, backends=backends, progress=progress)
    if claim.config is None or claim.status == "not_due":
        return None
    business_id = claim.config.business.business_id
    logger.info(
        "business not run",
        extra={
            "business_id": business_id,
            "config_id": claim.config.config_id,
            "status": claim.status,
            "detail": claim.detail,
        },
    )
    return BusinessOutcome(
        business_id=business_id,
        config_id=claim.config.config_id,
        status=claim.status,
        local_date=claim.local_date.isoformat() if claim.local_date else "",
        error=claim.detail,
    )

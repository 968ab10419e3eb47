"""The daily run: every due config claimed, its audience delivered, each business isolated from the others."""

import datetime as dt
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Protocol

from django.conf import settings
from django.db import DatabaseError, transaction
from django.utils import timezone

from autoengagement.models import AutoEngagementConfig
from autoengagement.services import results
from autoengagement.services.audience import iter_audience_chunks
from autoengagement.services.delivery import ChunkTally, RunContext, deliver_chunk, plan_chunk
from autoengagement.services.parts import helpable_config_pks, plan_parts, wait_for_parts, work_parts
from autoengagement.services.retries import close_day, next_retry_at, recover_interrupted, retry_due_rows
from autoengagement.services.scheduling import Due, Schedule, schedule_for
from engagement_site.logging import log_context
from notifications.backends import get_backend
from notifications.backends.base import ChannelBackend, CircuitBreaker
from notifications.models import NotificationLog
from webhooks.events import EventType
from webhooks.services import Subscriptions, write_events

logger = logging.getLogger(__name__)

RunStatus = AutoEngagementConfig.RunStatus


class Progress(Protocol):
    """What a progress display hears from a run: how many configs it looks at (known from the one read of due
    configs), a business's counts as they grow (after each chunk), and each config once it is done (None: it
    turned out not to be due)."""

    def started(self, total: int) -> None: ...

    def advanced(self, outcome: "BusinessOutcome") -> None: ...

    def finished(self, outcome: "BusinessOutcome | None") -> None: ...


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
    warnings: list[str] = field(default_factory=list)


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
            "notifications_retryable": sum(o.retryable for o in self.outcomes),
            "notifications_unknown": sum(o.unknown for o in self.outcomes),
            "notifications_skipped": sum(o.skipped for o in self.outcomes),
            "warnings": [f"{o.business_id}: {warning}" for o in self.outcomes for warning in o.warnings],
            "dry_run": self.dry_run,
            "disabled": self.disabled,
            "businesses": [_as_json(o) for o in self.outcomes],
        }


def _as_json(outcome: BusinessOutcome) -> dict[str, object]:
    data = asdict(outcome)
    data["retry_at"] = outcome.retry_at.isoformat() if outcome.retry_at else None
    return data


class ClaimStatus(StrEnum):
    """What a claim found: the config is this run's now, or why not (a missed day is also a run status)."""

    CLAIMED = "claimed"
    BUSY = "busy"
    DISABLED = "disabled"
    NOT_DUE = "not_due"
    MISSED = RunStatus.MISSED.value


@dataclass(frozen=True)
class Claim:
    config: AutoEngagementConfig | None
    status: ClaimStatus
    local_date: dt.date | None = None
    detail: str = ""
    # The day already has rows to finish: a crashed run's pending rows, or failed rows due for a retry.
    resume: bool = False
    send_at: dt.datetime | None = None
    warnings: tuple[str, ...] = ()
    # The day is split into this many parts that several workers share (services.parts); 0: one worker runs it.
    parts: int = 0


class BackendPool:
    """One opened backend per channel for the whole run, so connections and tokens are reused, each with the
    invocation's circuit breaker for that channel: a provider that keeps failing is not called again."""

    def __init__(self) -> None:
        self._backends: dict[str, ChannelBackend] = {}

    def __call__(self, channel: str) -> ChannelBackend:
        if channel not in self._backends:
            backend = get_backend(channel)
            backend.breaker = CircuitBreaker(threshold=settings.AUTO_ENGAGEMENT_BREAKER_THRESHOLD)
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


def _max_lateness() -> dt.timedelta:
    return dt.timedelta(minutes=settings.AUTO_ENGAGEMENT_MAX_LATENESS_MINUTES)


def config_schedule(config: dict[str, object] | AutoEngagementConfig, now: dt.datetime, *, forced: bool) -> Schedule:
    """Where `now` stands against the config's send time today (a model or a `values()` row of its fields);
    `forced` ignores that it already ran today."""
    get = config.get if isinstance(config, dict) else lambda name: getattr(config, name)
    return schedule_for(
        run_time=get("run_time"),
        timezone_name=get("timezone"),
        last_run_local_date=None if forced else get("last_run_local_date"),
        now=now,
        max_lateness=_max_lateness(),
    )


def due_config_pks(*, now: dt.datetime) -> list[int]:
    """Configs whose send time has come (or passed too long ago, to be reported missed), whose last run crashed
    today, whose run today left messages to retry that are due, that staff asked to run now, or whose running day
    has parts left for another worker: the claim re-checks each under its row lock."""
    wall_clock = _wall_clock()
    due = []
    rows = AutoEngagementConfig.objects.filter(enabled=True).values(
        "pk",
        "run_time",
        "timezone",
        "last_run_local_date",
        "last_run_status",
        "lease_expires_at",
        "retry_at",
        "run_requested_at",
    )
    for row in rows.order_by("pk").iterator(2000):
        schedule = config_schedule(row, now, forced=False)
        lease_expires_at = row["lease_expires_at"]
        crashed = row["last_run_status"] == RunStatus.RUNNING and (
            lease_expires_at is None or lease_expires_at <= wall_clock
        )
        retry_due = row["retry_at"] is not None and row["retry_at"] <= now and now - schedule.send_at <= _max_lateness()
        if (
            row["run_requested_at"] is not None
            or schedule.state in (Due.DUE, Due.MISSED)
            or (schedule.state == Due.ALREADY_RAN and (crashed or retry_due))
        ):
            due.append(row["pk"])
    return sorted({*due, *helpable_config_pks()})


@transaction.atomic
def claim_config(*, config_pk: int, now: dt.datetime, owner: str, forced: bool = False) -> Claim:
    """Take a config for this run in one short transaction, or say why not.

    `forced` (--business) ignores the send time and lateness; the once-per-spell rule and the unique log
    constraint still make a double send impossible. A claim first settles what the last run left: rows a crash
    left `sending` become `unknown`; rows of a day that can no longer be finished are closed (retries.close_day).
    """
    config = (
        AutoEngagementConfig.objects.select_for_update(skip_locked=True, of=("self",))
        .select_related("business")
        .filter(pk=config_pk)
        .first()
    )
    if config is None:
        return Claim(None, ClaimStatus.BUSY, detail="another run is claiming it")
    if not config.enabled:
        return Claim(config, ClaimStatus.DISABLED)
    if config.is_leased(_wall_clock()):
        return Claim(config, ClaimStatus.BUSY, detail="another run holds its lease")
    # A run staff requested from admin is run like --business: now, whatever the send time.
    forced = forced or config.run_requested_at is not None
    crashed = config.last_run_status == RunStatus.RUNNING
    schedule = config_schedule(config, now, forced=forced)
    unfinished = crashed or config.retry_at is not None
    resume = unfinished and config.last_run_local_date == schedule.local_date
    state = _claim_state(config, schedule, now=now, crashed=crashed, resume=resume, forced=forced)
    if unfinished:
        _settle_last_run(config, crashed=crashed, keep_day=resume and now - schedule.send_at <= _max_lateness())
    warnings = _skew_warnings(config, schedule)
    if state == Due.MISSED:
        detail = _record_missed(config, schedule, now=now)
        return Claim(config, ClaimStatus.MISSED, schedule.local_date, detail, warnings=warnings)
    if state != Due.DUE:
        return Claim(config, ClaimStatus.NOT_DUE, schedule.local_date, warnings=warnings)
    return _start_day(config, schedule, now=now, owner=owner, resume=resume, warnings=warnings)


def _settle_last_run(config: AutoEngagementConfig, *, crashed: bool, keep_day: bool) -> None:
    """What a crashed or unfinished run left: rows in the providers' hands become `unknown` (no run holds the day,
    so their outcome will never be recorded); the day is closed unless this claim resumes it."""
    interrupted = recover_interrupted(config=config)
    if interrupted or crashed:
        logger.warning(
            "previous run was interrupted",
            extra={"business_id": config.business.business_id, "config_id": config.config_id, "rows": interrupted},
        )
    if not keep_day:
        close_day(config=config)
        AutoEngagementConfig.objects.filter(pk=config.pk).update(retry_at=None)


def _record_missed(config: AutoEngagementConfig, schedule: Schedule, *, now: dt.datetime) -> str:
    """The day's send time passed too long ago: the day is recorded missed, nothing is sent. Returns why."""
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
        retry_at=None,
        updated_at=_wall_clock(),
    )
    return detail


def _start_day(
    config: AutoEngagementConfig,
    schedule: Schedule,
    *,
    now: dt.datetime,
    owner: str,
    resume: bool,
    warnings: tuple[str, ...],
) -> Claim:
    config.mark_as_running(now=now, local_date=schedule.local_date, lease_expires_at=_lease_expiry(), owner=owner)
    # The day's rows are about to change: the stats count it (and any later day) from the log until refreshed.
    results.mark_stale_from(business_id=config.business_id, run_date=schedule.local_date)
    # Planned in the claim's transaction, so a worker that waited on this row finds the parts as soon as it sees
    # the config running.
    parts = plan_parts(config=config, run_date=schedule.local_date, resume=resume)
    return Claim(
        config,
        ClaimStatus.CLAIMED,
        schedule.local_date,
        resume=resume,
        send_at=schedule.send_at,
        warnings=warnings,
        parts=parts,
    )


def _claim_state(
    config: AutoEngagementConfig, schedule: Schedule, *, now: dt.datetime, crashed: bool, resume: bool, forced: bool
) -> Due:
    """Whether to run now: the schedule's answer, except that a crashed run of today is resumed and a run that
    left retries is taken again once they are due, both within the same lateness bound as a first start."""
    if forced:
        return Due.DUE
    if not resume:
        return schedule.state
    if now - schedule.send_at > _max_lateness():
        return Due.MISSED if crashed else Due.ALREADY_RAN
    if crashed or config.retry_at <= now:
        return Due.DUE
    return Due.ALREADY_RAN


def _skew_warnings(config: AutoEngagementConfig, schedule: Schedule) -> tuple[str, ...]:
    if not schedule.clock_skew:
        return ()
    warning = (
        f"last run date {config.last_run_local_date} is after local today {schedule.local_date} "
        "(a mistyped --now or a clock step); scheduled as if it had not run today"
    )
    logger.warning(
        "last run date in the future",
        extra={
            "business_id": config.business.business_id,
            "config_id": config.config_id,
            "last_run_local_date": config.last_run_local_date.isoformat(),
            "local_today": schedule.local_date.isoformat(),
        },
    )
    return (warning,)


def renew_lease(*, config: AutoEngagementConfig) -> None:
    renewed = AutoEngagementConfig.objects.filter(pk=config.pk, lease_owner=config.lease_owner).update(
        lease_expires_at=_lease_expiry()
    )
    if not renewed:
        raise LeaseLost(f"lease on {config.config_id} was taken over by another run")


def _context(
    config: AutoEngagementConfig,
    now: dt.datetime,
    local_date: dt.date,
    send_at: dt.datetime | None = None,
    keep_alive: Callable[[], None] | None = None,
) -> RunContext:
    return RunContext(
        config=config,
        business=config.business,
        now=now,
        run_date=local_date,
        template=config.get_message_template(),
        retry_deadline=(send_at or now) + _max_lateness(),
        keep_alive=keep_alive,
    )


def lease_keeper(config: AutoEngagementConfig) -> Callable[[], None]:
    """Renews the config's lease when a third of it has gone by since the last renewal: a statement every few
    minutes at most, whatever the number of send windows."""
    renewed_at = time.monotonic()

    def keep_alive() -> None:
        nonlocal renewed_at
        if time.monotonic() - renewed_at >= settings.AUTO_ENGAGEMENT_LEASE_SECONDS / 3:
            renew_lease(config=config)
            renewed_at = time.monotonic()

    return keep_alive


def run_config(
    *, claim: Claim, now: dt.datetime, backends: BackendPool, progress: Progress | None = None
) -> BusinessOutcome:
    """Deliver a claimed config's audience chunk by chunk, renewing the lease as it goes; first, when the day
    already has rows to finish (a crash, or retries now due), send those."""
    config = claim.config
    assert config is not None and claim.local_date is not None
    outcome = BusinessOutcome(
        business_id=config.business.business_id,
        config_id=config.config_id,
        status=RunStatus.SUCCESS,
        local_date=claim.local_date.isoformat(),
        warnings=list(claim.warnings),
    )
    context = _context(config, now, claim.local_date, claim.send_at, keep_alive=lease_keeper(config))
    log_fields = {"business_id": outcome.business_id, "config_id": outcome.config_id}
    results_day = (config.business_id, claim.local_date)
    chunk_size = settings.AUTO_ENGAGEMENT_CHUNK_SIZE
    try:
        if claim.resume:
            try:
                outcome.add(retry_due_rows(context, backends, chunk_size=chunk_size))
            finally:
                results.mark_stale([results_day])
            renew_lease(config=config)
        if claim.parts:
            outcome.add(_run_parts(config, claim, now=now, backends=backends, progress=progress, outcome=outcome))
        else:
            _run_audience(context, outcome, backends=backends, progress=progress)
    except Exception as exc:
        outcome.status = RunStatus.FAILED
        outcome.error = f"{type(exc).__name__}: {exc}"
        logger.exception("business run failed", extra={**log_fields, "error": outcome.error})
        if not isinstance(exc, LeaseLost):
            # Rows may be left pending: the next invocation within the lateness bound takes the day up again.
            outcome.retry_from(now + dt.timedelta(minutes=settings.AUTO_ENGAGEMENT_RETRY_BACKOFF_MINUTES))
            outcome.retry_at = _day_retry_at(results_day, outcome.retry_at)
            _mark_finished(
                config,
                outcome,
                context.webhooks,
                lambda: config.mark_as_failed(outcome.error, count=outcome.notified, retry_at=outcome.retry_at),
            )
        return outcome
    outcome.retry_at = _day_retry_at(results_day, outcome.retry_at)
    _finish(config, outcome, context.webhooks)
    _refresh_results_day(results_day, log_fields)
    logger.info(
        "business run completed",
        extra={
            **log_fields,
            "status": outcome.status,
            **outcome.counts(),
        },
    )
    return outcome


def _run_audience(
    context: RunContext, outcome: BusinessOutcome, *, backends: BackendPool, progress: Progress | None
) -> None:
    """A whole business on this worker, chunk by chunk, renewing the lease after each."""
    config, day = context.config, (context.config.business_id, context.run_date)
    chunks = iter_audience_chunks(
        config=config, now=context.now, run_date=context.run_date, chunk_size=settings.AUTO_ENGAGEMENT_CHUNK_SIZE
    )
    for members in chunks:
        try:
            outcome.add(deliver_chunk(context, members, backends))
        finally:
            # Again after the chunk's writes: a run that outlived its lease writes after the run that took over
            # refreshed the day, and this mark is what sends the day back to the log.
            results.mark_stale([day])
        renew_lease(config=config)
        if progress:
            progress.advanced(outcome)


def _chunk_progress(outcome: BusinessOutcome, progress: Progress | None) -> Callable[[ChunkTally], None] | None:
    """For a split business: each chunk's counts added to what `outcome` has so far, shown as they grow (the
    outcome itself gets the parts' counts once, when they are all done)."""
    if progress is None:
        return None
    shown = BusinessOutcome(business_id=outcome.business_id, config_id=outcome.config_id, status=outcome.status)
    shown.add(outcome)

    def on_chunk(chunk: ChunkTally) -> None:
        shown.add(chunk)
        progress.advanced(shown)

    return on_chunk


def _run_parts(
    config: AutoEngagementConfig,
    claim: Claim,
    *,
    now: dt.datetime,
    backends: BackendPool,
    progress: Progress | None,
    outcome: BusinessOutcome,
) -> ChunkTally:
    """The coordinator's share of a split business: parts until all are done, then the day's summed counts."""
    day = (config.business_id, claim.local_date)

    def keep_alive() -> None:
        results.mark_stale([day])
        renew_lease(config=config)

    return wait_for_parts(
        config=config,
        run_date=claim.local_date,
        owner=config.lease_owner,
        context_for=lambda part_alive: _context(config, now, claim.local_date, claim.send_at, keep_alive=part_alive),
        backends=backends,
        keep_alive=keep_alive,
        on_chunk=_chunk_progress(outcome, progress),
    )


def help_run(
    *, config_pk: int, now: dt.datetime, owner: str, backends: BackendPool, progress: Progress | None = None
) -> BusinessOutcome | None:
    """Another run holds this config: take parts of its day, if it is split. The row lock waits for a claim in
    progress, whose transaction also plans the parts."""
    with transaction.atomic():
        config = (
            AutoEngagementConfig.objects.select_for_update(of=("self",))
            .select_related("business")
            .filter(pk=config_pk)
            .first()
        )
    if config is None or not config.is_leased(_wall_clock()) or config.last_run_local_date is None:
        return None
    run_date = config.last_run_local_date
    # The coordinator's clock, not this worker's: the same audience cut-off, sent_at and retry deadline.
    run_now = config.last_run_at or now
    send_at = config_schedule(config, run_now, forced=True).send_at
    outcome = BusinessOutcome(
        business_id=config.business.business_id,
        config_id=config.config_id,
        status="helped",
        local_date=run_date.isoformat(),
    )
    try:
        done, tally = work_parts(
            config=config,
            run_date=run_date,
            owner=owner,
            context_for=lambda part_alive: _context(config, run_now, run_date, send_at, keep_alive=part_alive),
            backends=backends,
            after_chunk=lambda: results.mark_stale([(config.business_id, run_date)]),
            on_chunk=_chunk_progress(outcome, progress),
        )
    except Exception as exc:
        # The part's lease runs out and another worker (the coordinator at the latest) takes it over.
        outcome.status, outcome.error = RunStatus.FAILED, f"{type(exc).__name__}: {exc}"
        logger.exception("part failed", extra={"business_id": outcome.business_id, "error": outcome.error})
        return outcome
    if not done:
        return None
    outcome.add(tally)
    logger.info("parts run", extra={"business_id": outcome.business_id, "parts": done, "notified": tally.notified})
    return outcome


def _day_retry_at(day: results.DayKey, planned: dt.datetime | None) -> dt.datetime | None:
    """When the day's messages waiting for a retry are next due: those this run planned and any an earlier run
    planned that this one did not reach yet (a forced run before they were due, say)."""
    try:
        waiting = next_retry_at(business_id=day[0], run_date=day[1])
    except DatabaseError:
        logger.exception("could not read the day's waiting retries")
        return planned
    return min((when for when in (planned, waiting) if when is not None), default=None)


def _mark_finished(
    config: AutoEngagementConfig,
    outcome: BusinessOutcome,
    webhooks: Subscriptions | None,
    mark: Callable[[], bool],
) -> None:
    """Record the run's end (`mark`: the config's mark_as_completed or mark_as_failed) and, when an endpoint of the
    business subscribes, its run.completed event in the same transaction (none when the lease was lost)."""
    if not webhooks or EventType.RUN_COMPLETED not in webhooks:
        mark()
        return
    with transaction.atomic():
        if mark():
            write_events(
                subscribed=webhooks,
                business_pk=config.business_id,
                event_type=EventType.RUN_COMPLETED,
                data=[run_completed_data(outcome)],
                timestamp=_wall_clock(),
            )


def run_completed_data(outcome: BusinessOutcome) -> dict[str, object]:
    """What run.completed says: the business's run, its status and counts (no error text: it may quote providers)."""
    return {
        "business_id": outcome.business_id,
        "config_id": outcome.config_id,
        "run_date": outcome.local_date,
        "status": outcome.status,
        **outcome.counts(),
        "retry_at": outcome.retry_at.isoformat() if outcome.retry_at else None,
    }


def _finish(config: AutoEngagementConfig, outcome: BusinessOutcome, webhooks: Subscriptions | None = None) -> None:
    """Success, or failed when a provider was unavailable: its breaker opened, or nothing was sent on a channel
    whose messages failed retryably (with attempts left or not) or ended unknown. Either way, messages left to
    retry are taken up again from `retry_at`."""
    unavailable = dict(outcome.unavailable)
    for channel, counts in outcome.channels.items():
        if counts["sent"] or channel in unavailable:
            continue
        retryable = counts["retryable"] + outcome.exhausted.get(channel, 0)
        if retryable:
            unavailable[channel] = f"provider unavailable: {retryable} retryable failures, none sent"
        elif counts["unknown"]:
            unavailable[channel] = f"provider not answering: {counts['unknown']} unknown outcomes, none sent"
    if not unavailable:
        _mark_finished(
            config, outcome, webhooks, lambda: config.mark_as_completed(outcome.notified, retry_at=outcome.retry_at)
        )
        return
    outcome.status = RunStatus.FAILED
    reasons = "; ".join(f"{channel}: {reason}" for channel, reason in sorted(unavailable.items()))
    if outcome.retry_at:
        later = f"{outcome.retryable} message(s) will be retried from {outcome.retry_at.isoformat()}"
    else:
        later = "no attempts left today"
    outcome.error = f"{reasons}; {later}"[:2000]
    logger.error("provider unavailable", extra={"business_id": outcome.business_id, "error": outcome.error})
    _mark_finished(
        config,
        outcome,
        webhooks,
        lambda: config.mark_as_failed(outcome.error, count=outcome.notified, retry_at=outcome.retry_at),
    )


def _refresh_results_day(day: results.DayKey, log_fields: dict[str, object]) -> None:
    """Summarise the run's day for the stats. A failure costs only speed (the stats count a stale day from the
    log), so it is logged and never turns a delivered run into a failed one."""
    try:
        results.refresh_days(business_id=day[0], run_dates=[day[1]])
    except Exception:
        logger.exception("results refresh failed; the stats count this day from the log", extra=log_fields)


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
    chunks = iter_audience_chunks(
        config=config, now=now, run_date=local_date, chunk_size=settings.AUTO_ENGAGEMENT_CHUNK_SIZE
    )
    for members in chunks:
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
    with log_context(run_id=owner):
        _run_configs(config_pks, summary, now=now, owner=owner, forced=forced, dry_run=dry_run, progress=progress)
    return summary


def _run_configs(
    config_pks: list[int],
    summary: RunSummary,
    *,
    now: dt.datetime,
    owner: str,
    forced: bool,
    dry_run: bool,
    progress: Progress | None,
) -> None:
    """Every config in turn, one backend pool for all, then the stale results days; every line carries the run id."""
    if progress:
        progress.started(len(config_pks))
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
                progress.finished(outcome)
    finally:
        backends.close()
    if not dry_run:
        _refresh_stale_results()
    totals = summary.as_dict()
    totals.pop("businesses")
    logger.info("run finished", extra=totals)


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
        schedule = config_schedule(config, now, forced=forced)
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
    if claim.status == ClaimStatus.CLAIMED:
        return run_config(claim=claim, now=now, backends=backends, progress=progress)
    if claim.status == ClaimStatus.BUSY:
        helped = help_run(config_pk=config_pk, now=now, owner=owner, backends=backends, progress=progress)
        if helped:
            return helped
    if claim.config is None or claim.status == ClaimStatus.NOT_DUE:
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
        warnings=list(claim.warnings),
    )


def request_runs(*, config_pks: Iterable[int], now: dt.datetime) -> int:
    """Ask for a run of these configs by the next invocation (admin's "Run now": never inside a web request)."""
    return AutoEngagementConfig.objects.filter(pk__in=list(config_pks), run_requested_at__isnull=True).update(
        run_requested_at=now
    )

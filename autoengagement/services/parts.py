"""One big business shared by several workers.

A business with more than AUTO_ENGAGEMENT_PART_SIZE customers has its day split into parts, key ranges of its
customers, planned in the claim's transaction by the run that claims the config (the coordinator). Every worker that
finds the config running (its own claim, or another run's: CronJob parallelism N, `--workers N`) takes parts one at a
time under a lease of their own and runs each part's audience exactly as a whole business is run: the once-per-spell
constraint, the holdout draw (per customer) and the guarded send windows are the same, so the split changes nothing
but who sends. A part whose worker died (its lease expired) is taken over: the rows its last window had in flight
become `unknown`, its pending rows are sent, then its audience. The coordinator waits for every part, sums their
counts and finishes the day as for any business; if the coordinator dies, the next claim of the day resumes the same
parts.
"""

import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Callable

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, Window
from django.db.models.functions import RowNumber
from django.utils import timezone

from autoengagement.models import AutoEngagementConfig, RunPart
from autoengagement.services.audience import iter_audience_chunks
from autoengagement.services.delivery import ChunkTally, RunContext, deliver_chunk
from autoengagement.services.retries import INTERRUPTED, day_rows, retry_due_rows
from notifications.backends.base import ChannelBackend
from notifications.models import NotificationLog
from wallet.models import Customer

logger = logging.getLogger(__name__)

Status = NotificationLog.Status
LAST_KEY = 2**63 - 1
# How often a coordinator whose parts are all taken looks again (for a part whose worker died).
WAIT_SECONDS = 1.0


def plan_parts(*, config: AutoEngagementConfig, run_date: dt.date, resume: bool) -> int:
    """The day's parts: those of the run being resumed (a crash, retries), else planned anew (a run of a day
    already completed, forced or requested, starts from fresh parts; earlier days' parts go); none for a business
    of at most PART_SIZE customers. The first part starts at key 0 and the last ends at the largest key, so
    customers created during the run fall in a part too. Returns how many parts the day has."""
    day_parts = RunPart.objects.filter(config=config, run_date=run_date)
    if resume and (existing := day_parts.count()):
        return existing
    # Earlier days' parts are finished or abandoned (their day was closed): only today's are kept.
    RunPart.objects.filter(config=config).delete()
    size = max(1, settings.AUTO_ENGAGEMENT_PART_SIZE)
    starts = _part_starts(business_id=config.business_id, size=size)
    if len(starts) <= 1:
        return 0
    starts[0] = 0
    ends = [start - 1 for start in starts[1:]] + [LAST_KEY]
    RunPart.objects.bulk_create(
        RunPart(config=config, run_date=run_date, number=number, first_customer=start, last_customer=end)
        for number, (start, end) in enumerate(zip(starts, ends, strict=True))
    )
    logger.info(
        "business split into parts",
        extra={"business_id": config.business.business_id, "config_id": config.config_id, "parts": len(starts)},
    )
    return len(starts)


def _part_starts(*, business_id: int, size: int) -> list[int]:
    """Every `size`-th customer key of the business (the first of each part), picked in the database: the claim's
    transaction never reads a big business's keys."""
    customers = Customer.objects.filter(business_id=business_id)
    positions = range(1, customers.count() + 1, size)
    if len(positions) <= 1:
        return []
    numbered = customers.annotate(position=Window(RowNumber(), order_by=F("pk").asc()))
    return sorted(numbered.filter(position__in=positions).values_list("pk", flat=True))


def helpable_config_pks() -> set[int]:
    """Configs running a split day with parts nobody has finished: another worker may take some."""
    return set(
        RunPart.objects.filter(done_at__isnull=True, config__enabled=True)
        .filter(_day_running())
        .values_list("config_id", flat=True)
        .distinct()
    )


def _day_running() -> Q:
    """The part's day is the one its config is running: a day closed meanwhile (its run gave up, or a later claim
    found it past the lateness bound) has no parts left to take or keep sending."""
    return Q(config__last_run_status=AutoEngagementConfig.RunStatus.RUNNING, run_date=F("config__last_run_local_date"))


def _lease_expiry() -> dt.datetime:
    return timezone.now() + dt.timedelta(seconds=settings.AUTO_ENGAGEMENT_LEASE_SECONDS)


@transaction.atomic
def claim_part(*, config: AutoEngagementConfig, run_date: dt.date, owner: str) -> tuple[RunPart | None, bool]:
    """The next part nobody works on (or whose worker's lease expired), taken for `owner`; and whether it was
    taken over from a worker that died."""
    part = (
        RunPart.objects.select_for_update(skip_locked=True, of=("self",))
        .filter(_day_running(), config=config, run_date=run_date, done_at__isnull=True)
        .filter(Q(owner="") | Q(lease_expires_at__lte=timezone.now()))
        .order_by("number")
        .first()
    )
    if part is None:
        return None, False
    taken_over = bool(part.owner)
    part.owner, part.lease_expires_at = owner, _lease_expiry()
    part.save(update_fields=["owner", "lease_expires_at"])
    return part, taken_over


class PartLost(Exception):
    """Another worker took the part over (this one was too slow to renew its lease), or its day was closed: stop
    sending it."""


def renew_part(part: RunPart, tally: ChunkTally | None = None) -> None:
    """The part's lease renewed (before each send window), with its counts so far after each chunk: a worker that
    takes the part over after this one died counts what it sent."""
    mine = RunPart.objects.filter(_day_running(), pk=part.pk, owner=part.owner, done_at__isnull=True)
    counts = {} if tally is None else {"tally": tally_as_json(tally)}
    if not mine.update(lease_expires_at=_lease_expiry(), **counts):
        raise PartLost(f"part {part.number} was taken over by another run, or its day was closed")


def run_part(
    part: RunPart,
    *,
    context: RunContext,
    backends: Callable[[str], ChannelBackend],
    taken_over: bool,
    after_chunk: Callable[[], None],
    on_chunk: Callable[[ChunkTally], None] | None = None,
) -> ChunkTally:
    """Send one part's audience (after what a dead worker left of it) and record its counts on the part;
    `on_chunk` hears each chunk's counts (a progress display)."""
    customers = (part.first_customer, part.last_customer)
    chunk_size = settings.AUTO_ENGAGEMENT_CHUNK_SIZE
    # What a worker that died had sent of the part, as of its last chunk.
    tally = tally_from_json(part.tally) if taken_over and part.tally else ChunkTally()
    if taken_over:
        recovered = _recover(part)
        logger.warning("part taken over", extra={"part": part.number, "rows": recovered})
        retried = retry_due_rows(context, backends, chunk_size=chunk_size, customers=customers)
        tally.add(retried)
        renew_part(part, tally)
        after_chunk()
        if on_chunk:
            on_chunk(retried)
    audience = iter_audience_chunks(
        config=context.config, now=context.now, run_date=context.run_date, chunk_size=chunk_size, customers=customers
    )
    for members in audience:
        chunk = deliver_chunk(context, members, backends)
        tally.add(chunk)
        renew_part(part, tally)
        after_chunk()
        if on_chunk:
            on_chunk(chunk)
    RunPart.objects.filter(pk=part.pk, owner=part.owner).update(
        done_at=timezone.now(), lease_expires_at=None, tally=tally_as_json(tally)
    )
    return tally


def _recover(part: RunPart) -> int:
    """The rows the dead worker's last window had in the provider's hands: `unknown`, never sent again."""
    return (
        day_rows(business_id=part.config.business_id, run_date=part.run_date)
        .filter(customer_id__gte=part.first_customer, customer_id__lte=part.last_customer, status=Status.SENDING)
        .update(status=Status.UNKNOWN, error=INTERRUPTED)
    )


def work_parts(
    *,
    config: AutoEngagementConfig,
    run_date: dt.date,
    owner: str,
    context_for: Callable[[Callable[[], None]], RunContext],
    backends: Callable[[str], ChannelBackend],
    after_chunk: Callable[[], None],
    on_chunk: Callable[[ChunkTally], None] | None = None,
) -> tuple[int, ChunkTally]:
    """Take and run parts of the day until none is left to take; return how many this worker ran, and their counts."""
    done, tally = 0, ChunkTally()
    while True:
        part, taken_over = claim_part(config=config, run_date=run_date, owner=owner)
        if part is None:
            return done, tally
        part.config = config

        def keep_alive(part: RunPart = part) -> None:
            renew_part(part)
            after_chunk()

        context = context_for(keep_alive)
        try:
            tally.add(
                run_part(
                    part,
                    context=context,
                    backends=backends,
                    taken_over=taken_over,
                    after_chunk=after_chunk,
                    on_chunk=on_chunk,
                )
            )
        except PartLost:
            # Too slow to renew: the worker that took it over finishes it; this one goes on with the next part.
            logger.warning("part lost to another worker", extra={"part": part.number})
            continue
        except Exception:
            # Given back at once rather than when its lease runs out: another worker takes it over.
            RunPart.objects.filter(pk=part.pk, owner=part.owner).update(lease_expires_at=timezone.now())
            raise
        done += 1


def wait_for_parts(
    *,
    config: AutoEngagementConfig,
    run_date: dt.date,
    owner: str,
    context_for: Callable[[Callable[[], None]], RunContext],
    backends: Callable[[str], ChannelBackend],
    keep_alive: Callable[[], None],
    sleep: Callable[[float], None] = time.sleep,
    on_chunk: Callable[[ChunkTally], None] | None = None,
) -> ChunkTally:
    """The coordinator: run parts until every part of the day is done (taking over any whose worker died), keeping
    the config's lease alive meanwhile; then the day's counts, summed over the parts."""
    while True:
        work_parts(
            config=config,
            run_date=run_date,
            owner=owner,
            context_for=context_for,
            backends=backends,
            after_chunk=keep_alive,
            on_chunk=on_chunk,
        )
        if not RunPart.objects.filter(config=config, run_date=run_date, done_at__isnull=True).exists():
            break
        keep_alive()
        sleep(WAIT_SECONDS)
    total = ChunkTally()
    day_parts = RunPart.objects.filter(config=config, run_date=run_date)
    for tally in day_parts.values_list("tally", flat=True):
        total.add(tally_from_json(tally))
    # Counted now: a later resume of the day (retries due) counts only what its own parts send.
    day_parts.update(tally={})
    return total


def tally_as_json(tally: ChunkTally) -> dict[str, object]:
    data = dataclasses.asdict(tally)
    data["retry_at"] = tally.retry_at.isoformat() if tally.retry_at else None
    return data


def tally_from_json(data: dict[str, object]) -> ChunkTally:
    retry_at = data.get("retry_at")
    return ChunkTally(**{**data, "retry_at": dt.datetime.fromisoformat(retry_at) if retry_at else None})

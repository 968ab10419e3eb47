"""What the wallet app announces, for the apps above it to react to (docs/architecture.md, "Signals").

Wallet knows nothing of notifications or win-back: when something happens here that they care about, a signal
says so and their receivers, connected in their AppConfig.ready(), do the rest. Every signal is sent with
`send` (not `send_robust`): a receiver's error propagates, so it rolls back what the sender was doing.
"""

import datetime as dt
from dataclasses import dataclass

from django.dispatch import Signal


@dataclass(frozen=True)
class Visit:
    """A visit that moves the customer's last activity forward, with the last activity it moves from."""

    customer_pk: int
    previous_activity_at: dt.datetime | None
    occurred_at: dt.datetime


# Sent by wallet.services.record_visits with sender=Business, business=, visits= (the Visits that move customers'
# last activity forward, in order; possibly none), inside its transaction while the customers' rows are locked and
# before their new last activity is written: a receiver reads `previous_activity_at` as the truth, and its writes
# commit or roll back with the visits.
visits_recorded = Signal()

# Sent by the PassKit web service (wallet.apple_web_service.latest_pass) with sender=WalletPass, wallet_pass=, once
# the device has been served the current pass. The view writes nothing itself, so it holds no transaction: a
# receiver that writes opens its own, short one.
pass_fetched = Signal()

# Sent by wallet.services.customer_erase with sender=Customer, business=, customer_pk=, inside its transaction once
# the customer's own row is emptied: a receiver anonymises what its app keeps of the customer (the rows stay, so the
# results stay exact), in a fixed number of queries, and its writes commit or roll back with the erasure.
customer_erased = Signal()

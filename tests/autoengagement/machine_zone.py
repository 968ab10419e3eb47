"""Run a block as on a machine whose local time zone is another one (TZ and time.tzset), then restore it: for checks
that what the project computes never depends on the zone of the machine it runs on."""

import contextlib
import os
import time
from collections.abc import Iterator


@contextlib.contextmanager
def machine_zone(name: str) -> Iterator[None]:
    saved = os.environ.get("TZ")
    os.environ["TZ"] = name
    time.tzset()
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = saved
        time.tzset()

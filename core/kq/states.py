"""Task states, spelled as Celery spells them so that results are readable by both."""

from __future__ import annotations

PENDING = "PENDING"
RECEIVED = "RECEIVED"
STARTED = "STARTED"
SUCCESS = "SUCCESS"
FAILURE = "FAILURE"
RETRY = "RETRY"
REVOKED = "REVOKED"

ALL_STATES = frozenset({PENDING, RECEIVED, STARTED, SUCCESS, FAILURE, RETRY, REVOKED})
#: States after which the result never changes again.
READY_STATES = frozenset({SUCCESS, FAILURE, REVOKED})
UNREADY_STATES = ALL_STATES - READY_STATES
EXCEPTION_STATES = frozenset({FAILURE, RETRY, REVOKED})

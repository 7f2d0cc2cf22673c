"""The tables of the ``django://`` result backend.

Results, counters and claims are three tables, so that a counter or a claim named like a task id
never touches that task's result. Counters and claims are looked up by ``key_hash`` (the SHA-256
of the name, in hex): names are compared exactly on every database (MySQL's default collations
ignore case and trailing spaces) and may be of any length; the name itself is kept beside it for
people reading the table.
"""

from __future__ import annotations

import hashlib

from django.db import models


def key_hash(name: str) -> str:
    """The lookup key of a counter or claim named ``name``."""
    return hashlib.sha256(name.encode()).hexdigest()


class TaskResult(models.Model):
    """One task's latest outcome, as the kernel encoded it (Celery's result meta)."""

    task_id = models.CharField(max_length=255, unique=True)
    #: ``SUCCESS``, ``FAILURE``, ``STARTED``, ``RETRY``, ``REVOKED``, ...
    state = models.CharField(max_length=50)
    #: The encoded result, stored as the kernel gives it.
    payload = models.BinaryField()
    #: After this moment the row reads as missing and ``cleanup()`` deletes it; null keeps it.
    expires_at = models.DateTimeField(null=True, blank=True, db_index=True)
    #: When it was last written, for people reading the table.
    date_done = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "task result"

    def __str__(self) -> str:
        return f"{self.task_id} {self.state}"


class Counter(models.Model):
    """A counter of ``incr()`` (chords count their finished header tasks with one)."""

    key_hash = models.CharField(max_length=64, unique=True)
    name = models.TextField()
    value = models.BigIntegerField()
    expires_at = models.DateTimeField(null=True, blank=True, db_index=True)

    def __str__(self) -> str:
        return f"{self.name} = {self.value}"


class Claim(models.Model):
    """A claim of ``claim()`` (unique tasks hold their key with one)."""

    key_hash = models.CharField(max_length=64, unique=True)
    name = models.TextField()
    holder = models.TextField()
    expires_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"{self.name} held by {self.holder}"

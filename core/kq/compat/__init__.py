"""Shims for code written against another task queue: :mod:`kq.compat.celery`."""

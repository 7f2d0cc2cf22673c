"""A Django app with a ``tasks`` module, for ``autodiscover_tasks``."""

"""Found and imported by ``kq_django.autodiscover_tasks()`` (a project's tasks would register on
its kq app here; this one only records that it was imported)."""

IMPORTED = True

"""The orders app's tasks, found by ``kq_django.autodiscover_tasks()``."""

from django.db import connection
from shopsite.kqapp import app

from .models import Order


@app.task(name="orders.confirm")
def confirm_order(order_id: int) -> dict:
    """Confirm an order. It reads the row the request created: sent with ``delay_on_commit``, it
    runs only once that row is committed, so ``Order.DoesNotExist`` cannot happen here."""
    order = Order.objects.get(pk=order_id)
    order.status = "confirmed"
    order.save(update_fields=["status"])
    return {"order": order.pk, "item": order.item, "quantity": order.quantity}


@app.task(name="orders.db_session")
def db_session() -> dict:
    """Diagnostics: whether this worker thread had a database connection open when the task
    started (kq-django closes it around every task when ``CONN_MAX_AGE`` is 0), and the server
    process (PostgreSQL pid) of the one it then uses."""
    open_at_start = connection.connection is not None
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    return {"open_at_start": open_at_start, "pid": pid}

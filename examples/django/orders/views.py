"""Two JSON endpoints: create an order (which a kq task confirms) and read its status."""

from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET, require_POST

from .models import Order
from .tasks import confirm_order

#: Most of one item an order may take; a larger order is refused (and rolled back).
STOCK = 10


class OutOfStock(Exception):
    pass


@require_POST
def create_order(request: HttpRequest) -> JsonResponse:
    """``POST /orders/`` with ``item`` and ``quantity``.

    The row is created and the confirmation task queued in one transaction. The task is sent
    when the transaction commits (``delay_on_commit``), so the worker always finds the row; when
    the transaction rolls back (here: out of stock, checked after the row was written), it is
    never sent at all.
    """
    item, quantity = request.POST["item"], int(request.POST.get("quantity", "1"))
    try:
        with transaction.atomic():
            order = Order.objects.create(item=item, quantity=quantity)
            confirm_order.delay_on_commit(order.pk)
            if quantity > STOCK:
                raise OutOfStock(f"only {STOCK} {item} in stock")
    except OutOfStock as exc:
        return JsonResponse({"error": str(exc)}, status=409)
    return JsonResponse({"order": order.pk, "status": order.status}, status=201)


@require_GET
def order_status(request: HttpRequest, pk: int) -> JsonResponse:
    order = Order.objects.filter(pk=pk).first()
    if order is None:
        return JsonResponse({"error": "no such order"}, status=404)
    return JsonResponse({"order": order.pk, "status": order.status})

from django.db import models


class Order(models.Model):
    """An order: created ``new`` by the web request, ``confirmed`` by the kq task."""

    item = models.CharField(max_length=100)
    quantity = models.PositiveIntegerField()
    status = models.CharField(max_length=20, default="new")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.quantity} x {self.item} ({self.status})"

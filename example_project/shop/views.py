"""The same order list written the naive way (N+1 queries) and the fixed way.

The naive views are deliberately wrong: they are what django-dbtuning exists to catch.
"""

from __future__ import annotations

from django.db.models import Count, Prefetch, QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from shop.models import Order, OrderItem, Product

PAGE_SIZE = 25


def index(request: HttpRequest) -> HttpResponse:
    return render(request, "shop/index.html")


def _page(request: HttpRequest) -> int:
    try:
        return max(1, int(request.GET.get("page", "1")))
    except ValueError:
        return 1


def _window(queryset: QuerySet[Order], request: HttpRequest) -> QuerySet[Order]:
    start = (_page(request) - 1) * PAGE_SIZE
    return queryset[start : start + PAGE_SIZE]


def orders_naive(request: HttpRequest) -> HttpResponse:
    # Every row then asks for its customer, organisation and items in the template.
    orders = _window(Order.objects.all(), request)
    return render(request, "shop/orders.html", {"orders": orders, "variant": "naive"})


def _fixed_orders() -> QuerySet[Order]:
    return Order.objects.select_related("customer__organisation").prefetch_related(
        Prefetch("items", queryset=OrderItem.objects.select_related("product"))
    )


def orders_fixed(request: HttpRequest) -> HttpResponse:
    orders = _window(_fixed_orders(), request)
    return render(request, "shop/orders.html", {"orders": orders, "variant": "fixed"})


def orders_json_naive(request: HttpRequest) -> JsonResponse:
    data = []
    for order in _window(Order.objects.all(), request):
        data.append(
            {
                "id": order.pk,
                "customer": order.customer.name,
                "organisation": order.customer.organisation.name,
                "items": order.items.count(),
                "status": order.status,
            }
        )
    return JsonResponse({"orders": data})


def orders_json_fixed(request: HttpRequest) -> JsonResponse:
    orders = _window(
        Order.objects.select_related("customer__organisation").annotate(
            item_count=Count("items")
        ),
        request,
    )
    data = [
        {
            "id": order.pk,
            "customer": order.customer.name,
            "organisation": order.customer.organisation.name,
            "items": order.item_count,  # type: ignore[attr-defined]
            "status": order.status,
        }
        for order in orders
    ]
    return JsonResponse({"orders": data})


def product_count(request: HttpRequest) -> JsonResponse:
    # One query: what the pool benchmark measures is connection handling, not SQL.
    return JsonResponse({"products": Product.objects.count()})

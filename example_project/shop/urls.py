from __future__ import annotations

from django.urls import path

from shop import views

urlpatterns = [
    path("", views.index, name="index"),
    path("orders/naive/", views.orders_naive, name="orders-naive"),
    path("orders/fixed/", views.orders_fixed, name="orders-fixed"),
    path("api/orders/naive/", views.orders_json_naive, name="orders-json-naive"),
    path("api/orders/fixed/", views.orders_json_fixed, name="orders-json-fixed"),
    path("api/products/count/", views.product_count, name="product-count"),
]

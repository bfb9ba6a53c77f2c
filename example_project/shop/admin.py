from __future__ import annotations

from django.contrib import admin

from shop.models import Customer, Order, OrderItem, Organisation, Product, Tag


class OrderItemInline(admin.TabularInline):
    model = OrderItem
    raw_id_fields = ["product"]
    extra = 0


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = ["id", "customer", "status", "created"]
    list_filter = ["status"]
    list_select_related = ["customer"]
    raw_id_fields = ["customer"]
    inlines = [OrderItemInline]


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    list_display = ["name", "email", "organisation"]
    list_select_related = ["organisation"]
    search_fields = ["name", "email"]


admin.site.register(Organisation)
admin.site.register(Product)
admin.site.register(Tag)

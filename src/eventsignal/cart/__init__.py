"""The shopping cart: eventsignal's example domain and its web app.

``python -m eventsignal.cart`` (or ``eventsignal cart``) serves it on http://127.0.0.1:8000/ with a
SQLite file in ``./data``; ``DATABASE_URL=postgresql://...`` moves it to PostgreSQL.
"""

from eventsignal.cart.domain import (
    AddToCart,
    Cart,
    CartPaid,
    CompletePurchase,
    Product,
    ProductAdded,
    ProductRemoved,
    RemoveFromCart,
    cart_config,
)

__all__ = [
    "AddToCart",
    "Cart",
    "CartPaid",
    "CompletePurchase",
    "Product",
    "ProductAdded",
    "ProductRemoved",
    "RemoveFromCart",
    "cart_config",
]

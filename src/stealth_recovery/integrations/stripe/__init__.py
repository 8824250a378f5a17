"""Stripe: the per-organization connection, signed webhooks, and Checkout for pay links."""

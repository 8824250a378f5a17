"""Merchant webhooks: the event outbox, signed delivery with retries, endpoints and their log."""

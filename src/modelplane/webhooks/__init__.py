"""Webhooks: lifecycle events delivered as signed HTTP POSTs, so alerts can start retraining."""

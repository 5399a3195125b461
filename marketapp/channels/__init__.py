"""Outbound channels: SMS gateways and SMTP (portal mail goes through the REST client)."""

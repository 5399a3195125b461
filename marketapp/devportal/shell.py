"""The CRM shell pages on the portal hosts (filled in later)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("devportal_shell", __name__)

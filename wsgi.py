"""WSGI entry point for gunicorn: ``gunicorn wsgi:app``."""

from marketapp import create_app

app = create_app()

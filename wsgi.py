"""WSGI entry point (``wsgi:app``) for servers other than ``marketapp run``.

A threaded server that reads request bodies in its worker threads (gunicorn ``gthread``) must sit
behind a buffering reverse proxy, or slow clients can hold every thread; ``marketapp run``
(waitress, see ``marketapp.server``) needs none.
"""

from marketapp import create_app

app = create_app()

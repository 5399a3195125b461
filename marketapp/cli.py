"""``marketapp``: run the app, its workers, the portal emulator, migrations and benchmarks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any

import click
from flask import Flask

from marketapp.scenarios.cli import scenarios
from marketapp.scenarios.launch_cli import launches
from marketapp.scenarios.schedule_cli import schedules


def _app() -> Flask:
    from marketapp import create_app

    return create_app()


@click.group()
def main() -> None:
    """Smart Scenarios for Bitrix24."""


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Migrate the database to REVISION."""
    from marketapp.db import get_db
    from marketapp.migrate import upgrade

    app = _app()
    with app.app_context():
        upgrade(get_db().engine, revision)
    click.echo(f"database at {revision}")


@db.command("revision")
@click.argument("message")
def db_revision(message: str) -> None:
    """Autogenerate a migration from the models (for developers)."""
    from marketapp.db import get_db
    from marketapp.migrate import revision

    app = _app()
    with app.app_context():
        revision(get_db().engine, message)


@main.group()
def portals() -> None:
    """Installed portals."""


@portals.command("list")
def portals_list() -> None:
    """Show every portal with its status (never its tokens)."""
    from sqlalchemy import select

    from marketapp.db import db_session
    from marketapp.models import Portal

    with _app().app_context():
        for portal in db_session().scalars(select(Portal).order_by(Portal.id)):
            click.echo(
                f"{portal.member_id}  {portal.domain}  {portal.status}  "
                f"installed={portal.installed}"
            )


@portals.command("sync")
@click.argument("member_id")
def portals_sync(member_id: str) -> None:
    """Make MEMBER_ID's robots, placements and event handlers match the manifest."""
    from marketapp.db import db_session
    from marketapp.lifecycle.install import find_portal, sync_portal
    from marketapp.lifecycle.registration import SyncError

    with _app().app_context():
        session = db_session()
        portal = find_portal(session, member_id)
        if portal is None:
            raise click.ClickException(f"no portal with member_id {member_id}")
        try:
            report = sync_portal(session, portal)
        except SyncError as exc:
            raise click.ClickException(f"registration incomplete: {exc.failures}") from exc
    click.echo("changed: " + (", ".join(report.applied) or "nothing"))


@main.command()
@click.option("--workers", default=None, type=int, help="Worker threads (default: configuration).")
def worker(workers: int | None) -> None:
    """Run job consumers until interrupted."""
    from marketapp.config import get_config
    from marketapp.jobs import get_jobs

    app = _app()
    with app.app_context():
        config = get_config()
        consumer = get_jobs().huey.create_consumer(
            workers=workers or config.jobs_workers, worker_type="thread", periodic=True
        )
    consumer.run()


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True)
@click.option("--workers", default=2, show_default=True, help="web server processes")
@click.option("--embedded-worker/--no-embedded-worker", default=True, show_default=True)
@click.option(
    "--migrate/--no-migrate", default=True, show_default=True, help="upgrade the database first"
)
@click.option(
    "--devportal",
    "devportal_port",
    type=int,
    default=None,
    help="also run the portal emulator on this port, with the app registered (local trial)",
)
def run(
    host: str,
    port: int,
    workers: int,
    embedded_worker: bool,
    migrate: bool,
    devportal_port: int | None,
) -> None:
    """Migrate, then serve the app (waitress, WORKERS processes on one socket; see
    marketapp.server), plus a job worker for one-machine setups."""
    from marketapp.config import get_config
    from marketapp.db import get_db
    from marketapp.migrate import upgrade
    from marketapp.server import Limits, bind, serve

    children = []
    if devportal_port:
        children.append(_start_devportal(host, port, devportal_port))
    app = _app()
    with app.app_context():
        if migrate:
            upgrade(get_db().engine)
        get_db().engine.dispose()  # each web process opens its own connections
        limits = Limits.from_config(get_config())
    sock = bind(host, port)
    if embedded_worker:
        children.append(_spawn("worker"))
    try:
        click.echo(
            f"serving on http://{host}:{port} ({workers} processes x {limits.threads} threads)"
        )
        serve(_app, sock, workers, limits)
    finally:
        _stop(children)


def _start_devportal(host: str, port: int, devportal_port: int) -> subprocess.Popen[Any]:
    """Point this app at a local emulator (set before the configuration loads) and start it."""
    from marketapp.config import load_config, write_devportal_env

    config = load_config()
    public_url = f"http://{host}:{port}"
    secret = config.client_secret.get_secret_value() or _dev_secret(config.instance_path)
    local = {
        "MARKETAPP_PUBLIC_URL": public_url,
        "MARKETAPP_CLIENT_SECRET": secret,
        "MARKETAPP_OAUTH_HOSTS": f"127.0.0.1:{devportal_port}",
        "MARKETAPP_ALLOW_INSECURE_LOOPBACK": "true",
        "MARKETAPP_BX24_JS_URL": f"http://127.0.0.1:{devportal_port}/bx24.js",
    }
    os.environ.update(local)
    write_devportal_env(config.instance_path, local)  # other commands on this instance follow
    return _spawn(
        "devportal",
        f"--port={devportal_port}",
        f"--app-url={public_url}/",
        f"--app-installer-url={public_url}/install",
        f"--app-client-id={config.client_id}",
    )


def _dev_secret(instance: Any) -> str:
    """A client secret shared by the local app and emulator, kept in the instance folder."""
    import secrets

    path = instance / "devportal_client_secret"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return str(path.read_text().strip())


def _spawn(*args: str) -> subprocess.Popen[Any]:
    cmd = [sys.executable, "-m", "marketapp.cli", *args]
    return subprocess.Popen(cmd, env=os.environ.copy())  # noqa: S603 (our own interpreter)


def _stop(children: list[subprocess.Popen[Any]]) -> None:
    for child in children:
        child.send_signal(signal.SIGTERM)
    for child in children:
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()


@main.command()
@click.option("--port", default=8100, show_default=True, help="one port for every address")
@click.option(
    "--portals", default="standard,enterprise", show_default=True, help="plans, one per portal"
)
@click.option("--seed", default=1, show_default=True, help="random seed (ids, tokens, data)")
@click.option("--records", default=50, show_default=True, help="seeded contacts per portal")
@click.option("--limits/--no-limits", default=True, show_default=True, help="REST limits")
@click.option("--tls", is_flag=True, help="serve HTTPS with a generated self-signed certificate")
@click.option("--app-url", default="", help="register an app with this handler URL")
@click.option("--app-installer-url", default="", help="its installer URL (default: the handler)")
@click.option("--app-client-id", default="local.marketapp", show_default=True)
@click.option(
    "--app-client-secret", default="", help="default: MARKETAPP_CLIENT_SECRET or generated"
)
@click.option(
    "--app-scopes", default="crm,placement,bizproc,user,task,im,messageservice", show_default=True
)
def devportal(
    port: int,
    portals: str,
    seed: int,
    records: int,
    limits: bool,
    tls: bool,
    app_url: str,
    app_installer_url: str,
    app_client_id: str,
    app_client_secret: str,
    app_scopes: str,
) -> None:
    """Run the Bitrix24 portal emulator alone (OAuth on 127.0.0.1, portals on 127.0.0.2...)."""
    from marketapp.devportal import DevportalServer
    from marketapp.devportal.lifecycle import install_app
    from marketapp.devportal.seed import seed_portal

    config = {"seed": seed, "limits_enabled": limits, "portals": portals.split(",")}
    server = DevportalServer(config, port=port, tls=tls, quiet=False).start()
    emu = server.emulator
    for portal in emu.portals:
        seed_portal(emu, portal, records)
    if app_url:
        secret = app_client_secret or os.environ.get("MARKETAPP_CLIENT_SECRET", "")
        app = emu.register_app(
            client_id=app_client_id,
            client_secret=secret or emu.alnum(40),
            code="smart_scenarios",
            handler_url=app_url,
            installer_url=app_installer_url or app_url,
            scopes=app_scopes.split(","),
        )
        click.echo(f"app {app.client_id} registered (its secret: GET {server.url}/_emulator/state)")
    click.echo(f"OAuth server and inspection API: {server.url}/  (/_emulator/state)")
    for portal in emu.portals:
        base = server.portal_url(portal.index + 1)
        click.echo(f"portal {portal.index + 1} ({portal.plan}): {base}/crm/contact/list/")
        if app_url:
            # As if the admin clicked "Install" in the Market: opening the app runs its installer.
            install_app(emu, portal, app.client_id)
            click.echo(f"  install the app (as admin): {base}/marketplace/app/{app.client_id}/")
    server.serve_forever()


@main.group()
def bench() -> None:
    """Benchmarks on loopback."""


@bench.command("robots")
@click.option("--requests", "count", default=5000, show_default=True, help="distinct robot calls")
@click.option("--concurrency", default=16, show_default=True, help="client connections")
@click.option("--repeats", default=0.1, show_default=True, help="share of repeated deliveries")
@click.option("--database-url", default="", help="PostgreSQL URL (a temporary schema is used)")
@click.option("--processes", default=2, show_default=True, help="web server processes")
@click.option("--threads", default=8, show_default=True, help="threads per process")
@click.option("--time-limit", default=300.0, show_default=True, help="seconds per phase")
def bench_robots(
    count: int,
    concurrency: int,
    repeats: float,
    database_url: str,
    processes: int,
    threads: int,
    time_limit: float,
) -> None:
    """Robot call ingestion vs. parsing alone, served like `marketapp run` serves the app."""
    from marketapp.bench import run_robots_bench

    report = run_robots_bench(
        requests=count,
        concurrency=concurrency,
        database_url=database_url,
        repeat_share=repeats,
        time_limit=time_limit,
        processes=processes,
        threads=threads,
        echo=click.echo,
    )
    if not report.check_ok:
        sys.exit(1)


@bench.command("preview")
@click.option("--contacts", default=10_000, show_default=True, help="contacts to seed")
@click.option("--scenario", default="re-engagement-offer", show_default=True, help="library key")
def bench_preview(contacts: int, scenario: str) -> None:
    """A library scenario's preview over N seeded contacts on the emulator."""
    from marketapp.bench_preview import run_preview_bench

    run_preview_bench(contacts, scenario, echo=click.echo)


@bench.command("launch")
@click.option("--contacts", default=10_000, show_default=True, help="contacts to launch on")
@click.option("--steps", default="email,sms", show_default=True, help="steps, comma-separated")
@click.option("--memory", default="", help="sizes for peak worker RSS (limits off): 1000,10000")
@click.option("--database-url", default="", help="the app's database (default: SQLite)")
@click.option("--fast-bitrix24/--no-fast-bitrix24", "fast", default=True, show_default=True)
def bench_launch(contacts: int, steps: str, memory: str, database_url: str, fast: bool) -> None:
    """A launch on N contacts under the standard plan's limits vs. the floor and fast-bitrix24."""
    from marketapp.bench_launch import run_launch_bench

    sizes = [int(s) for s in memory.split(",") if s.strip()]
    run_launch_bench(contacts, steps.split(","), sizes, database_url, fast, echo=click.echo)


# `marketapp scenarios …` lives with the scenarios (list, show, diff, validate, export, import).
main.add_command(scenarios)
main.add_command(launches)
main.add_command(schedules)


if __name__ == "__main__":
    main()

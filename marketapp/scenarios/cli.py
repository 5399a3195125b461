"""``marketapp scenarios …``: list, show, compare, validate, export and import scenarios.

Every command that touches stored scenarios names its portal (``--portal MEMBER_ID``).
``--json`` prints one JSON document on stdout, errors included; an error exits 1 with its
reasons (field paths and messages), never a traceback.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, Any, NoReturn

import click

if TYPE_CHECKING:
    from flask import Flask
    from sqlalchemy.orm import Session

    from marketapp.models import Portal, ScenarioVersion
    from marketapp.scenarios.definition import Problem, ScenarioDefinition


def _app() -> Flask:
    from marketapp import create_app

    return create_app()


portal_option = click.option("--portal", "member_id", required=True, help="the portal's member_id")
json_option = click.option("--json", "as_json", is_flag=True, help="machine-readable output")
language_option = click.option(
    "--language",
    type=click.Choice(["en", "ru"]),
    default=None,
    help="language of error messages (default: the portal's, else en)",
)


@click.group()
def scenarios() -> None:
    """Scenarios of a portal: versions, validation, import and export."""


@scenarios.command("list")
@portal_option
@json_option
def list_command(member_id: str, as_json: bool) -> None:
    """Every scenario of the portal with its current version."""
    from marketapp.scenarios import versions

    with _portal_session(member_id, as_json) as (session, portal):
        rows = []
        for scenario in versions.list_scenarios(session, portal):
            current = _current(session, portal, scenario.key)
            rows.append(
                {
                    "key": scenario.key,
                    "active": scenario.active,
                    "version": current.number if current else None,
                    "versions": versions.version_count(session, scenario),
                    "name": _name(current.definition if current else {}, portal.language),
                }
            )
    if as_json:
        _print_json(rows)
        return
    if not rows:
        click.echo("no scenarios")
    for row in rows:
        state = "active" if row["active"] else "inactive"
        click.echo(f"{row['key']}  v{row['version']}/{row['versions']}  {state}  {row['name']}")


@scenarios.command("show")
@click.argument("key")
@portal_option
@click.option("--version", "number", type=int, default=None, help="default: the current one")
@json_option
def show_command(key: str, member_id: str, number: int | None, as_json: bool) -> None:
    """A scenario's versions and the definition of one of them."""
    from marketapp.scenarios import versions

    with _portal_session(member_id, as_json) as (session, portal):
        scenario = versions.get_scenario(session, portal, key)
        shown = versions.get_version(session, portal, key, number)
        history = [
            _version_row(v, scenario.current_version_id)
            for v in versions.list_versions(session, portal, key)
        ]
        doc = {
            "key": key,
            "active": scenario.active,
            "version": shown.number,
            "versions": history,
            "definition": shown.definition,
        }
    if as_json:
        _print_json(doc)
        return
    click.echo(f"{key}  {_name(shown.definition, portal.language)}")
    for row in history:
        mark = "*" if row["current"] else " "
        author = row["author_id"] if row["author_id"] is not None else "-"
        click.echo(
            f" {mark} v{row['number']}  {row['created_at']}  author {author}  {row['digest'][:12]}"
        )
    click.echo(f"definition of v{shown.number}:")
    click.echo(json.dumps(shown.definition, ensure_ascii=False, indent=2))


@scenarios.command("deactivate")
@click.argument("key")
@portal_option
@click.option(
    "--enrollments",
    type=click.Choice(["keep", "drop"]),
    required=True,
    help="keep: the records in it sleep until reactivation; drop: they are stopped",
)
@json_option
def deactivate_command(key: str, member_id: str, enrollments: str, as_json: bool) -> None:
    """Turn a scenario off; its running launches sleep or stop."""
    from marketapp.scenarios import activation, versions

    with _portal_session(member_id, as_json) as (session, portal):
        scenario = versions.get_scenario(session, portal, key)
        doc = activation.deactivate(
            session, portal, scenario, "keep" if enrollments == "keep" else "drop"
        )
    if as_json:
        _print_json(doc)
    else:
        click.echo(f"{key}: inactive; sleeping {doc['sleeping']}, dropped {doc['dropped']}")


@scenarios.command("activate")
@click.argument("key")
@portal_option
@json_option
def activate_command(key: str, member_id: str, as_json: bool) -> None:
    """Turn a scenario on; its sleeping launches run again."""
    from marketapp.scenarios import activation, versions

    with _portal_session(member_id, as_json) as (session, portal):
        doc = activation.activate(session, portal, versions.get_scenario(session, portal, key))
    if as_json:
        _print_json(doc)
    else:
        click.echo(f"{key}: active; woken {doc['woken']}")


@scenarios.command("diff")
@click.argument("key")
@click.argument("a", type=int)
@click.argument("b", type=int)
@portal_option
@json_option
def diff_command(key: str, a: int, b: int, member_id: str, as_json: bool) -> None:
    """What changed from version A to version B of KEY."""
    from marketapp.scenarios import versions

    with _portal_session(member_id, as_json) as (session, portal):
        old = versions.get_version(session, portal, key, a)
        new = versions.get_version(session, portal, key, b)
        changes = versions.diff(old, new)
    if as_json:
        _print_json([c.describe() for c in changes])
        return
    for change in changes:
        click.echo(str(change))
    if not changes:
        click.echo("no changes")


@scenarios.command("validate")
@click.argument("file", type=click.File("rb"))
@click.option(
    "--portal", "member_id", default=None, help="also check the portal has its fields and constants"
)
@language_option
@json_option
def validate_command(
    file: IO[bytes], member_id: str | None, language: str | None, as_json: bool
) -> None:
    """Check FILE (an exported document or a bare definition; - reads stdin)."""
    from flask_babel import force_locale

    from marketapp.scenarios import transfer
    from marketapp.scenarios.definition import definition_digest, requirements

    data = file.read()
    app = _app()
    with app.app_context(), _reported(as_json):
        missing = transfer.Missing()
        if member_id is None:
            defn = transfer.read_definition(data, language=language or "en")
        else:
            session, portal = _open_portal(member_id)
            lang = language or portal.language
            defn = transfer.read_definition(data, language=lang)
            missing = _missing(session, portal, defn, lang)
            if missing:
                with force_locale(lang):  # the messages, not only the lookup
                    problems = missing.problems()
                _fail(problems, as_json, missing=missing.describe())
        doc = {
            "valid": True,
            "key": defn.key,
            "digest": definition_digest(defn),
            "requires": transfer.describe_requirements(requirements(defn)),
        }
    if as_json:
        _print_json(doc)
    else:
        click.echo(f"valid: {doc['key']} (digest {str(doc['digest'])[:12]})")


@scenarios.command("export")
@click.argument("key")
@portal_option
@click.option("--version", "number", type=int, default=None, help="default: the current one")
@click.option("--output", "-o", type=click.File("w"), default="-", help="default: stdout")
@json_option
def export_command(
    key: str, member_id: str, number: int | None, output: IO[str], as_json: bool
) -> None:
    """Write KEY (its current version, or --version) as a JSON document (--json: errors too)."""
    from marketapp.scenarios import transfer

    with _portal_session(member_id, as_json) as (session, portal):
        document = transfer.export_document(session, portal, key, number)
    output.write(transfer.dumps(document))


@scenarios.command("import")
@click.argument("file", type=click.File("rb"))
@portal_option
@language_option
@json_option
def import_command(file: IO[bytes], member_id: str, language: str | None, as_json: bool) -> None:
    """Import FILE as the scenario's next version, or nothing at all if anything is missing."""
    from marketapp.bitrix.client import client_for
    from marketapp.scenarios import transfer

    data = file.read()
    with _portal_session(member_id, as_json) as (session, portal):
        result = transfer.import_document(
            session, portal, data, client_for(portal), language=language or portal.language
        )
        doc = _imported_row(result)
    if as_json:
        _print_json(doc)
    elif doc["created"]:
        click.echo(f"imported {doc['key']} as version {doc['version']}")
    else:
        click.echo(f"unchanged: {doc['key']} version {doc['version']} already has this definition")


@scenarios.command("library")
@click.option("--language", type=click.Choice(["en", "ru"]), default="en", show_default=True)
@json_option
def library_command(language: str, as_json: bool) -> None:
    """The ready-made scenarios shipped with the app."""
    from marketapp.scenarios.definition import listing

    with _app().app_context(), _reported(as_json):
        rows = [listing(defn, language) for defn in _library(language)]
    if as_json:
        _print_json(rows)
        return
    for row in rows:
        click.echo(f"{row['key']}  {row['name']}  ({', '.join(row['entity_types'])})")


@scenarios.command("install-library")
@portal_option
@click.option("--update", is_flag=True, help="also replace scenarios the portal changed since")
@json_option
def install_library_command(member_id: str, update: bool, as_json: bool) -> None:
    """Save the shipped scenarios, in the portal's language (again: nothing changes).

    Each one is saved even when the portal still lacks a constant or field it uses; those
    are listed, to be set before a launch.
    """
    from marketapp.bitrix.client import client_for
    from marketapp.scenarios import transfer, versions

    with _portal_session(member_id, as_json) as (session, portal):
        library = _library(portal.language)
        # Ask the portal first: its client writes (tokens, rate buckets) in its own session.
        client = client_for(portal)
        lacking = {d.key: transfer.missing_on(session, portal, d, client) for d in library}
        rows: list[dict[str, Any]] = []
        for defn in library:
            before = versions.latest_version(session, portal, defn.key)
            saved = before if before is not None and not update else None
            if saved is None:
                saved = versions.save(session, portal, defn)
            outcome = "installed" if before is None else "kept"
            if before is not None and saved.number > before.number:
                outcome = "updated"
            row: dict[str, Any] = {"key": defn.key, "version": saved.number, "outcome": outcome}
            if lacking[defn.key]:
                row["missing"] = lacking[defn.key].describe()
            rows.append(row)
        session.commit()
    if as_json:
        _print_json(rows)
        return
    for row in rows:
        click.echo(f"{row['outcome']}: {row['key']} v{row['version']}")
        if "missing" in row:
            click.echo(f"  the portal lacks: {_lacks(row['missing'])}")


@scenarios.command("constants")
@portal_option
@json_option
def constants_command(member_id: str, as_json: bool) -> None:
    """The portal's constants (``const.<code>`` in templates) with their types."""
    from marketapp.scenarios.constants import list_constants

    with _portal_session(member_id, as_json) as (session, portal):
        rows = [
            {"code": c.code, "type": c.type, "value": c.value, "label": c.label}
            for c in list_constants(session, portal)
        ]
    if as_json:
        _print_json(rows)
        return
    if not rows:
        click.echo("no constants")
    for row in rows:
        click.echo(f"{row['code']} ({row['type']}) = {row['value']!r}  {row['label']}".rstrip())


@scenarios.command("set-constant")
@click.argument("code")
@click.argument("value")
@portal_option
@click.option("--label", default="", help="what it is, for the admin pages")
@click.option(
    "--type",
    "kind",
    type=click.Choice(["string", "integer", "decimal", "boolean", "date"]),
    default=None,
    help="the value's type (default: the constant's current type, string for a new one)",
)
@json_option
def set_constant_command(
    code: str, value: str, member_id: str, label: str, kind: str | None, as_json: bool
) -> None:
    """Create or change the constant CODE (VALUE must be of its type)."""
    from marketapp.scenarios.constants import set_constant

    with _portal_session(member_id, as_json) as (session, portal):
        row = set_constant(session, portal, code, value, label, kind)
        shown = {"code": row.code, "type": row.type, "value": row.value}
        session.commit()
    if as_json:
        _print_json(shown)
    else:
        click.echo(f"{code} set ({shown['type']}: {shown['value']!r})")


@scenarios.command("unset-constant")
@click.argument("code")
@portal_option
@json_option
def unset_constant_command(code: str, member_id: str, as_json: bool) -> None:
    """Delete the constant CODE (scenarios that use it stop validating on import)."""
    from marketapp.scenarios.constants import delete_constant

    with _portal_session(member_id, as_json) as (session, portal):
        deleted = delete_constant(session, portal, code)
        session.commit()
    if as_json:
        _print_json({"code": code, "deleted": deleted})
    else:
        click.echo(f"{code} deleted" if deleted else f"no constant {code}")


@scenarios.command("test")
@portal_option
@click.option("--key", required=True, help="the scenario's key")
@click.option("--version", "number", type=int, default=None, help="default: the current one")
@click.option("--entity", "entity_type", required=True, help="CONTACT, COMPANY, DEAL or LEAD")
@click.option("--id", "entity_id", type=int, required=True, help="the record to test on")
@click.option("--mode", type=click.Choice(["dry", "redirect"]), default="dry", show_default=True)
@click.option("--email", "test_email", default="", help="redirect: the test e-mail address")
@click.option("--phone", "test_phone", default="", help="redirect: the test phone number")
@click.option("--param", "raw_params", multiple=True, help="a launch value, KEY=VALUE")
@json_option
def test_command(
    member_id: str,
    key: str,
    number: int | None,
    entity_type: str,
    entity_id: int,
    mode: str,
    test_email: str,
    test_phone: str,
    raw_params: tuple[str, ...],
    as_json: bool,
) -> None:
    """Run a scenario on one record now, step by step (waits fast-forwarded), and print the
    test log: dry (no side effect) or redirect (e-mail and SMS to the test address and number)."""
    from marketapp.scenarios import versions
    from marketapp.scenarios.testmode import TestModeError, run_test

    params: dict[str, str] = {}
    for item in raw_params:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--param")
        params[name.strip()] = value
    with _portal_session(member_id, as_json) as (session, portal):
        version = versions.get_version(session, portal, key, number)
        try:
            run = run_test(
                session,
                portal,
                version,
                entity_type,
                entity_id,
                mode=mode,
                test_email=test_email,
                test_phone=test_phone,
                params=params,
            )
        except TestModeError as exc:
            raise click.ClickException(str(exc)) from None
        doc: dict[str, Any] = {
            "id": run.id,
            "mode": run.mode,
            "outcome": run.outcome,
            "log": run.log,
        }
    if as_json:
        _print_json(doc)
        return
    for entry in doc["log"]:
        where = f"{entry['step']} {entry['type']}".strip() or "-"
        click.echo(f"{entry['at'][:16]}  {where}  {entry['kind']}  {entry['message']}")
    click.echo(f"test run {doc['id']} ({doc['mode']}): {doc['outcome']}")


# --- helpers ----------------------------------------------------------------------------


@contextmanager
def _portal_session(member_id: str, as_json: bool) -> Iterator[tuple[Session, Portal]]:
    app = _app()
    with app.app_context(), _reported(as_json):
        yield _open_portal(member_id)


def _open_portal(member_id: str) -> tuple[Session, Portal]:
    from marketapp.db import db_session
    from marketapp.lifecycle.install import find_portal

    session = db_session()
    portal = find_portal(session, member_id)
    if portal is None:
        raise click.ClickException(f"no portal with member_id {member_id}")
    return session, portal


@contextmanager
def _reported(as_json: bool) -> Iterator[None]:
    """Expected failures become their reasons and exit 1."""
    from sqlalchemy.exc import SQLAlchemyError

    from marketapp.bitrix.errors import BitrixError
    from marketapp.scenarios.constants import ConstantError
    from marketapp.scenarios.definition import DefinitionError, Problem
    from marketapp.scenarios.transfer import TransferError
    from marketapp.scenarios.versions import NotFound

    try:
        yield
    except TransferError as exc:
        _fail(exc.problems, as_json, missing=exc.missing.describe() if exc.missing else None)
    except DefinitionError as exc:
        _fail(exc.problems, as_json)
    except ConstantError as exc:
        _fail([Problem("", str(exc))], as_json)
    except NotFound as exc:
        _fail([Problem("", str(exc))], as_json)
    except click.ClickException as exc:
        _fail([Problem("", exc.format_message())], as_json)
    except BitrixError as exc:
        _fail([Problem("", f"the portal refused the call: {exc}")], as_json)
    except SQLAlchemyError as exc:
        message = f"database error ({type(exc).__name__}); run `marketapp db upgrade` first?"
        _fail([Problem("", message)], as_json)


def _fail(
    problems: list[Problem], as_json: bool, missing: dict[str, Any] | None = None
) -> NoReturn:
    if as_json:
        doc: dict[str, Any] = {
            "error": True,
            "problems": [{"path": p.path, "message": p.message} for p in problems],
        }
        if missing:
            doc["missing"] = missing
        _print_json(doc)
    else:
        for p in problems:
            click.echo(
                f"Error: {p.path}: {p.message}" if p.path else f"Error: {p.message}", err=True
            )
    sys.exit(1)


def _missing(session: Session, portal: Portal, defn: Any, language: str) -> Any:
    from flask_babel import force_locale

    from marketapp.bitrix.client import client_for
    from marketapp.scenarios import transfer

    with force_locale(language):
        return transfer.missing_on(session, portal, defn, client_for(portal))


def _library(language: str) -> list[ScenarioDefinition]:
    from marketapp.scenarios.library import load_library

    return load_library(language)


def _current(session: Session, portal: Portal, key: str) -> ScenarioVersion | None:
    from marketapp.scenarios import versions

    try:
        return versions.get_version(session, portal, key)
    except versions.NotFound:
        return None


def _version_row(version: ScenarioVersion, current_id: int | None) -> dict[str, Any]:
    return {
        "number": version.number,
        "current": version.id == current_id,
        "digest": version.digest,
        "author_id": version.author_id,
        "created_at": version.created_at.isoformat(timespec="seconds"),
    }


def _imported_row(result: Any) -> dict[str, Any]:
    version = result.version
    return {
        "key": version.definition.get("key"),
        "version": version.number,
        "digest": version.digest,
        "created": result.created,
    }


def _lacks(missing: dict[str, Any]) -> str:
    parts = [f"constant {code}" for code in missing["constants"]]
    parts += [f"{e} field {n}" for e, names in missing["fields"].items() for n in names]
    parts += [f"contact/company field {n}" for n in missing["client_fields"]]
    return ", ".join(parts)


def _name(definition: dict[str, Any], language: str) -> str:
    name = definition.get("name")
    if isinstance(name, dict):
        return str(name.get(language) or name.get("en") or next(iter(name.values()), ""))
    return str(name or "")


def _print_json(value: Any) -> None:
    click.echo(json.dumps(value, ensure_ascii=False, indent=2))

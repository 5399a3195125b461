"""The job queue: a small face over Huey.

Jobs are plain functions registered with :func:`job`. :func:`enqueue` never sends at once: it
parks the call on the current database session and sends it only after that session commits,
so a job never runs for work whose transaction rolled back. Every job runs inside an app
context with its own database session.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Flask, current_app
from huey import Huey, RedisHuey, SqliteHuey, crontab
from huey.api import TaskWrapper
from sqlalchemy import event
from sqlalchemy.orm import Session

from marketapp.config import Config
from marketapp.db import db_session


@dataclass(frozen=True)
class JobSpec:
    func: Callable[..., Any]
    retries: int
    retry_delay: int
    # For periodic jobs: run every this many minutes (consumers started with periodic=True).
    every_minutes: int = 0


_registry: dict[str, JobSpec] = {}


def job(
    retries: int = 0, retry_delay: int = 0
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a function as a job under its dotted name."""

    def register(func: Callable[..., Any]) -> Callable[..., Any]:
        _registry[job_name(func)] = JobSpec(func, retries, retry_delay)
        return func

    return register


def periodic(every_minutes: int) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a function without arguments to run every ``every_minutes`` minutes."""

    def register(func: Callable[..., Any]) -> Callable[..., Any]:
        _registry[job_name(func)] = JobSpec(func, 0, 0, every_minutes)
        return func

    return register


def job_name(func: Callable[..., Any]) -> str:
    return f"{func.__module__}.{func.__qualname__}"


class Jobs:
    """The app's Huey instance with every registered job bound to it."""

    def __init__(self, app: Flask, config: Config) -> None:
        immediate = config.jobs_immediate
        self.huey: Huey
        if config.redis_url and not immediate:
            self.huey = RedisHuey("marketapp", url=config.redis_url)
        else:
            self.huey = SqliteHuey(
                "marketapp", filename=str(config.instance_path / "jobs.db"), immediate=immediate
            )
        self.tasks: dict[str, TaskWrapper] = {}
        self.retry_delay = config.jobs_retry_delay
        for name, spec in _registry.items():
            self._bind(app, name, spec)

    def _bind(self, app: Flask, name: str, spec: JobSpec) -> None:
        @functools.wraps(spec.func)
        def run_in_app(*args: Any, **kwargs: Any) -> Any:
            with app.app_context():
                return spec.func(*args, **kwargs)

        if spec.every_minutes:
            schedule = crontab(minute=f"*/{spec.every_minutes}")
            self.tasks[name] = self.huey.periodic_task(schedule, name=spec.func.__qualname__)(
                run_in_app
            )
            return
        self.tasks[name] = self.huey.task(
            retries=spec.retries,
            retry_delay=spec.retry_delay if self.retry_delay is None else self.retry_delay,
            name=spec.func.__qualname__,
        )(run_in_app)

    def send(self, name: str, args: tuple[Any, ...], delay: float = 0) -> None:
        if delay and not self.huey.immediate:
            self.tasks[name].schedule(args=args, delay=delay)
        else:
            self.tasks[name](*args)

    def pending_count(self) -> int:
        return int(self.huey.pending_count())


def init_app(app: Flask, config: Config) -> Jobs:
    _import_job_modules()
    jobs = Jobs(app, config)
    app.extensions["marketapp.jobs"] = jobs
    return jobs


def get_jobs() -> Jobs:
    jobs: Jobs = current_app.extensions["marketapp.jobs"]
    return jobs


def enqueue(
    func: Callable[..., Any], *args: Any, session: Session | None = None, delay: float = 0
) -> None:
    """Queue ``func(*args)`` to run after ``session`` (default: this context's) commits,
    ``delay`` seconds later."""
    name = job_name(func)
    if name not in _registry:
        raise KeyError(f"{name} is not a registered job")
    target = session or db_session()
    jobs = get_jobs()  # bound now: the commit may happen after this app context is gone
    target.info.setdefault("pending_jobs", []).append((jobs, name, args, delay))


@event.listens_for(Session, "after_commit")
def _send_after_commit(session: Session) -> None:
    pending = session.info.pop("pending_jobs", [])
    for jobs, name, args, delay in pending:
        jobs.send(name, args, delay)


@event.listens_for(Session, "after_rollback")
def _drop_after_rollback(session: Session) -> None:
    session.info.pop("pending_jobs", None)


def _import_job_modules() -> None:
    """Import the modules that define jobs so that they register before binding."""
    for module in JOB_MODULES:
        importlib.import_module(module)


# Modules that define jobs; each later area appends its own.
JOB_MODULES: list[str] = [
    "marketapp.lifecycle.install",
    "marketapp.robots",
    "marketapp.sms_status",
    "marketapp.scenarios.engine",
    "marketapp.scenarios.launches",
    "marketapp.consent",
    "marketapp.scenarios.schedules",
]

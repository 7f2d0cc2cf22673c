"""Options shared by several commands, and how they become an App."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import click

from ..app import App
from ..loader import load_app

LOG_FORMAT = "[%(asctime)s %(levelname)s %(processName)s] %(message)s"


def app_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``-A/--app``, ``-b/--broker`` and ``--result-backend``, in that order of precedence."""
    command = click.option(
        "--result-backend",
        metavar="URL",
        envvar=None,
        help="Result backend URL (overrides the app and KQ_RESULT_BACKEND).",
    )(command)
    command = click.option(
        "-b", "--broker", metavar="URL", help="Broker URL (overrides the app and KQ_BROKER_URL)."
    )(command)
    command = click.option(
        "-A",
        "--app",
        "app_spec",
        metavar="MODULE[:APP]",
        help="The app to use, e.g. proj.tasks:app. Without it, an app with "
        "default settings (and KQ_* variables) is used.",
    )(command)
    return command


def make_app(app_spec: str | None, broker: str | None, result_backend: str | None) -> App:
    app = load_app(app_spec) if app_spec else App("kq")
    app.override(broker_url=broker, result_backend=result_backend)
    return app


def setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT)

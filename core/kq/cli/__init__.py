"""The ``kq`` command line. Plugins add subcommands through the ``kq_cli_commands`` hook."""

from __future__ import annotations

import sys

import click

from ..exceptions import KQError
from ..plugins import get_plugins
from .beat import beat
from .control import control, inspect, queues, status
from .dashboard import dashboard
from .demo import demo
from .dlq import dlq
from .events import events
from .plugin_new import plugin_group
from .plugins import plugins_command
from .tasks import call, purge, result
from .worker import worker


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="kq", prog_name="kq")
def cli() -> None:
    """kq: a distributed task queue.

    Start a worker with `kq worker -A module:app`, send a task by name with `kq call`, read a
    result with `kq result`, publish periodic tasks with `kq beat`. `kq demo` shows all of it on
    a throwaway SQLite file.
    Settings come from the app, then KQ_* environment variables (KQ_BROKER_URL, ...), then flags.
    """


for command in (
    worker,
    beat,
    call,
    result,
    purge,
    inspect,
    control,
    status,
    queues,
    events,
    dashboard,
    plugins_command,
    plugin_group,
    demo,
    dlq,
):
    cli.add_command(command)


def main() -> None:
    """Entry point of the ``kq`` script: plugin commands added, errors shown in one line."""
    try:
        get_plugins().pm.hook.kq_cli_commands(cli=cli)
        cli.main(prog_name="kq", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KQError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)

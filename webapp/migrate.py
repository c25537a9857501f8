"""`flask db ...` (Flask-Migrate), set up only when a `db` command actually runs.

Importing Flask-Migrate imports Alembic, which imports Mako and Pygments: about a tenth of the
app's import time, paid by every web worker at every start and deploy for commands that only the
CLI runs. This group stands in for Flask-Migrate's: the first time click asks it for a command
(to run it or to list them), it initialises Flask-Migrate for the app, which replaces this group
with the real one, and hands over.
"""

from __future__ import annotations

import click
from flask import Flask


class LazyMigrateGroup(click.Group):
    def __init__(self, app: Flask, directory: str):
        super().__init__(name="db", help="Perform database migrations (Flask-Migrate).")
        self._app = app
        self._directory = directory
        self._real: click.Group | None = None

    def real(self) -> click.Group:
        if self._real is None:
            from flask_migrate import Migrate

            from .extensions import db

            Migrate(self._app, db, directory=self._directory, render_as_batch=True)
            command = self._app.cli.commands["db"]
            assert isinstance(command, click.Group)
            self._real = command
        return self._real

    def make_context(self, info_name, args, parent=None, **extra) -> click.Context:
        # The real group parses its own options (-d, -x) and runs its own callback from here on.
        return self.real().make_context(info_name, args, parent=parent, **extra)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return self.real().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return self.real().get_command(ctx, cmd_name)

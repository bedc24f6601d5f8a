"""The root `tskcfg` click group, the options every command shares, and the way to the server."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from config_service import __version__
from config_service.cli._errors import USAGE, CommandFailed, failure_for
from config_service.names import InvalidName
from tskcfg import AdminClient, ConfigError
from tskcfg._settings import DEFAULT_SERVER

F = TypeVar("F", bound=Callable[..., Any])
TOKEN_FILE_NAME = "admin.token"


def discover_token(given: str | None, environ: Mapping[str, str] | None = None) -> str | None:
    """--token (or TSKCFG_TOKEN, through click), else the admin token a local server wrote
    ($TSKCFG_DATA_DIR/admin.token, by default ./data/admin.token), else no token."""
    if given and given.strip():
        return given.strip()
    env = os.environ if environ is None else environ
    data_dir = Path(env.get("TSKCFG_DATA_DIR") or "data")
    try:
        text = (data_dir / TOKEN_FILE_NAME).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return text or None


@dataclass
class State:
    """What the global options say, shared with every command through click's context."""

    server: str = DEFAULT_SERVER
    token: str | None = None
    json: bool = False
    has_token: bool = False

    def api(self) -> AdminClient:
        """A client for the server; the token is looked up only now, so offline commands never read it."""
        token = discover_token(self.token)
        self.has_token = token is not None
        try:
            return AdminClient(self.server, token)
        except ValueError:
            raise CommandFailed(
                f"the server URL {self.server!r} is not valid: give --server http://host:port",
                exit_code=USAGE,
                error="usage",
                json_output=self.json,
            ) from None

    def failure(self, error: ConfigError | InvalidName) -> CommandFailed:
        """How a command ends when the client raised `error`."""
        return failure_for(error, json_output=self.json, has_token=self.has_token)


SERVER_HELP = "The config server, or several as URL,URL (env TSKCFG_SERVER)."
TOKEN_HELP = (
    "Bearer token (env TSKCFG_TOKEN; else ./data/admin.token, or $TSKCFG_DATA_DIR/admin.token, when it exists)."
)
JSON_HELP = "Print the API's JSON instead of text for people."


# click hands a group's options only to the group: parsing stops at the command's name, and what
# follows belongs to the command. So each command repeats the global options, with no default of
# its own. Wherever they stand, the options only set `State` through these callbacks; the group's
# run first, so a value given after the command overrides the one given (or defaulted) before it.
def _set_server(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.ensure_object(State).server = value


def _set_token(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.ensure_object(State).token = value


def _set_json(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.ensure_object(State).json = True


def json_option(function: F) -> F:
    """`--json` after a command, the same as `tskcfg --json COMMAND` (for commands that need no server)."""
    option = click.option("--json", is_flag=True, expose_value=False, callback=_set_json, help=JSON_HELP)
    return option(function)


def global_options(function: F) -> F:
    """`--server`, `--token` and `--json` after a command, the same as before it."""
    server = click.option(
        "--server", metavar="URL", default=None, expose_value=False, callback=_set_server, help=SERVER_HELP
    )
    token = click.option(
        "--token", metavar="TOKEN", default=None, expose_value=False, callback=_set_token, help=TOKEN_HELP
    )
    return server(token(json_option(function)))


def pass_state(function: F) -> F:
    return click.make_pass_decorator(State, ensure=True)(function)  # type: ignore[return-value]


class TskcfgGroup(click.Group):
    """A group that ends an unexpected failure with one sentence instead of a traceback.

    `TSKCFG_DEBUG=1` shows the traceback; `serve` keeps its own error handling.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort, KeyboardInterrupt):
            raise
        except (ConfigError, InvalidName) as error:
            # What the server refused, or could not answer: one sentence and its exit code.
            raise ctx.ensure_object(State).failure(error) from None
        except BrokenPipeError:
            # The reader went away (`tskcfg history ... | head`): nothing failed, so stop quietly;
            # stdout is pointed at /dev/null so the interpreter's final flush cannot complain.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            raise click.exceptions.Exit(0) from None
        except Exception as error:
            if os.environ.get("TSKCFG_DEBUG") or ctx.invoked_subcommand == "serve":
                raise
            raise CommandFailed(
                f"unexpected error ({type(error).__name__}: {error}); set TSKCFG_DEBUG=1 to see where"
            ) from None


@click.group(
    cls=TskcfgGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="tskcfg")
@click.option(
    "--server",
    envvar="TSKCFG_SERVER",
    default=DEFAULT_SERVER,
    show_default=True,
    metavar="URL",
    expose_value=False,
    callback=_set_server,
    help=SERVER_HELP,
)
@click.option(
    "--token", envvar="TSKCFG_TOKEN", default=None, metavar="TOKEN", expose_value=False, callback=_set_token,
    help=TOKEN_HELP,
)
@click.option("--json", is_flag=True, expose_value=False, callback=_set_json, help=JSON_HELP)
def main() -> None:
    """tskcfg: serve, push, promote and watch TSK configuration.

    \b
    Exit codes: 0 done, 1 refused (invalid document, schema violation,
    conflict, no permission), 2 usage, 3 server unreachable or failing.
    --server, --token and --json may also follow the command.

    \b
    Example:
      tskcfg --server http://config.internal:8005 get user-service production
    """

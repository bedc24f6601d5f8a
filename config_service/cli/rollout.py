"""`tskcfg rollout start|status|pause|resume|abort|complete`: a new version reaching a growing
share of a document's instances (docs/rollouts.md), over `AdminClient`'s rollout methods."""

from __future__ import annotations

import json
import time
from typing import Any

import click

from config_service.cli._common import read_input, with_source_context
from config_service.cli._group import State, global_options, main, pass_state
from config_service.cli._output import echo_json, json_text, say, short_hash
from tskcfg import RequestRejected, ServerUnavailable

FINISHED = ("completed", "rolled_back", "aborted")


def _steps(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise click.BadParameter(f"give percents separated by commas, like 10,50,100, not {text!r}") from None


def describe(rollout: dict[str, Any]) -> str:
    """One line for people: which rollout, where it is, and how its cohort is doing."""
    candidate = rollout.get("candidate") or {}
    stable = rollout.get("stable") or {}
    counts = rollout.get("counts") or {}
    text = (
        f"{rollout.get('service')}/{rollout.get('environment')}: rollout {rollout.get('id')} "
        f"{rollout.get('state')} at {rollout.get('percent')} % (step {int(rollout.get('step', 0)) + 1} of "
        f"{len(rollout.get('steps') or [])}, steps {'/'.join(map(str, rollout.get('steps') or []))}); "
        f"candidate version {candidate.get('version')} (hash {short_hash(candidate.get('hash'))}), "
        f"stable version {stable.get('version')}; cohort applied {counts.get('applied', 0)}, "
        f"failed {counts.get('failed', 0)} (max {rollout.get('max_failed')}), "
        f"pending {counts.get('pending', 0)}"
    )
    if rollout.get("reason"):
        text += f"; {rollout['reason']}"
    return text


def show(state: State, rollout: dict[str, Any]) -> None:
    if state.json:
        echo_json(rollout)
    else:
        say(describe(rollout))


@main.group()
def rollout() -> None:
    """Roll a new version out to a growing share of instances, back on its own when they fail.

    \b
    Examples:
      tskcfg rollout start user-service production new.tsk --steps 10,50,100 --bake 300
      tskcfg rollout start user-service production --from staging --max-failed 1
      tskcfg rollout status user-service production --watch
      tskcfg rollout abort user-service production
    """


@rollout.command("start")
@click.argument("service")
@click.argument("environment")
@click.argument("file", required=False)
@click.option("--version", "version", type=click.IntRange(min=1), default=None, metavar="N",
              help="The candidate is version N of this document (or of --from's environment).")
@click.option("--from", "from_environment", default=None, metavar="ENV",
              help="The candidate is a promotion from ENV (its current version, or --version).")
@click.option("--steps", default="10,50,100", show_default=True, metavar="P,P,...",
              help="Percents of instances at each step, increasing, ending at 100.")
@click.option("--bake", "bake_seconds", type=click.FloatRange(min=0), default=300, show_default=True,
              metavar="SECONDS", help="How long each step runs before the next.")
@click.option("--max-failed", type=click.IntRange(min=0), default=0, show_default=True, metavar="N",
              help="Roll back once more than N instances of the cohort fail to apply it.")
@click.option("-m", "--message", default="", help="Why this change; kept in the history.")
@global_options
@pass_state
def rollout_start(
    state: State,
    service: str,
    environment: str,
    file: str | None,
    version: int | None,
    from_environment: str | None,
    steps: str,
    bake_seconds: float,
    max_failed: int,
    message: str,
) -> None:
    """Start a rollout of FILE (`-` reads stdin), of --version N, or from --from ENV.

    \b
    The candidate is validated like a push and stored as the next version,
    read only by the instances whose bucket is below the step's percent.

    \b
    Examples:
      tskcfg rollout start user-service production new.tsk --steps 10,50,100 --bake 300
      tskcfg rollout start user-service production --from staging
      tskcfg rollout start user-service production --version 7 --steps 50,100
    """
    if (file is not None) + (from_environment is not None) + (version is not None and from_environment is None) != 1:
        raise click.UsageError("give the candidate as one of FILE, --version N or --from ENV")
    source: str | None = None
    file_name = ""
    if file is not None:
        file_name, raw = read_input(file)
        try:
            source = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise click.BadParameter(f"{file_name} is not UTF-8 text ({error})") from None
    try:
        started = state.api().start_rollout(
            service,
            environment,
            source=source,
            version=version,
            from_environment=from_environment,
            steps=_steps(steps),
            bake_seconds=bake_seconds,
            max_failed=max_failed,
            message=message or None,
        )
    except RequestRejected as error:
        if source is not None:
            raise with_source_context(state.failure(error), file_name, raw) from None
        raise
    show(state, started)


@rollout.command("status")
@click.argument("service")
@click.argument("environment")
@click.option("--watch", is_flag=True, help="Follow it live through the event stream until it ends.")
@global_options
@pass_state
def rollout_status(state: State, service: str, environment: str, watch: bool) -> None:
    """Show the latest rollout of SERVICE in ENVIRONMENT (--watch: each change as it happens).

    \b
    Examples:
      tskcfg rollout status user-service production
      tskcfg rollout status user-service production --watch --json
    """
    api = state.api()
    if not watch:
        show(state, api.rollout(service, environment))
        return
    last_event_id: str | None = None
    shown: dict[str, Any] | None = None
    try:
        while True:
            try:
                # Subscribe first, then read the state: no change between the two is missed.
                with api.events(service, environment, last_event_id=last_event_id) as stream:
                    if shown is None:
                        shown = api.rollout(service, environment)
                        show(state, shown)
                    if shown.get("state") in FINISHED:
                        return
                    for event in stream:
                        if event.id is not None:
                            last_event_id = event.id
                        changed = _rollout_event(event.event, event.data)
                        if (
                            changed is None
                            or changed.get("id") != shown.get("id")
                            or str(changed.get("updated_at")) <= str(shown.get("updated_at"))
                        ):
                            continue
                        shown = changed
                        if state.json:
                            click.echo(json_text(changed, indent=None))
                        else:
                            say(describe(changed))
                        if changed.get("state") in FINISHED:
                            return
            except ServerUnavailable:
                if shown is None:
                    raise
                click.echo("connection lost; reconnecting in 1 s", err=True)
                time.sleep(1.0)
    except KeyboardInterrupt:
        return


def _rollout_event(kind: str, data: str) -> dict[str, Any] | None:
    """The rollout object an `event: rollout` carries, else None."""
    if kind != "rollout":
        return None
    try:
        changed = json.loads(data)
    except ValueError:
        return None
    return changed if isinstance(changed, dict) else None


def _action(name: str, summary: str) -> None:
    @rollout.command(name, help=f"{summary}\n\n\b\nExample:\n  tskcfg rollout {name} user-service production")
    @click.argument("service")
    @click.argument("environment")
    @global_options
    @pass_state
    def command(state: State, service: str, environment: str) -> None:
        change = getattr(state.api(), f"{name}_rollout")
        show(state, change(service, environment))


_action("pause", "Pause the running rollout: its bake clock stops, its cohort keeps the candidate.")
_action("resume", "Resume a paused rollout from where its bake clock stopped.")
_action("abort", "Abort the rollout: every instance reads the stable version again.")
_action("complete", "Complete the rollout now: the candidate becomes current for everyone.")

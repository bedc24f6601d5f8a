"""`tskcfg serve` reads each flag's `TSKCFG_*` variable through click; a bad value is a usage error."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from config_service.cli import main


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("TSKCFG_PORT", "eighty", "TSKCFG_PORT"),
        ("TSKCFG_SYNC", "maybe", "TSKCFG_SYNC"),
        ("TSKCFG_ACCESS_LOG", "sometimes", "TSKCFG_ACCESS_LOG"),
        ("TSKCFG_PIPELINE", "development,Production", "environment name 'Production' is not valid"),
        ("TSKCFG_MAX_BODY", "0", "--max-body must be a positive number of bytes"),
        ("TSKCFG_STORE", "mysql://db/config", "--store: 'mysql://db/config' is not a store URL"),
        ("TSKCFG_STORE", "sqlite:///", "names no SQLite file"),
    ],
)
def test_a_bad_variable_is_a_usage_error_that_names_it(variable: str, value: str, says: str) -> None:
    result = CliRunner().invoke(main, ["serve"], env={variable: value})
    assert result.exit_code == 2, result.output
    assert says in result.stderr


def test_every_variable_is_shown_beside_its_flag() -> None:
    shown = CliRunner().invoke(main, ["serve", "--help"], terminal_width=200).stdout
    for variable in (
        "TSKCFG_HOST", "TSKCFG_PORT", "TSKCFG_DATA_DIR", "TSKCFG_STORE", "TSKCFG_ENVIRONMENTS", "TSKCFG_SCHEMAS",
        "TSKCFG_PIPELINE", "TSKCFG_SECTIONS", "TSKCFG_SYNC", "TSKCFG_MAX_BODY", "TSKCFG_MAX_MESSAGE",
        "TSKCFG_MAX_CONNECTIONS", "TSKCFG_BODY_TIMEOUT", "TSKCFG_WORKERS", "TSKCFG_INSTANCE_REPORT_INTERVAL",
        "TSKCFG_MAX_INSTANCES", "TSKCFG_INSTANCE_REPORTS_PER_MINUTE", "TSKCFG_LOG_LEVEL", "TSKCFG_ACCESS_LOG",
    ):
        assert f"env var: {variable}" in shown.replace("\n", " ").replace("  ", " "), variable

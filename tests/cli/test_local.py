"""`tskcfg validate` and `tskcfg fmt`: offline commands on real files, through click's runner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from config_service import tsk
from config_service.cli import main

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "schemas"
PRODUCTION = ROOT / "environments" / "production" / "user-service.tsk"


@pytest.fixture()
def runner() -> CliRunner:
    return CliRunner()


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_validate_accepts_the_repository_documents(runner: CliRunner) -> None:
    files = sorted(str(path) for path in (ROOT / "environments").glob("*/*.tsk"))
    result = runner.invoke(main, ["validate", "--schemas-dir", str(SCHEMAS), *files])
    assert result.exit_code == 0, result.output
    assert result.stdout.count(": valid\n") == len(files) == 3


def test_validate_shows_a_tsk_error_with_the_line_and_a_caret(runner: CliRunner, tmp_path: Path) -> None:
    bad = write(tmp_path / "user-service.tsk", 'name: "user-service"\n[database]\npool_size: 007\n')
    result = runner.invoke(main, ["validate", str(bad), "--schema", str(SCHEMAS / "user-service.json")])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"{bad}:3:12: invalid number '007': leading zeros are not allowed",
        "    pool_size: 007",
        "               ^",
    ]


def test_validate_lists_schema_failures_as_path_and_message(runner: CliRunner, tmp_path: Path) -> None:
    text = PRODUCTION.read_text("utf-8").replace("pool_size: 20", "pool_size: 0")
    text = text.replace('url: @env("DATABASE_URL", "postgresql://db.internal:5432/users")\n', "")
    bad = write(tmp_path / "user-service.tsk", text)
    result = runner.invoke(main, ["validate", str(bad), "--schema", str(SCHEMAS / "user-service.json")])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"{bad}: /database/pool_size: 0 is less than the minimum of 1",
        f"{bad}: /database/url: 'url' is a required property",
    ]


def test_validate_uses_env_defaults_like_the_server(runner: CliRunner, tmp_path: Path) -> None:
    text = PRODUCTION.read_text("utf-8").replace('@env("PORT", 8001)', '@env("PORT", "eighty")')
    bad = write(tmp_path / "user-service.tsk", text)
    result = runner.invoke(main, ["validate", str(bad), "--schema", str(SCHEMAS / "user-service.json")])
    assert result.exit_code == 1
    assert "/port: 'eighty' is not of type 'integer'" in result.stderr
    # Without a default the reference is left out, as on the server: an optional key passes.
    skipped = write(tmp_path / "user-service.tsk", text.replace("timeout: 5.0", 'timeout: @env("DB_TIMEOUT")'))
    result = runner.invoke(main, ["validate", str(skipped), "--schema", str(SCHEMAS / "user-service.json")])
    assert "/database/timeout" not in result.stderr
    assert result.stderr.splitlines() == [f"{skipped}: /port: 'eighty' is not of type 'integer'"]


def test_validate_json_output_and_stdin(runner: CliRunner) -> None:
    result = runner.invoke(
        main,
        ["validate", "-", "--schema", str(SCHEMAS / "user-service.json"), "--json"],
        input='name: "user-service"\nversion: "1"\nport: 1\n[database]\nurl: "sqlite://"\n',
    )
    assert result.exit_code == 1
    assert json.loads(result.stdout) == {
        "ok": False,
        "files": [
            {
                "file": "<stdin>",
                "ok": False,
                "errors": [{"path": "/version", "message": "'1' does not match '^[0-9]+\\\\.[0-9]+\\\\.[0-9]+([-+][0-9A-Za-z.-]+)?$'"}],
            }
        ],
    }


def test_validate_without_a_schema_checks_only_the_tsk(runner: CliRunner, tmp_path: Path) -> None:
    good = write(tmp_path / "anything.tsk", "a: 1\n")
    result = runner.invoke(main, ["validate", str(good)])
    assert result.exit_code == 0
    assert result.stdout == f"{good}: valid TSK (no schema given)\n"


def test_validate_reports_a_missing_schema_and_checks_the_other_files(runner: CliRunner, tmp_path: Path) -> None:
    other = write(tmp_path / "billing.tsk", "a: 1\n")
    result = runner.invoke(main, ["validate", "--schemas-dir", str(SCHEMAS), str(other), str(PRODUCTION)])
    assert result.exit_code == 1
    assert f"{other}: no schema {SCHEMAS / 'billing.json'}" in result.stderr
    assert f"{PRODUCTION}: valid" in result.stdout


def test_validate_refuses_an_invalid_schema(runner: CliRunner, tmp_path: Path) -> None:
    schema = write(tmp_path / "s.json", '{"type": "no-such-type"}')
    result = runner.invoke(main, ["validate", str(PRODUCTION), "--schema", str(schema)])
    assert result.exit_code == 1
    assert f"tskcfg: {schema}: not a valid draft 2020-12 schema: " in result.stderr
    assert "Traceback" not in result.output


def test_validate_usage_errors_exit_2(runner: CliRunner) -> None:
    result = runner.invoke(main, ["validate", str(PRODUCTION), "--schema", "a.json", "--service", "x"])
    assert result.exit_code == 2
    assert runner.invoke(main, ["validate"]).exit_code == 2


def test_validate_refuses_a_file_over_the_servers_default_size_limit(runner: CliRunner, tmp_path: Path) -> None:
    # Valid TSK of 1 MiB + 1 byte, and one of exactly 1 MiB: only the first is over the limit.
    def document(size: int) -> str:
        return "name: 1\n" + "#" * (size - len("name: 1\n") - 1) + "\n"

    big = write(tmp_path / "big.tsk", document(1024 * 1024 + 1))
    fits = write(tmp_path / "fits.tsk", document(1024 * 1024))
    assert big.stat().st_size == 1024 * 1024 + 1 and fits.stat().st_size == 1024 * 1024
    result = runner.invoke(main, ["validate", str(big), str(fits)])
    assert result.exit_code == 1
    assert result.stderr == (
        f"{big}: 1048577 bytes, more than the server's default limit of 1048576 bytes (1 MiB): "
        "the server would refuse it (413 too_large)\n"
    )
    assert result.stdout == f"{fits}: valid TSK (no schema given)\n"
    as_json = json.loads(runner.invoke(main, ["validate", str(big), "--json"]).stdout)
    assert as_json["files"][0]["ok"] is False
    assert "1048576 bytes" in as_json["files"][0]["errors"][0]["message"]
    smaller = runner.invoke(main, ["validate", str(fits), "--max-body", "1000"])
    assert smaller.exit_code == 1
    assert "more than the limit of 1000 bytes given with --max-body" in smaller.stderr


def test_fmt_rewrites_a_file_without_comments_and_keeps_its_data(runner: CliRunner, tmp_path: Path) -> None:
    path = write(tmp_path / "a.tsk", 'b = [\n  2,\n  3,\n]\na: "x # not a comment"\n[s]\nk = 1;\n')
    before = tsk.loads(path.read_text("utf-8"))
    check = runner.invoke(main, ["fmt", "--check", str(path)])
    assert check.exit_code == 1 and check.stdout == f"would reformat {path}\n"
    assert path.read_text("utf-8").startswith("b = [")  # --check changes nothing
    result = runner.invoke(main, ["fmt", str(path)])
    assert result.exit_code == 0, result.output
    assert path.read_text("utf-8") == tsk.dumps(before)
    assert tsk.loads(path.read_text("utf-8")) == before
    assert runner.invoke(main, ["fmt", "--check", str(path)]).exit_code == 0


def test_fmt_keeps_comments_beside_their_keys(runner: CliRunner, tmp_path: Path) -> None:
    text = "# head\n\nb = 2   # two\n[s]\n# about k\nk = 1;\n"
    path = write(tmp_path / "a.tsk", text)
    assert runner.invoke(main, ["fmt", "--check", str(path)]).exit_code == 1
    result = runner.invoke(main, ["fmt", str(path)])
    assert result.exit_code == 0, result.output
    assert path.read_text("utf-8") == "# head\n\nb: 2  # two\n\n[s]\n# about k\nk: 1\n"
    assert runner.invoke(main, ["fmt", "--check", str(path)]).exit_code == 0


@pytest.mark.parametrize(
    ("text", "lost"),
    [
        (
            "db {\n    $v: 1\n}\nport: $v\n",
            "$v (line 2): the canonical order would use it above its definition",
        ),
        (
            "a: [\n  1,  # one\n]\n",
            "a comment inside a value (line 2): the canonical form writes arrays and objects on one line",
        ),
    ],
)
def test_fmt_never_drops_variables_or_comments_inside_values(
    runner: CliRunner, tmp_path: Path, text: str, lost: str
) -> None:
    path = write(tmp_path / "a.tsk", text)
    result = runner.invoke(main, ["fmt", str(path)])
    assert result.exit_code == 1
    assert result.stderr == f"{path}: left untouched, cannot keep {lost}\n"
    assert path.read_text("utf-8") == text
    # --check passes: fmt would not change the file.
    assert runner.invoke(main, ["fmt", "--check", str(path)]).exit_code == 0
    as_json = runner.invoke(main, ["fmt", "--json", str(path)])
    assert json.loads(as_json.stdout)["files"] == [{"file": str(path), "status": "untouched", "reason": lost}]


def test_fmt_is_not_fooled_by_hash_signs_inside_strings(runner: CliRunner, tmp_path: Path) -> None:
    path = write(tmp_path / "a.tsk", "a:   \"#1\"\nb: '''\n# line\n'''\nc: '#'\n")
    result = runner.invoke(main, ["fmt", str(path)])
    assert result.exit_code == 0, result.output
    assert tsk.loads(path.read_text("utf-8")) == {"a": "#1", "b": "# line\n", "c": "#"}


def test_fmt_on_the_repository_documents(runner: CliRunner, tmp_path: Path) -> None:
    documents = sorted((ROOT / "environments").glob("*/*.tsk"))
    check = runner.invoke(main, ["fmt", "--check", *map(str, documents)])
    assert check.exit_code == 0, check.output
    for path in documents:
        # Spelled differently, each formats back to the shipped text: same data, every
        # comment and every $variable kept.
        original = path.read_text("utf-8")
        copy = write(tmp_path / f"{path.parent.name}.tsk", original.replace("10000", "10_000").replace(": [", " = ["))
        assert copy.read_text("utf-8") != original
        result = runner.invoke(main, ["fmt", str(copy)])
        assert result.exit_code == 0, result.output
        assert copy.read_text("utf-8") == original


def test_fmt_stdin_to_stdout_and_invalid_input(runner: CliRunner) -> None:
    result = runner.invoke(main, ["fmt", "-"], input="a=1\n")
    assert result.exit_code == 0 and result.stdout == tsk.dumps({"a": 1})
    bad = runner.invoke(main, ["fmt", "-", "--json"], input="a: [\n")
    assert bad.exit_code == 1
    assert json.loads(bad.stdout)["files"][0]["status"] == "invalid"
    assert bad.stderr.startswith("<stdin>:1:4: unclosed array")


def test_read_errors_are_sentences_not_tracebacks(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(main, ["validate", str(tmp_path / "missing.tsk")])
    assert result.exit_code == 1
    assert result.stderr == f"tskcfg: cannot read {tmp_path / 'missing.tsk'}: No such file or directory\n"


def test_an_unexpected_failure_is_one_sentence_unless_debugging(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(data: object) -> str:
        raise RuntimeError("writer broke")

    monkeypatch.setattr(tsk, "reformat", broken)
    path = write(tmp_path / "a.tsk", "a: 1\n")
    result = runner.invoke(main, ["fmt", str(path)], env={"TSKCFG_DEBUG": None})
    assert result.exit_code == 1
    assert result.stderr == (
        "tskcfg: unexpected error (RuntimeError: writer broke); set TSKCFG_DEBUG=1 to see where\n"
    )
    debug = runner.invoke(main, ["fmt", str(path)], env={"TSKCFG_DEBUG": "1"})
    assert isinstance(debug.exception, RuntimeError)


def test_a_closed_pipe_ends_the_command_quietly(tmp_path: Path) -> None:
    import subprocess
    import sys

    document = write(tmp_path / "big.tsk", "".join(f"key_{index}: {index}\n" for index in range(20_000)))
    tskcfg = f"'{sys.executable}' -c 'from config_service.cli import main; main()'"
    result = subprocess.run(
        ["bash", "-c", f"{tskcfg} fmt - < '{document}' | head -c 10 > /dev/null; echo ${{PIPESTATUS[0]}}"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.stdout == "0\n"
    assert result.stderr == ""

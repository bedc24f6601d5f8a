"""The client installs as the import package `tskcfg`: no top-level `client`, nothing the server needs."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

from clienttest import ROOT


def run_python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def test_tskcfg_imports_from_a_folder_outside_the_repository(tmp_path: Path) -> None:
    result = run_python(
        "import importlib.util, tskcfg\n"
        "print(tskcfg.load_config.__module__, importlib.util.find_spec('client'))",
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    # No generic top-level `client` package is installed beside it.
    assert result.stdout.split() == ["tskcfg", "None"]


def test_a_service_with_its_own_client_package_can_use_ours(tmp_path: Path) -> None:
    service = tmp_path / "service"
    (service / "client").mkdir(parents=True)
    (service / "client" / "__init__.py").write_text("NAME = 'the service own client'\n")
    (service / "app.py").write_text(
        "import client\n"
        "from tskcfg import ConfigClient, load_config\n"
        "print(client.NAME)\n"
        "print(load_config.__module__, ConfigClient.__name__)\n"
    )
    result = subprocess.run(
        [sys.executable, "app.py"], cwd=service, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["the service own client", "tskcfg ConfigClient"]


def test_importing_tskcfg_loads_no_server_code(tmp_path: Path) -> None:
    result = run_python(
        "import sys, tskcfg\n"
        "print(','.join(sorted(name for name in sys.modules if name.split('.')[0] in "
        "{'starlette', 'uvicorn', 'sqlite_utils', 'prometheus_client'} "
        "or name.split('.')[:2] in (['config_service', 'store'], ['config_service', 'core'], "
        "['config_service', 'http'], ['config_service', 'http1'], ['config_service', 'sync']))))",
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def test_every_package_folder_is_listed_in_pyproject() -> None:
    """A package is installed only when pyproject names it (a renamed one cannot be found by scanning)."""
    setup = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    assert setup["package-dir"] == {"tskcfg": "client"}
    folders = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "config_service").rglob("__init__.py")
    }
    assert folders | {"tskcfg"} == set(setup["packages"])
    assert not list((ROOT / "client").rglob("*/__init__.py")), "list tskcfg's subpackages too"

"""A real nginx as the load balancer in front of server replicas, for end-to-end tests.

It runs in the foreground as a child of the test, from a configuration written into a
temporary folder (pid file, logs and temporary files there too), and listens on 127.0.0.1
only. Long polls and event streams pass through unbuffered; a replica that refuses
connections, times out or answers 502/503/504 is skipped for the next one, as a load
balancer in front of replicas is set up (docs/replicas.md has the same configuration).

When nginx is missing a test skips, unless `CI` is set: then it fails (`.ci/run` installs it).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest

from tests.serving import free_port

CONFIGURATION = """\
worker_processes 1;
daemon off;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {folder}/body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    upstream tskcfg {{
{servers}
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 2m;
        client_body_buffer_size 2m;
        location / {{
            proxy_pass http://tskcfg;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_read_timeout 150s;
            proxy_connect_timeout 2s;
            proxy_next_upstream error timeout http_502 http_503 http_504;
            proxy_next_upstream_tries 3;
        }}
    }}
}}
"""


def find_nginx() -> str | None:
    return shutil.which("nginx") or next(
        (path for path in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(path).is_file()), None
    )


def nginx_or_skip() -> str:
    binary = find_nginx()
    if binary is None:
        message = "nginx is not installed; apt-get install nginx"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI is set: this must not be skipped)")
        pytest.skip(message)
    return binary


class Balancer:
    """nginx in front of `upstreams` (`host:port` each), on a free 127.0.0.1 port."""

    def __init__(self, upstreams: Sequence[str]) -> None:
        self.binary = nginx_or_skip()
        self.folder = Path(tempfile.mkdtemp(prefix="tskcfg-nginx-"))
        self.folder.chmod(0o755)  # run as root, nginx's workers run as another user
        self.port = free_port()
        servers = "\n".join(f"        server {upstream} max_fails=0;" for upstream in upstreams)
        self.configuration = self.folder / "nginx.conf"
        self.configuration.write_text(
            CONFIGURATION.format(folder=self.folder, servers=servers, port=self.port)
        )
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> Balancer:
        self.process = subprocess.Popen(
            [self.binary, "-c", str(self.configuration), "-p", str(self.folder)],
            stdout=subprocess.DEVNULL,
            stderr=(self.folder / "stderr.log").open("wb"),
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited: {self.log()}")
            try:
                httpx.get(self.url + "/health", timeout=1)
                return self
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError(f"nginx did not start: {self.log()}")

    def log(self) -> str:
        parts = []
        for name in ("stderr.log", "error.log"):
            path = self.folder / name
            if path.exists():
                parts.append(path.read_text(errors="replace")[-3000:])
        return "\n".join(parts)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None
        shutil.rmtree(self.folder, ignore_errors=True)

"""user-service: the seed's service, configured entirely through ConfigClient and changed live by pushes.

    CONFIG_STORE=http://127.0.0.1:8005 CONFIG_TOKEN=$(cat data/admin.token) \
        python examples/user_service/app.py

Everything comes from the config: the port (`@env("PORT", 8001)`), the SQLite database (through
the database applier), the cache, logging, CORS origins (the security section) and the
`features` flags. Push a new version and the running process follows it without a restart.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from tskcfg import ConfigClient, DatabaseApplier

logger = logging.getLogger("user_service.http")
USERS_KEY = "users:all"


def connect(section: Mapping[str, Any]) -> sqlite3.Connection:
    """A connection for the database section; this example speaks SQLite (`sqlite:///path`)."""
    url = str(section["url"])
    if not url.startswith("sqlite:///"):
        raise ValueError(f"this example needs a sqlite:/// database url, not {url!r}")
    path = Path(url.removeprefix("sqlite:///"))
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(
        path, timeout=float(section.get("timeout", 5.0)), check_same_thread=False
    )
    connection.execute(
        "create table if not exists users (id integer primary key, name text not null, email text not null unique)"
    )
    connection.commit()
    return connection


def check(connection: sqlite3.Connection) -> None:
    connection.execute("select count(*) from users").fetchone()


def make_client() -> ConfigClient:
    client = ConfigClient("user-service", database=DatabaseApplier(connect, check=check))

    @client.on("port")
    def port_changed(new: Any, old: Any) -> None:
        if old is not None:
            logger.warning(
                "port changed from %s to %s; it takes effect at the next restart", old, new
            )

    @client.on("database")
    def database_changed(new: Any, old: Any) -> None:
        # Runs after the built-in applier swapped the connection: cached rows came from the old one.
        client.cache.clear()

    return client


class LiveCORS:
    """CORS whose allowed origins are read from the security section on every request."""

    def __init__(self, app: ASGIApp, client: ConfigClient) -> None:
        self.app = app
        self.client = client

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        origin = headers.get(b"origin", b"").decode("latin-1")
        allowed = bool(origin) and self.client.security.is_origin_allowed(origin)
        if scope["method"] == "OPTIONS" and b"access-control-request-method" in headers:
            response = Response(status_code=204 if allowed else 403)
            if allowed:
                response.headers["Access-Control-Allow-Origin"] = origin
                response.headers["Access-Control-Allow-Methods"] = "GET, POST"
                response.headers["Access-Control-Allow-Headers"] = "Content-Type"
                response.headers["Vary"] = "Origin"
            await response(scope, receive, send)
            return

        async def send_with_cors(message: Any) -> None:
            if message["type"] == "http.response.start" and allowed:
                message["headers"] = [
                    *message.get("headers", []),
                    (b"access-control-allow-origin", origin.encode("latin-1")),
                    (b"vary", b"Origin"),
                ]
            await send(message)

        await self.app(scope, receive, send_with_cors)


def create_app(client: ConfigClient) -> ASGIApp:
    async def list_users(request: Request) -> Response:
        cached = client.cache.get(USERS_KEY)
        if cached is not None:
            return JSONResponse({"users": cached, "cached": True})
        with client.database.connection() as connection:
            rows = connection.execute("select id, name, email from users order by id").fetchall()
        users = [{"id": row[0], "name": row[1], "email": row[2]} for row in rows]
        client.cache.set(USERS_KEY, users)
        return JSONResponse({"users": users, "cached": False})

    async def create_user(request: Request) -> Response:
        if not client.config.get("features.signup_enabled", True):
            return JSONResponse(
                {"error": "signup_disabled", "message": "sign-up is switched off"}, 403
            )
        try:
            body = await request.json()
            name, email = str(body["name"]), str(body["email"])
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"error": "bad_request", "message": 'send {"name", "email"}'}, 400)
        with client.database.connection() as connection:
            try:
                cursor = connection.execute(
                    "insert into users (name, email) values (?, ?)", (name, email)
                )
                connection.commit()
            except sqlite3.IntegrityError:
                return JSONResponse({"error": "conflict", "message": f"{email} is taken"}, 409)
        client.cache.delete(USERS_KEY)
        logger.info("created user %s", cursor.lastrowid)
        return JSONResponse({"id": cursor.lastrowid, "name": name, "email": email}, 201)

    async def health(request: Request) -> Response:
        config = client.config
        return JSONResponse(
            {
                "status": "ok",
                "service": config.service,
                "environment": config.environment,
                "config": {"version": config.version, "hash": config.hash, "source": config.source},
                "database": config.get("database.url"),
                "cache": {"ttl": client.cache.ttl, "max_size": client.cache.max_size},
                "log_level": logging.getLevelName(logging.getLogger().level),
            }
        )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        client.start()  # loaded already; from here on a background thread follows the server
        try:
            yield
        finally:
            client.stop()
            client.database.close()

    app = Starlette(
        routes=[
            Route("/users", list_users, methods=["GET"]),
            Route("/users", create_user, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    return LiveCORS(app, client)


def main() -> None:
    client = make_client()
    config = client.load()
    port = config["port"]
    logger.warning(
        "user-service %s (config version %s from %s) on port %s",
        config.environment,
        config.version,
        config.source,
        port,
    )
    uvicorn.run(create_app(client), host="127.0.0.1", port=port, log_config=None, access_log=False)


if __name__ == "__main__":
    main()

"""`tskcfg serve --workers N`: N server processes on one listening socket, and their supervisor.

The supervisor (the process `tskcfg serve` started as) binds the port once and forks the
workers, which inherit that one socket: the kernel hands each new connection to one of the
processes waiting on it. A second, unrelated server cannot bind the same port by mistake (as
it could with one SO_REUSEPORT socket per worker). Each worker is a whole server (its own
event loop, change hub and caches) that follows the store's sequence
(config_service/core/following.py). See docs/replicas.md, "Workers on one machine".

A worker that ends (killed, or crashed) is started again; one that exits with an error
within `START_GRACE` seconds of its start stops the whole server (it failed to start, and
would again). SIGTERM or SIGINT to the
supervisor stops every worker gracefully; the workers end with the supervisor even when it is
killed (Linux: the parent-death signal).
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable

logger = logging.getLogger("config_service")

# A worker that ends this soon after its start failed to start: the server stops.
START_GRACE = 10.0
# How long the workers get to finish their requests when the server stops.
STOP_GRACE = 15.0
MAX_WORKERS = 64
PR_SET_PDEATHSIG = 1


def bind(host: str, port: int, backlog: int) -> socket.socket:
    """The listening socket every worker shares."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(backlog)
        listener.set_inheritable(True)
    except BaseException:
        listener.close()
        raise
    return listener


def _die_with_parent() -> None:
    """Ask Linux to send this process SIGTERM when the supervisor ends, however it ends."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def supervise(count: int, listener: socket.socket, run_worker: Callable[[int, socket.socket], int]) -> int:
    """Fork `count` workers that run `run_worker(index, listener)` (its return value is the
    worker's exit status), keep them running, and return the server's exit status."""
    supervisor = os.getpid()
    workers: dict[int, tuple[int, float]] = {}  # pid -> (index, started at)
    stopping = False

    def start(index: int) -> None:
        pid = os.fork()
        if pid == 0:  # the worker
            status = 1
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                _die_with_parent()
                if os.getppid() != supervisor:
                    os._exit(0)  # the supervisor ended while this one started
                status = run_worker(index, listener)
            except SystemExit as exit:
                status = exit.code if isinstance(exit.code, int) else 1
            except BaseException:
                logger.exception("worker %d failed", index)
            finally:
                logging.shutdown()
                os._exit(status)
        workers[pid] = (index, time.monotonic())
        logger.info("worker %d started (process %d)", index, pid)

    def stop_all(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(workers):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    previous = {sig: signal.signal(sig, stop_all) for sig in (signal.SIGTERM, signal.SIGINT)}
    status = 0
    try:
        for index in range(count):
            start(index)
        stop_deadline: float | None = None
        while workers:
            if stopping and stop_deadline is None:
                stop_deadline = time.monotonic() + STOP_GRACE
            try:
                pid, wait_status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                if stop_deadline is not None and time.monotonic() > stop_deadline:
                    for late in list(workers):
                        logger.warning("worker process %d did not stop in time; killed", late)
                        os.kill(late, signal.SIGKILL)
                    stop_deadline = time.monotonic() + 5
                time.sleep(0.05)
                continue
            index, started_at = workers.pop(pid)
            code = os.waitstatus_to_exitcode(wait_status)
            if stopping:
                continue
            if time.monotonic() - started_at < START_GRACE and code > 0:
                logger.error("worker %d failed to start (exit %d); stopping the server", index, code)
                status = code if code > 0 else 1
                stop_all(signal.SIGTERM, None)
                continue
            logger.warning("worker %d (process %d) ended (exit %d); starting it again", index, pid, code)
            start(index)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        listener.close()
    return status

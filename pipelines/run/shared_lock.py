"""One run at a time on a shared ML Metadata store, across machines: a MySQL named lock.

A file lock beside a SQLite file only keeps out runs on the same machine. Runs from several
machines on one ``mysql://`` store need the server to say no: ``GET_LOCK`` holds while the
connection that took it lives, so a finished, crashed or killed run (its socket closed by the
kernel) frees it without anyone cleaning up. The server knows only a connection id; who that
is (pid, host, start time, command) is kept in ``twinflow_run_holders`` beside ML Metadata's
tables, keyed by lock name, so a refusal can name the run in the way.

Also here: ``check_store``, which opens the shared store once before a command relies on it, so
a wrong password or an unreachable server is an error naming the server, not ML Metadata's
empty ``mysql_real_connect failed: errno: , error:``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from twinflow.core.config import PipelineConfig
from twinflow.core.errors import ConfigError, RunLockedError
from twinflow.core.metadata import (
    PASSWORD_ENV,
    PASSWORD_FILE_ENV,
    MysqlTarget,
    check_sqlite_file,
    metadata_password,
    parse_mysql_uri,
)

if TYPE_CHECKING:
    from pymysql.connections import Connection

HOLDERS_TABLE = "twinflow_run_holders"
MAX_LOCK_NAME = 64  # MySQL refuses longer names for GET_LOCK
# The server drops a connection idle this long (a machine that died without closing its socket);
# a held lock is pinged far more often than that, so a live run never loses it.
LOCK_IDLE_TIMEOUT_S = 3600
PING_INTERVAL_S = 60.0

_BUSY = (
    "another twinflow run is using pipeline {pipeline} in {store}: {holder}. Wait for it to finish, or stop it; "
    "two runs of one pipeline on one metadata store would mix their results"
)


def lock_name(database: str, pipeline_name: str) -> str:
    """``twinflow:<database>:<pipeline>``; too long for MySQL, its head and a hash of the whole."""
    name = f"twinflow:{database}:{pipeline_name}"
    if len(name) <= MAX_LOCK_NAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:16]
    return f"{name[: MAX_LOCK_NAME - len(digest) - 1]}#{digest}"


def connect(target: MysqlTarget, *, select_database: bool = True) -> Connection:
    """A pymysql connection to the store's server; any failure is a ConfigError with the server's message.

    Without ``select_database`` it only proves the server and the credentials (ML Metadata creates
    a missing database itself when the user may).
    """
    import pymysql

    try:
        return pymysql.connect(
            host=target.host,
            port=target.port,
            user=target.user,
            password=metadata_password(),
            database=target.database if select_database else None,
            connect_timeout=10,
            read_timeout=60,
            write_timeout=60,
            autocommit=True,
            charset="utf8mb4",
        )
    except (pymysql.err.Error, OSError) as err:
        raise ConfigError(_connect_failure(target, _server_message(err))) from None


def _server_message(err: BaseException) -> str:
    args = getattr(err, "args", ())
    if len(args) == 2 and isinstance(args[0], int):
        return f"{args[1]} (MySQL error {args[0]})"
    return str(err) or type(err).__name__


def _connect_failure(target: MysqlTarget, message: str) -> str:
    password = metadata_password()
    if password:  # servers do not echo it; never let one through if some layer did
        message = message.replace(password, "***")
    return (
        f"cannot use the shared ML Metadata store at host {target.host}, port {target.port}, database "
        f"{target.database}, user {target.user}: {message}. The password is read from ${PASSWORD_ENV} or the "
        f"file named by ${PASSWORD_FILE_ENV}"
    )


def check_store(config: PipelineConfig) -> None:
    """Open the shared store once (ML Metadata creates its tables, and the database when allowed).

    The SQLite file is only checked to be one (or creatable), not opened: a run holding it must
    still be refused by the run lock, not by a busy-database error here.
    """
    if not config.metadata_uri:
        check_sqlite_file(config.metadata_path)
        return
    from ml_metadata import metadata_store

    from twinflow.core.metadata import connection_config

    target = parse_mysql_uri(config.metadata_uri)
    connect(target, select_database=False).close()
    try:
        metadata_store.MetadataStore(connection_config(config.metadata_uri, config.metadata_path))
    except Exception as err:
        connect(target).close()  # a missing database the user may not create says so here
        raise ConfigError(
            _connect_failure(
                target,
                f"ML Metadata cannot open it ({str(err).strip() or type(err).__name__}); a MySQL 8 user needs "
                "the mysql_native_password authentication plugin",
            )
        ) from None


@contextlib.contextmanager
def hold_shared_store(metadata_uri: str, pipeline_name: str) -> Iterator[None]:
    """Hold this pipeline's named lock on the store's server for the whole run; refuse at once if held."""
    import pymysql

    target = parse_mysql_uri(metadata_uri)
    name = lock_name(target.database, pipeline_name)
    connection = connect(target)
    mutex = threading.Lock()  # the keep-alive thread and this one share the connection
    keep_alive: _KeepAlive | None = None
    try:
        try:
            _acquire(connection, name, pipeline_name, target)
        except pymysql.err.Error as err:
            raise ConfigError(_connect_failure(target, _server_message(err))) from None
        _record_holder(connection, name)
        keep_alive = _KeepAlive(connection, mutex, f"{target.describe()} ({name})")
        keep_alive.start()
        yield
    finally:
        if keep_alive is not None:
            keep_alive.stop()
        with mutex:
            _release(connection, name)


def _release(connection: Connection, name: str) -> None:
    """Forget the holder and free the lock; closing the connection frees it anyway, so failures are ignored."""
    with contextlib.suppress(Exception), connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {HOLDERS_TABLE} WHERE lock_name = %s AND connection_id = CONNECTION_ID()", (name,))
        cursor.execute("SELECT RELEASE_LOCK(%s)", (name,))
    with contextlib.suppress(Exception):
        connection.close()


def _acquire(connection: Connection, name: str, pipeline_name: str, target: MysqlTarget) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"SET SESSION wait_timeout = {LOCK_IDLE_TIMEOUT_S}")
        for _ in range(2):  # the holder may finish between GET_LOCK and IS_USED_LOCK: try once more
            cursor.execute("SELECT GET_LOCK(%s, 0)", (name,))
            if cursor.fetchone()[0] == 1:
                return
            cursor.execute("SELECT IS_USED_LOCK(%s)", (name,))
            holder_id = cursor.fetchone()[0]
            if holder_id is not None:
                break
        holder = _describe_holder(cursor, name, holder_id)
    raise RunLockedError(_BUSY.format(pipeline=pipeline_name, store=target.describe(), holder=holder))


def _describe_holder(cursor: Any, name: str, connection_id: int | None) -> str:
    if connection_id is None:
        return "a run that has not said who it is"
    row = None
    with contextlib.suppress(Exception):  # no table yet: the holder could not record itself
        cursor.execute(
            f"SELECT pid, host, started, command FROM {HOLDERS_TABLE} WHERE lock_name = %s AND connection_id = %s",
            (name, connection_id),
        )
        row = cursor.fetchone()
    if row is None:
        return f"MySQL connection {connection_id}, which has not said who it is"
    pid, host, started, command = row
    return f"pid {pid} on {host}, started {started} ({command}; MySQL connection {connection_id})"


def _record_holder(connection: Connection, name: str) -> None:
    """Say who holds the lock; best effort: without the table (no CREATE privilege) the lock still holds."""
    import pymysql

    facts = (
        os.getpid(),
        socket.gethostname()[:255],
        time.strftime("%Y-%m-%d %H:%M:%S %z"),
        " ".join(["twinflow", *sys.argv[1:]])[:300],
    )
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                f"CREATE TABLE IF NOT EXISTS {HOLDERS_TABLE} ("
                "lock_name VARCHAR(64) NOT NULL PRIMARY KEY, connection_id BIGINT UNSIGNED NOT NULL, "
                "pid BIGINT NOT NULL, host VARCHAR(255) NOT NULL, started VARCHAR(32) NOT NULL, "
                "command VARCHAR(300) NOT NULL) DEFAULT CHARSET=utf8mb4"
            )
            cursor.execute(f"REPLACE INTO {HOLDERS_TABLE} VALUES (%s, CONNECTION_ID(), %s, %s, %s, %s)", (name, *facts))
    except pymysql.err.Error as err:
        print(f"twinflow: warning: holding the run lock {name} but cannot record who holds it: {err}", file=sys.stderr)


class _KeepAlive(threading.Thread):
    """Pings the lock's connection so neither the server's idle timeout nor a network's ends it mid-run."""

    def __init__(self, connection: Connection, mutex: threading.Lock, what: str):
        super().__init__(daemon=True, name="twinflow-run-lock")
        self._connection = connection
        self._mutex = mutex
        self._what = what
        self._interval = PING_INTERVAL_S
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()
        self.join()

    def run(self) -> None:
        while not self._stop_event.wait(self._interval):
            with self._mutex:
                try:
                    self._connection.ping(reconnect=False)  # a new connection would not hold the lock
                except Exception as err:
                    print(
                        f"twinflow: warning: lost the run lock on {self._what} ({err}); "
                        "another run of this pipeline could start now",
                        file=sys.stderr,
                        flush=True,
                    )
                    return

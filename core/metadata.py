"""Which ML Metadata store a command uses: the embedded SQLite file, or a shared MySQL/MariaDB database.

Scheduled jobs on several machines, and people asking ``twinflow history`` from their own,
need one store: ``mysql://USER@HOST:PORT/DB``. The password never travels in the URI or a
flag (both end up in shell history and process lists): it comes from
``$TWINFLOW_METADATA_PASSWORD``, or from the file named by ``$TWINFLOW_METADATA_PASSWORD_FILE``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from twinflow.core import fs
from twinflow.core.errors import ConfigError

if TYPE_CHECKING:
    from ml_metadata.proto import metadata_store_pb2

PASSWORD_ENV = "TWINFLOW_METADATA_PASSWORD"
PASSWORD_FILE_ENV = "TWINFLOW_METADATA_PASSWORD_FILE"
DEFAULT_MYSQL_PORT = 3306


@dataclass(frozen=True)
class MysqlTarget:
    user: str
    host: str
    port: int
    database: str

    def describe(self) -> str:
        return f"mysql://{self.user}@{self.host}:{self.port}/{self.database}"


def parse_mysql_uri(uri: str) -> MysqlTarget:
    """``mysql://USER@HOST[:PORT]/DB``; a password in the URI is refused."""
    parts = urlsplit(uri)
    if parts.scheme != "mysql":
        raise ConfigError(f"metadata URI {uri!r}: only mysql://USER@HOST:PORT/DB is supported")
    if parts.password is not None:
        raise ConfigError(
            f"metadata URI {parts.scheme}://{parts.username}:***@{parts.hostname}: do not put the password in the URI; "
            f"set ${PASSWORD_ENV} or ${PASSWORD_FILE_ENV}"
        )
    database = parts.path.lstrip("/")
    if not parts.username or not parts.hostname or not database or "/" in database:
        raise ConfigError(f"metadata URI {uri!r}: expected mysql://USER@HOST:PORT/DB")
    try:
        port = parts.port or DEFAULT_MYSQL_PORT
    except ValueError:
        raise ConfigError(f"metadata URI {uri!r}: the port is not a number") from None
    return MysqlTarget(unquote(parts.username), parts.hostname, port, database)


def metadata_password() -> str:
    if PASSWORD_ENV in os.environ:
        return os.environ[PASSWORD_ENV]
    path = os.environ.get(PASSWORD_FILE_ENV)
    if path:
        try:
            return Path(path).read_text().rstrip("\n")
        except OSError as err:
            raise ConfigError(f"${PASSWORD_FILE_ENV}={path}: cannot read the password file ({err.strerror})") from None
    return ""


_SQLITE_HEADER = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database file


def check_sqlite_file(metadata_path: str) -> None:
    """The SQLite store's file can be opened or created: a folder, a file that is not SQLite, or a parent
    that is a file is a ConfigError naming it (ML Metadata says only "unable to open database file").

    Reads 16 bytes at most, with no TensorFlow or ML Metadata loaded; an empty file is an empty store.
    """
    path = Path(metadata_path)
    fix = "pass --metadata-path with an ML Metadata SQLite file (made on first use)"
    if path.is_dir():
        raise ConfigError(
            f"the metadata store {path} is a folder, not an SQLite file; {fix}, e.g. {path / 'metadata.sqlite'}"
        )
    if path.is_file():
        try:
            with path.open("rb") as handle:
                header = handle.read(len(_SQLITE_HEADER))
        except OSError as err:
            raise ConfigError(f"the metadata store {path} cannot be read ({err.strerror}); {fix}") from None
        if header and header != _SQLITE_HEADER:
            raise ConfigError(f"the metadata store {path} is not an SQLite database; {fix}")
        return
    problem = fs.unwritable_local_folder(str(path.parent))
    if problem:
        raise ConfigError(f"the metadata store {path} cannot be created ({problem}); {fix}")


def connection_config(metadata_uri: str | None, metadata_path: str) -> metadata_store_pb2.ConnectionConfig:
    """The ML Metadata connection: MySQL when ``metadata_uri`` is set, else the SQLite file (created if missing)."""
    from ml_metadata.proto import metadata_store_pb2

    config = metadata_store_pb2.ConnectionConfig()
    if metadata_uri:
        target = parse_mysql_uri(metadata_uri)
        config.mysql.host = target.host
        config.mysql.port = target.port
        config.mysql.database = target.database
        config.mysql.user = target.user
        config.mysql.password = metadata_password()
        return config
    check_sqlite_file(metadata_path)
    Path(metadata_path).parent.mkdir(parents=True, exist_ok=True)
    config.sqlite.filename_uri = str(metadata_path)
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    return config


def describe_store(metadata_uri: str | None, metadata_path: str) -> str:
    return parse_mysql_uri(metadata_uri).describe() if metadata_uri else str(metadata_path)

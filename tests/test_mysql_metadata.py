"""The shared ``mysql://`` ML Metadata store against a real MariaDB server started by the tests.

The server is Debian's ``mariadb-server`` (the binaries only: the tests start their own
``mariadbd`` on a temporary data folder, bound to 127.0.0.1, and stop it at the end); without
it every test here is skipped, saying how to install it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from twinflow.core.config import PipelineConfig
from twinflow.core.errors import ConfigError, RunLockedError
from twinflow.core.metadata import PASSWORD_ENV, connection_config
from twinflow.pipelines.run.guard import exclusive_run

pytestmark = pytest.mark.slow  # starts a real MariaDB server

ROOT = Path(__file__).resolve().parent.parent
DATABASE = "twinflow_md"
USER = "twinflow"
PASSWORD = "pw-Kq7-not-in-messages"
WRONG_PASSWORD = "wrong-Zx9-not-in-messages"
_SKIP = "mariadb-server is not installed: apt-get install mariadb-server to run the shared-store tests"


@dataclass(frozen=True)
class Server:
    port: int
    socket_path: str

    def uri(self, database: str = DATABASE, user: str = USER) -> str:
        return f"mysql://{user}@127.0.0.1:{self.port}/{database}"


def _binary(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")
        if found:
            return found
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_up(server: subprocess.Popen, socket_path: str, log: Path, timeout_s: float = 60) -> None:
    import pymysql

    deadline = time.monotonic() + timeout_s
    while True:
        if server.poll() is not None:
            raise RuntimeError(f"mariadbd exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            pymysql.connect(unix_socket=socket_path, user="root", connect_timeout=2).close()
            return
        except pymysql.err.Error as err:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"mariadbd did not accept connections in {timeout_s} s:\n{log.read_text()[-3000:]}"
                ) from err
            time.sleep(0.2)


@pytest.fixture(scope="module")
def mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A fresh MariaDB on 127.0.0.1 with database ``DATABASE`` and user ``USER`` (password ``PASSWORD``)."""
    server_bin = _binary("mariadbd", "mysqld")
    install_bin = _binary("mariadb-install-db", "mysql_install_db")
    if server_bin is None or install_bin is None:
        pytest.skip(_SKIP)
    import pymysql

    datadir = tmp_path_factory.mktemp("mariadb") / "data"
    log = datadir.parent / "mariadbd.log"
    as_root = ["--user=root"] if os.geteuid() == 0 else []  # mariadbd refuses root without it
    installed = subprocess.run(
        [
            install_bin,
            "--no-defaults",
            f"--datadir={datadir}",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            *as_root,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert installed.returncode == 0, installed.stdout[-2000:] + installed.stderr[-2000:]
    sock_dir = tempfile.mkdtemp(prefix="twinflow-mariadb-")  # short: a socket path has ~100 characters
    socket_path = os.path.join(sock_dir, "sock")
    port = _free_port()
    server = subprocess.Popen(
        [
            server_bin,
            "--no-defaults",
            f"--datadir={datadir}",
            f"--socket={socket_path}",
            f"--port={port}",
            "--bind-address=127.0.0.1",
            "--skip-networking=0",
            f"--pid-file={datadir.parent / 'mariadbd.pid'}",
            f"--log-error={log}",
            "--innodb-buffer-pool-size=64M",
            "--skip-log-bin",
            *as_root,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_until_up(server, socket_path, log)
        admin = pymysql.connect(unix_socket=socket_path, user="root", autocommit=True)
        with admin.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {DATABASE}")
            for host in ("%", "localhost"):  # 127.0.0.1 resolves to localhost
                cursor.execute(f"CREATE USER '{USER}'@'{host}' IDENTIFIED BY '{PASSWORD}'")
                cursor.execute(f"GRANT ALL ON {DATABASE}.* TO '{USER}'@'{host}'")
        admin.close()
        yield Server(port, socket_path)
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        shutil.rmtree(sock_dir, ignore_errors=True)


@pytest.fixture()
def password(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    return PASSWORD


def _config(server: Server, root: Path, pipeline_name: str = "twinflow") -> PipelineConfig:
    """What the run lock and the store read: two configs with two roots are two machines sharing one store."""
    return PipelineConfig(
        pipeline_name=pipeline_name,
        pipeline_root=str(root / "pipeline"),
        metadata_path=str(root / "metadata.sqlite"),
        serving_dir=str(root / "serving"),
        metadata_uri=server.uri(),
    )


def test_ml_metadata_records_and_reads_an_execution(mariadb: Server, password: str, tmp_path: Path) -> None:
    from ml_metadata import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    from twinflow.pipelines.run.shared_lock import check_store

    check_store(_config(mariadb, tmp_path))
    store = metadata_store.MetadataStore(connection_config(mariadb.uri(), str(tmp_path / "unused.sqlite")))
    execution_type = metadata_store_pb2.ExecutionType(name="twinflow.test.Step")
    execution_type.properties["note"] = metadata_store_pb2.STRING
    type_id = store.put_execution_type(execution_type)
    execution = metadata_store_pb2.Execution(type_id=type_id, last_known_state=metadata_store_pb2.Execution.COMPLETE)
    execution.properties["note"].string_value = "written through mysql://"
    [execution_id] = store.put_executions([execution])

    again = metadata_store.MetadataStore(connection_config(mariadb.uri(), str(tmp_path / "unused.sqlite")))
    [read] = again.get_executions_by_id([execution_id])
    assert read.properties["note"].string_value == "written through mysql://"
    assert read.last_known_state == metadata_store_pb2.Execution.COMPLETE
    assert not (tmp_path / "unused.sqlite").exists()  # nothing fell back to SQLite


def test_a_wrong_password_names_the_server_and_never_the_password(
    mariadb: Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from twinflow.pipelines.run.shared_lock import check_store

    monkeypatch.setenv(PASSWORD_ENV, WRONG_PASSWORD)
    config = _config(mariadb, tmp_path)

    def take_run_lock() -> None:
        with exclusive_run(config):
            pass

    for attempt in (lambda: check_store(config), take_run_lock):  # history: see the command-line test
        with pytest.raises(ConfigError) as raised:
            attempt()
        message = str(raised.value)
        assert f"host 127.0.0.1, port {mariadb.port}, database {DATABASE}, user {USER}" in message, message
        assert "Access denied" in message and "1045" in message, message
        assert WRONG_PASSWORD not in message and PASSWORD not in message, message


def test_an_unreachable_server_is_a_config_error(mariadb: Server, password: str, tmp_path: Path) -> None:
    from twinflow.pipelines.run.shared_lock import check_store

    config = _config(mariadb, tmp_path).model_copy(
        update={"metadata_uri": f"mysql://{USER}@127.0.0.1:{_free_port()}/x"}
    )
    with pytest.raises(ConfigError, match=r"host 127\.0\.0\.1, port \d+, database x, user twinflow: Can't connect"):
        check_store(config)


def test_the_command_line_reports_a_wrong_password_without_a_traceback(mariadb: Server, tmp_path: Path) -> None:
    env = {**os.environ, PASSWORD_ENV: WRONG_PASSWORD}
    command = ["history", "--metadata-uri", mariadb.uri(), "--serving-dir", str(tmp_path / "serving")]
    result = subprocess.run(
        [sys.executable, "-m", "twinflow.pipelines.cli", *command, "--pipeline-root", str(tmp_path / "pipeline")],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=ROOT,
    )
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.splitlines()  # one line: history no longer loads TensorFlow (and its CUDA notes)
    assert line.startswith("twinflow history: error: cannot use the shared ML Metadata store at host 127.0.0.1")
    assert "Access denied" in result.stderr and "Traceback" not in result.stderr
    assert WRONG_PASSWORD not in result.stderr + result.stdout


_HOLDER = textwrap.dedent(
    """
    import sys, time
    from twinflow.core.config import PipelineConfig
    from twinflow.pipelines.run.guard import exclusive_run

    config = PipelineConfig.model_validate_json(sys.argv[1])
    with exclusive_run(config):
        print("holding", flush=True)
        time.sleep(600)
    """
)


def _start_holder(config: PipelineConfig) -> subprocess.Popen:
    """Another process (standing in for another machine) holding ``exclusive_run`` until killed."""
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, config.model_dump_json()],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    line = holder.stdout.readline()  # type: ignore[union-attr]
    if line.strip() != "holding":
        holder.kill()
        raise AssertionError(f"the holder did not take the lock: {line!r} {holder.stderr.read()}")  # type: ignore[union-attr]
    return holder


def test_a_second_run_on_the_shared_store_is_refused_until_the_first_dies(
    mariadb: Server, password: str, tmp_path: Path
) -> None:
    from twinflow.pipelines.run.shared_lock import check_store

    first_config = _config(mariadb, tmp_path / "machine-a")
    second_config = _config(mariadb, tmp_path / "machine-b")  # its own files: only the server can say no
    first = _start_holder(first_config)
    try:
        with pytest.raises(RunLockedError) as refused, exclusive_run(second_config):
            pass
        message = str(refused.value)
        assert message.startswith(f"another twinflow run is using pipeline twinflow in {mariadb.uri()}: "), message
        assert f"pid {first.pid} on {socket.gethostname()}" in message, message
        assert not Path(first_config.metadata_path + ".twinflow.lock").exists()  # no pointless file lock

        with exclusive_run(_config(mariadb, tmp_path / "machine-c", pipeline_name="other")):
            pass  # another pipeline on the same store is not in the way
    finally:
        first.send_signal(signal.SIGKILL)  # no clean-up code runs: the server frees the lock with the connection
        first.wait(timeout=30)

    deadline = time.monotonic() + 10
    while True:
        try:
            with exclusive_run(second_config):
                break
        except RunLockedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    with exclusive_run(second_config):  # released on leaving, too
        pass
    check_store(second_config)  # ML Metadata still opens its store beside the holders table


def test_a_run_that_loses_its_lock_mid_run_says_so(
    mariadb: Server, password: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    import pymysql

    from twinflow.pipelines.run import shared_lock

    monkeypatch.setattr(shared_lock, "PING_INTERVAL_S", 0.05)
    config = _config(mariadb, tmp_path)
    admin = pymysql.connect(unix_socket=mariadb.socket_path, user="root", autocommit=True)
    with exclusive_run(config), admin.cursor() as cursor:
        time.sleep(0.3)  # pinged several times: still held
        assert "lost the run lock" not in capsys.readouterr().err
        cursor.execute("SELECT IS_USED_LOCK(%s)", (shared_lock.lock_name(DATABASE, "twinflow"),))
        [holder] = cursor.fetchone()
        cursor.execute(f"KILL CONNECTION {int(holder)}")  # a server restart or a network cut, as the run sees it
        deadline = time.monotonic() + 10
        while "lost the run lock" not in (err := capsys.readouterr().err) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert f"lost the run lock on {mariadb.uri()}" in err, err
    admin.close()


def test_a_long_lock_name_is_shortened_but_stays_distinct() -> None:
    from twinflow.pipelines.run.shared_lock import MAX_LOCK_NAME, lock_name

    assert lock_name("db", "twinflow") == "twinflow:db:twinflow"
    long_a, long_b = lock_name("db", "p" * 100 + "a"), lock_name("db", "p" * 100 + "b")
    assert len(long_a) == len(long_b) == MAX_LOCK_NAME and long_a != long_b


@pytest.mark.e2e
def test_a_whole_tiny_run_records_in_the_shared_store(
    mariadb: Server, password: str, tmp_path: Path, tiny_folders: Path
) -> None:
    import pymysql

    from tests.helpers import tiny_config
    from twinflow.pipelines.retraining.history import history
    from twinflow.pipelines.run.local import run_local
    from twinflow.pipelines.run.shared_lock import HOLDERS_TABLE

    config = tiny_config(tmp_path, tiny_folders, metadata_uri=mariadb.uri(), pipeline_name="tiny_mysql")
    report = run_local(config).to_json()
    (row,) = report["frameworks"]
    assert row["pushed"], report
    assert all(c["state"] == "COMPLETE" for c in report["components"]), report["components"]
    assert not Path(config.metadata_path).exists()  # everything went to MariaDB
    (recorded,) = history(config)
    assert recorded["run_id"] == report["run_id"] and recorded["source"] == "ML Metadata"
    assert recorded["frameworks"]["keras"]["pushed_version"] is not None

    name = f"twinflow:{DATABASE}:tiny_mysql"
    admin = pymysql.connect(unix_socket=mariadb.socket_path, user="root", database=DATABASE)
    with admin.cursor() as cursor:
        cursor.execute("SELECT IS_USED_LOCK(%s)", (name,))
        assert cursor.fetchone() == (None,)  # released at the end of the run
        cursor.execute(f"SELECT COUNT(*) FROM {HOLDERS_TABLE} WHERE lock_name = %s", (name,))
        assert cursor.fetchone() == (0,)
    admin.close()

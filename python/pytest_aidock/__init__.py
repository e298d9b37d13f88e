"""pytest fixtures: a fresh, seeded AI Dock database per test.

Load it from the test suite's ``conftest.py`` (one line; installing the package alone changes no
other suite)::

    pytest_plugins = ["pytest_aidock"]

Once per session (per xdist worker) the plugin runs ``aidock-provision template`` (a no-op when
the template is current) and starts ``aidock-provision pool``, one process that keeps a few
clones of the template ready ahead of the tests: each test that asks for one of the fixtures
below gets a database of its own (owned by the session's login role), dropped in the background
once the test is done. When the session ends, or pytest is killed, the pool drops every clone
and the role; what a killed pool left is dropped by the next session's.

``aidock_database``
    an :class:`AidockDatabase` (``name``, ``owner``, ``password``, ``url``);
``aidock_url``
    its connection URL (``postgresql://...``), for the app's settings;
``aidock_sqlalchemy_url``
    the same for SQLAlchemy with psycopg 3 (``postgresql+psycopg://...``);
``aidock_async_url``
    the same for an async engine (``postgresql+asyncpg://...``), as a FastAPI backend uses;
``aidock_conn``
    a psycopg (3) connection to it, closed after the test (``pip install psycopg[binary]``);
``aidock_template``
    the session's template name, built and current.

Settings (command line, else environment, else ini file):

============================  ===============================  ================================
``--aidock-project DIR``      ``AIDOCK_PROJECT_DIR``           ``aidock_project``: the
                                                               aidock-provision project (its
                                                               ``config/``, ``sql/``, ``seeds/``
                                                               and local cluster); relative to
                                                               the ini file's directory
``--aidock-bin PATH``         ``AIDOCK_PROVISION_BIN``         ``aidock_bin``; default: the one
                                                               installed in this Python
                                                               environment (``pip install``),
                                                               else ``aidock-provision`` on
                                                               ``PATH``
``--aidock-template NAME``    ``AIDOCK_TEMPLATE``              ``aidock_template``; default
                                                               ``aidock_pytest_template``
``--aidock-template-args``    ``AIDOCK_TEMPLATE_ARGS``         ``aidock_template_args``; default
                                                               ``--dev --users 10 --usage-logs
                                                               500``
``--aidock-password-scheme``  ``AIDOCK_PASSWORD_SCHEME``       ``aidock_password_scheme``:
                                                               ``bcrypt`` (what the AI Dock
                                                               backend's passlib verifies) or
                                                               ``argon2id``; default: the
                                                               project's ``seed.password_scheme``
``--aidock-ahead N``          ``AIDOCK_AHEAD``                 ``aidock_ahead``: clones kept
                                                               ready; default 2
============================  ===============================  ================================

Everything else (which server: ``AIDOCK_ADMIN_URL`` or the project's local cluster; the
profile) is read by aidock-provision itself from the environment pytest runs in.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sysconfig
import threading
import urllib.parse
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Deque, Iterator, List, Optional

import pytest

__all__ = ["AidockDatabase", "Provisioner", "ProvisionError"]

DEFAULT_TEMPLATE = "aidock_pytest_template"
DEFAULT_TEMPLATE_ARGS = "--dev --users 10 --usage-logs 500"
DEFAULT_AHEAD = 2
BINARY = "aidock-provision"


class ProvisionError(RuntimeError):
    """An aidock-provision command failed; the message holds what it printed."""


@dataclass(frozen=True)
class AidockDatabase:
    """One test's database: a clone of the template, owned by the session's login role."""

    name: str
    owner: str
    password: str = field(repr=False)
    url: str = field(repr=False)

    def with_driver(self, driver: str) -> str:
        """The URL with SQLAlchemy's ``postgresql+DRIVER`` scheme (``psycopg``, ``asyncpg``)."""
        return "postgresql+" + driver + self.url[len("postgresql"):]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("aidock", "AI Dock databases (aidock-provision)")
    group.addoption("--aidock-project", metavar="DIR", help="the aidock-provision project (AIDOCK_PROJECT_DIR)")
    group.addoption("--aidock-bin", metavar="PATH", help="the aidock-provision binary (AIDOCK_PROVISION_BIN)")
    group.addoption("--aidock-template", metavar="NAME", help="template database name (AIDOCK_TEMPLATE)")
    group.addoption(
        "--aidock-template-args",
        metavar="ARGS",
        help=f"flags for `aidock-provision template` (AIDOCK_TEMPLATE_ARGS; default {DEFAULT_TEMPLATE_ARGS!r})",
    )
    group.addoption(
        "--aidock-password-scheme",
        metavar="SCHEME",
        help="bcrypt or argon2id for the seeded accounts' hashes (AIDOCK_PASSWORD_SCHEME)",
    )
    group.addoption("--aidock-ahead", metavar="N", help=f"clones kept ready (AIDOCK_AHEAD; default {DEFAULT_AHEAD})")
    parser.addini("aidock_project", "the aidock-provision project directory (relative to the ini file)")
    parser.addini("aidock_bin", "the aidock-provision binary")
    parser.addini("aidock_template", f"template database name (default {DEFAULT_TEMPLATE})")
    parser.addini("aidock_template_args", f"flags for `aidock-provision template` (default {DEFAULT_TEMPLATE_ARGS!r})")
    parser.addini("aidock_password_scheme", "bcrypt or argon2id for the seeded accounts' hashes")
    parser.addini("aidock_ahead", f"clones kept ready (default {DEFAULT_AHEAD})")


def _setting(config: pytest.Config, option: str, env: str, ini: str) -> Optional[str]:
    value = config.getoption(option)
    if value:
        return str(value)
    value = os.environ.get(env)
    if value:
        return value
    value = config.getini(ini)
    return str(value) if value else None


def find_binary() -> Optional[str]:
    """The aidock-provision of this Python environment (the wheel installs it beside the
    environment's scripts), else the one on ``PATH``."""
    own = Path(sysconfig.get_path("scripts")) / BINARY
    if own.is_file() and os.access(own, os.X_OK):
        return str(own)
    return shutil.which(BINARY)


class Provisioner:
    """Runs aidock-provision for the fixtures (usable on its own, e.g. from a unittest suite):
    :meth:`build_template` once, then :meth:`clone` / :meth:`drop` per test, :meth:`close` at
    the end."""

    def __init__(
        self,
        binary: str,
        project: Optional[str] = None,
        template: str = DEFAULT_TEMPLATE,
        template_args: str = DEFAULT_TEMPLATE_ARGS,
        password_scheme: Optional[str] = None,
        ahead: int = DEFAULT_AHEAD,
    ) -> None:
        self.binary = binary
        self.project = project
        self.template = template
        self.template_args = shlex.split(template_args)
        self.password_scheme = password_scheme
        self.ahead = ahead
        self._pool: Optional[subprocess.Popen] = None
        self._stderr: Deque[str] = deque(maxlen=40)
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, config: pytest.Config) -> "Provisioner":
        binary = _setting(config, "aidock_bin", "AIDOCK_PROVISION_BIN", "aidock_bin") or find_binary()
        if binary is None:
            raise ProvisionError(
                "aidock-provision is not installed in this Python environment nor on PATH: "
                "`pip install aidock-provision` (the wheel carries the binary; or `pip install <checkout>`), "
                "or `cargo install --locked --path <checkout>`, or name the binary with AIDOCK_PROVISION_BIN or --aidock-bin"
            )
        project = _setting(config, "aidock_project", "AIDOCK_PROJECT_DIR", "aidock_project")
        if project is not None and config.getoption("aidock_project") is None and not os.environ.get("AIDOCK_PROJECT_DIR"):
            # From the ini file: relative to it.
            base = Path(config.inipath).parent if config.inipath else Path(config.rootpath)
            project = str((base / project).resolve())
        template = _setting(config, "aidock_template", "AIDOCK_TEMPLATE", "aidock_template") or DEFAULT_TEMPLATE
        args = _setting(config, "aidock_template_args", "AIDOCK_TEMPLATE_ARGS", "aidock_template_args")
        scheme = _setting(config, "aidock_password_scheme", "AIDOCK_PASSWORD_SCHEME", "aidock_password_scheme")
        ahead = _setting(config, "aidock_ahead", "AIDOCK_AHEAD", "aidock_ahead")
        try:
            ahead_n = int(ahead) if ahead else DEFAULT_AHEAD
        except ValueError:
            raise ProvisionError(f"aidock ahead must be a number from 1 to 16, not {ahead!r}") from None
        # Each xdist worker is a session of its own with a pool of its own: the server's
        # connections are shared between them.
        if os.environ.get("PYTEST_XDIST_WORKER") and not ahead:
            ahead_n = 1
        return cls(binary, project, template, args if args is not None else DEFAULT_TEMPLATE_ARGS, scheme, ahead_n)

    def _env(self) -> dict:
        env = dict(os.environ)
        if self.project is not None:
            env["AIDOCK_PROJECT_DIR"] = self.project
        if self.password_scheme:
            env["AIDOCK__SEED__PASSWORD_SCHEME"] = self.password_scheme
        return env

    def run(self, args: List[str]) -> str:
        """Run ``aidock-provision ARGS``; its stdout, or :class:`ProvisionError` with what it said."""
        try:
            done = subprocess.run(
                [self.binary, *args],
                env=self._env(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                check=False,
            )
        except OSError as e:
            raise ProvisionError(f"could not run {self.binary}: {e}") from e
        if done.returncode != 0:
            said = (done.stderr or done.stdout).strip()
            raise ProvisionError(f"`aidock-provision {' '.join(args)}` failed (exit {done.returncode}):\n{said}")
        return done.stdout

    def build_template(self) -> str:
        """Build or refresh the template (a no-op when current); its name."""
        self.run(["template", "-q", "--name", self.template, *self.template_args])
        return self.template

    def _start_pool(self) -> subprocess.Popen:
        if self._pool is not None:
            return self._pool
        try:
            pool = subprocess.Popen(
                [self.binary, "pool", "--template", self.template, "--ahead", str(self.ahead)],
                env=self._env(),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                bufsize=1,
            )
        except OSError as e:
            raise ProvisionError(f"could not run {self.binary}: {e}") from e

        def drain() -> None:
            assert pool.stderr is not None
            for line in pool.stderr:
                self._stderr.append(line.rstrip("\n"))

        threading.Thread(target=drain, name="aidock-pool-stderr", daemon=True).start()
        self._pool = pool
        self._answer("starting `aidock-provision pool`")
        return pool

    def _answer(self, what: str) -> dict:
        pool = self._pool
        assert pool is not None and pool.stdout is not None
        line = pool.stdout.readline()
        if not line:
            pool.wait()
            said = "\n".join(self._stderr).strip()
            self._pool = None
            raise ProvisionError(f"{what}: `aidock-provision pool` ended (exit {pool.returncode}):\n{said}")
        answer = json.loads(line)
        if "error" in answer:
            raise ProvisionError(f"{what}: {answer['error']}")
        return answer

    def clone(self) -> AidockDatabase:
        """A database of the test's own, cloned from the template (made ahead by the pool)."""
        with self._lock:
            pool = self._start_pool()
            assert pool.stdin is not None
            try:
                pool.stdin.write("clone\n")
                pool.stdin.flush()
            except OSError as e:
                raise ProvisionError(f"`aidock-provision pool` is gone: {e}") from e
            made = self._answer("a clone of the template")
        url = _unmask(made["url"], made["owner"], made["password"])
        return AidockDatabase(name=made["name"], owner=made["owner"], password=made["password"], url=url)

    def drop(self, database: AidockDatabase) -> None:
        """Drop a clone, in the background (the pool does it off the test's path)."""
        with self._lock:
            pool = self._pool
            if pool is None or pool.stdin is None:
                return
            try:
                pool.stdin.write(f"drop {database.name}\n")
                pool.stdin.flush()
            except OSError:
                pass

    def close(self) -> None:
        """End the pool: it drops every clone of the session and the session's role."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            assert pool.stdin is not None
            pool.stdin.close()
        except OSError:
            pass
        try:
            pool.wait(timeout=120)
        except subprocess.TimeoutExpired:
            pool.terminate()
            pool.wait(timeout=30)
        if pool.returncode != 0:
            said = "\n".join(self._stderr).strip()
            raise ProvisionError(f"`aidock-provision pool` could not clean up (exit {pool.returncode}):\n{said}")


def _unmask(masked: str, user: str, password: str) -> str:
    parts = urllib.parse.urlsplit(masked)
    host = parts.netloc.rpartition("@")[2]
    netloc = f"{urllib.parse.quote(user, safe='')}:{urllib.parse.quote(password, safe='')}@{host}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class _Session:
    """The session's provisioner and template, made on first use; a setup failure is reported
    in full once, and in one line for every later test that asks."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.provisioner: Optional[Provisioner] = None
        self.template: Optional[str] = None
        self.failure: Optional[str] = None
        self.first_failed: Optional[str] = None

    def fail(self, message: str, nodeid: str) -> None:
        if self.first_failed is None:
            self.failure, self.first_failed = message, nodeid
            pytest.fail(message, pytrace=False)
        pytest.fail(f"aidock-provision setup failed (said in full for {self.first_failed})", pytrace=False)

    def ready(self, nodeid: str) -> Provisioner:
        if self.failure is not None:
            self.fail(self.failure, nodeid)
        failed = None
        try:
            if self.provisioner is None:
                self.provisioner = Provisioner.from_config(self.config)
            if self.template is None:
                self.template = self.provisioner.build_template()
        except ProvisionError as e:
            failed = str(e)
        # Outside the `except`: the failure alone, not chained to what raised it.
        if failed is not None:
            self.fail(failed, nodeid)
        assert self.provisioner is not None
        return self.provisioner

    def close(self) -> None:
        if self.provisioner is not None:
            self.provisioner.close()


@pytest.fixture(scope="session")
def _aidock_session(pytestconfig: pytest.Config) -> Iterator[_Session]:
    session = _Session(pytestconfig)
    try:
        yield session
    finally:
        session.close()


@pytest.fixture
def aidock_provisioner(_aidock_session: _Session, request: pytest.FixtureRequest) -> Provisioner:
    """The session's :class:`Provisioner` (settings read once, template built)."""
    return _aidock_session.ready(request.node.nodeid)


@pytest.fixture
def aidock_template(_aidock_session: _Session, request: pytest.FixtureRequest) -> str:
    """The template's name, built (or found current) once per session."""
    _aidock_session.ready(request.node.nodeid)
    assert _aidock_session.template is not None
    return _aidock_session.template


@pytest.fixture
def aidock_database(_aidock_session: _Session, request: pytest.FixtureRequest) -> Iterator[AidockDatabase]:
    """This test's own database, cloned from the template; dropped afterwards."""
    provisioner = _aidock_session.ready(request.node.nodeid)
    failed = None
    try:
        database = provisioner.clone()
    except ProvisionError as e:
        failed = str(e)
    if failed is not None:
        pytest.fail(failed, pytrace=False)
    try:
        yield database
    finally:
        provisioner.drop(database)


@pytest.fixture
def aidock_url(aidock_database: AidockDatabase) -> str:
    """This test's database URL (the session role and its password)."""
    return aidock_database.url


@pytest.fixture
def aidock_sqlalchemy_url(aidock_database: AidockDatabase) -> str:
    """This test's database URL for SQLAlchemy with psycopg 3 (``postgresql+psycopg://``)."""
    return aidock_database.with_driver("psycopg")


@pytest.fixture
def aidock_async_url(aidock_database: AidockDatabase) -> str:
    """This test's database URL for an async SQLAlchemy engine (``postgresql+asyncpg://``)."""
    return aidock_database.with_driver("asyncpg")


@pytest.fixture
def aidock_conn(aidock_url: str):
    """A psycopg connection to this test's database, closed afterwards."""
    try:
        import psycopg
    except ImportError:
        pytest.fail("aidock_conn needs psycopg 3: pip install 'psycopg[binary]'", pytrace=False)
    conn = psycopg.connect(aidock_url)
    try:
        yield conn
    finally:
        conn.close()

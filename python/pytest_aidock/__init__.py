"""pytest fixtures: a fresh, seeded AI Dock database per test.

Load it from the test suite's ``conftest.py`` (one line; installing the package alone changes no
other suite)::

    pytest_plugins = ["pytest_aidock"]

Once per session the plugin runs ``aidock-provision template`` (a no-op when the template is
current), and for each test that asks for one of the fixtures below it clones that template with
``aidock-provision init --from-template`` into a database and login role of the test's own, and
drops both afterwards with ``aidock-provision reset``:

``aidock_database``
    an :class:`AidockDatabase` (``name``, ``owner``, ``password``, ``url``);
``aidock_url``
    its connection URL (``postgresql://...``), for the app's settings or SQLAlchemy;
``aidock_conn``
    a psycopg (3) connection to it, closed after the test (``pip install psycopg[binary]``);
``aidock_template``
    the session's template name, built and current.

Settings (command line, else environment, else ini file):

==========================  ===========================  ================================
``--aidock-project DIR``    ``AIDOCK_PROJECT_DIR``       ``aidock_project``: the
                                                         aidock-provision project (its
                                                         ``config/``, ``sql/``, ``seeds/``
                                                         and local cluster); relative to
                                                         the ini file's directory
``--aidock-bin PATH``       ``AIDOCK_PROVISION_BIN``     ``aidock_bin``; default: the
                                                         ``aidock-provision`` on ``PATH``
``--aidock-template NAME``  ``AIDOCK_TEMPLATE``          ``aidock_template``; default
                                                         ``aidock_pytest_template``
``--aidock-template-args``  ``AIDOCK_TEMPLATE_ARGS``     ``aidock_template_args``; default
                                                         ``--dev --users 10 --usage-logs 500``
==========================  ===========================  ================================

Everything else (which server: ``AIDOCK_ADMIN_URL`` or the project's local cluster; the
profile) is read by aidock-provision itself from the environment pytest runs in.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import subprocess
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, List, Optional

import pytest

__all__ = ["AidockDatabase", "Provisioner", "ProvisionError"]

DEFAULT_TEMPLATE = "aidock_pytest_template"
DEFAULT_TEMPLATE_ARGS = "--dev --users 10 --usage-logs 500"
#: Clones are named ``<this>_<16 hex digits>``: database and role alike.
CLONE_PREFIX = "aidock_t"


class ProvisionError(RuntimeError):
    """An aidock-provision command failed; the message holds what it printed."""


@dataclass(frozen=True)
class AidockDatabase:
    """One test's database: its own database and login role, cloned from the template."""

    name: str
    owner: str
    password: str = field(repr=False)
    url: str = field(repr=False)


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
    parser.addini("aidock_project", "the aidock-provision project directory (relative to the ini file)")
    parser.addini("aidock_bin", "the aidock-provision binary")
    parser.addini("aidock_template", f"template database name (default {DEFAULT_TEMPLATE})")
    parser.addini("aidock_template_args", f"flags for `aidock-provision template` (default {DEFAULT_TEMPLATE_ARGS!r})")


def _setting(config: pytest.Config, option: str, env: str, ini: str) -> Optional[str]:
    value = config.getoption(option)
    if value:
        return str(value)
    value = os.environ.get(env)
    if value:
        return value
    value = config.getini(ini)
    return str(value) if value else None


class Provisioner:
    """Runs aidock-provision for the fixtures (usable on its own, e.g. from a unittest suite)."""

    def __init__(
        self,
        binary: str,
        project: Optional[str] = None,
        template: str = DEFAULT_TEMPLATE,
        template_args: str = DEFAULT_TEMPLATE_ARGS,
    ) -> None:
        self.binary = binary
        self.project = project
        self.template = template
        self.template_args = shlex.split(template_args)
        # One password for this session's clones: random, never printed.
        self._password = secrets.token_hex(16)

    @classmethod
    def from_config(cls, config: pytest.Config) -> "Provisioner":
        binary = _setting(config, "aidock_bin", "AIDOCK_PROVISION_BIN", "aidock_bin")
        if binary is None:
            binary = shutil.which("aidock-provision")
            if binary is None:
                raise ProvisionError(
                    "aidock-provision is not on PATH; install it (cargo install --path <aidock-provision checkout>) "
                    "or name the binary with AIDOCK_PROVISION_BIN or --aidock-bin"
                )
        project = _setting(config, "aidock_project", "AIDOCK_PROJECT_DIR", "aidock_project")
        if project is not None and config.getoption("aidock_project") is None and not os.environ.get("AIDOCK_PROJECT_DIR"):
            # From the ini file: relative to it.
            base = Path(config.inipath).parent if config.inipath else Path(config.rootpath)
            project = str((base / project).resolve())
        template = _setting(config, "aidock_template", "AIDOCK_TEMPLATE", "aidock_template") or DEFAULT_TEMPLATE
        args = _setting(config, "aidock_template_args", "AIDOCK_TEMPLATE_ARGS", "aidock_template_args")
        return cls(binary, project, template, args if args is not None else DEFAULT_TEMPLATE_ARGS)

    def _env(self, database: Optional[str] = None) -> dict:
        env = dict(os.environ)
        if self.project is not None:
            env["AIDOCK_PROJECT_DIR"] = self.project
        if database is not None:
            env["AIDOCK__DATABASE__NAME"] = database
            env["AIDOCK__DATABASE__OWNER"] = database
            env["AIDOCK__DATABASE__PASSWORD"] = self._password
        return env

    def run(self, args: List[str], database: Optional[str] = None) -> str:
        """Run ``aidock-provision ARGS``; its stdout, or :class:`ProvisionError` with what it said."""
        command = [self.binary, *args]
        try:
            done = subprocess.run(
                command,
                env=self._env(database),
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
            raise ProvisionError(
                f"`aidock-provision {' '.join(args)}` failed (exit {done.returncode}):\n{said}"
            )
        return done.stdout

    def build_template(self) -> str:
        """Build or refresh the template (a no-op when current); its name."""
        self.run(["template", "-q", "--name", self.template, *self.template_args])
        return self.template

    def clone(self) -> AidockDatabase:
        """A new database and role cloned from the template."""
        name = f"{CLONE_PREFIX}_{secrets.token_hex(8)}"
        out = self.run(["init", "-q", "--json", "--from-template", self.template], database=name)
        database = AidockDatabase(name=name, owner=name, password=self._password, url="")
        try:
            masked = json.loads(out)["provision"]["url"]
        except (ValueError, KeyError, TypeError) as e:
            self.drop(database)
            raise ProvisionError(f"`aidock-provision init --json` printed no provision.url ({e!r}); is {self.binary} older than this plugin?") from e
        return AidockDatabase(name=name, owner=name, password=self._password, url=self._unmask(masked, name))

    def drop(self, database: AidockDatabase) -> None:
        """Drop a clone's database and role (already gone is fine)."""
        self.run(["reset", "-q", "--yes"], database=database.name)

    def _unmask(self, masked: str, user: str) -> str:
        parts = urllib.parse.urlsplit(masked)
        host = parts.netloc.rpartition("@")[2]
        netloc = f"{urllib.parse.quote(user, safe='')}:{urllib.parse.quote(self._password, safe='')}@{host}"
        return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@pytest.fixture(scope="session")
def aidock_provisioner(pytestconfig: pytest.Config) -> Provisioner:
    """The session's :class:`Provisioner` (settings read once)."""
    try:
        return Provisioner.from_config(pytestconfig)
    except ProvisionError as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture(scope="session")
def aidock_template(aidock_provisioner: Provisioner) -> str:
    """The template's name, built (or found current) once per session."""
    try:
        return aidock_provisioner.build_template()
    except ProvisionError as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture
def aidock_database(aidock_provisioner: Provisioner, aidock_template: str) -> Iterator[AidockDatabase]:
    """This test's own database, cloned from the template; dropped afterwards."""
    try:
        database = aidock_provisioner.clone()
    except ProvisionError as e:
        pytest.fail(str(e), pytrace=False)
    try:
        yield database
    finally:
        aidock_provisioner.drop(database)


@pytest.fixture
def aidock_url(aidock_database: AidockDatabase) -> str:
    """This test's database URL (its own role and password)."""
    return aidock_database.url


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

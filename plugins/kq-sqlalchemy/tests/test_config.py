"""URLs, options, schemes and capabilities: everything decided before a server is contacted."""

from __future__ import annotations

import subprocess
import sys

import pytest

from kq.exceptions import ConfigurationError
from kq.plugins import get_plugins
from kq_sqlalchemy.config import Options, database_url, parse_options
from kq_sqlalchemy.flavours import MYSQL, POSTGRESQL
from kq_sqlalchemy.mysql import MySQLBackend
from kq_sqlalchemy.postgresql import PostgreSQLBackend


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("db+postgresql://postgres@127.0.0.1:5432/test", "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
        (
            "db+postgresql+psycopg://u:p@db/kq?sslmode=require",
            "postgresql+psycopg://u:***@db/kq?sslmode=require",
        ),
        ("DB+PostgreSQL://h/d", "postgresql+psycopg://h/d"),
    ],
)
def test_postgresql_urls(url, expected):
    assert database_url(url, POSTGRESQL).render_as_string() == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("db+mysql://root@127.0.0.1:3306/test", "mysql+pymysql://root@127.0.0.1:3306/test"),
        ("db+mysql+pymysql://root@h/test?charset=utf8mb4", "mysql+pymysql://root@h/test?charset=utf8mb4"),
        ("db+mariadb://root@h/test", "mariadb+pymysql://root@h/test"),
    ],
)
def test_mysql_urls(url, expected):
    assert database_url(url, MYSQL).render_as_string() == expected


def test_the_password_survives_parsing():
    parsed = database_url("db+postgresql://kq:p%40ss@h/d", POSTGRESQL)
    assert parsed.password == "p@ss"


@pytest.mark.parametrize(
    ("url", "flavour", "message"),
    [
        (
            "postgresql://kq:s3cret@h/d",
            POSTGRESQL,
            "not a database result backend URL; expected one of "
            "db+postgresql://..., db+postgresql+psycopg://...",
        ),
        ("db+mysql://kq:s3cret@h/d", POSTGRESQL, "serves postgresql, not 'mysql'"),
        (
            "db+postgresql+psycopg2://kq:s3cret@h/d",
            POSTGRESQL,
            "driver 'psycopg2' is not supported; kq-sqlalchemy uses psycopg",
        ),
        ("db+mysql+mysqldb://kq:s3cret@h/d", MYSQL, "driver 'mysqldb' is not supported"),
        ("db+postgresql://kq:s3cret@h", POSTGRESQL, "names no database"),
        ("db+postgresql://kq:s3cret@h:port/d", POSTGRESQL, "not a valid database URL"),
        ("db+:://kq:s3cret@h", POSTGRESQL, "not a valid database URL"),
    ],
)
def test_bad_urls_are_refused_with_the_password_masked(url, flavour, message):
    with pytest.raises(ConfigurationError, match="kq:\\*\\*@") as caught:
        database_url(url, flavour)
    assert message in str(caught.value)
    assert "s3cret" not in str(caught.value)


def test_options_have_defaults_and_accept_strings():
    assert parse_options({}) == Options()
    assert parse_options(
        {"table_name": "results_2", "pool_size": "3", "max_overflow": 0, "connect_timeout": "5"}
    ) == Options("results_2", 3, 0, 5)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"table": "x"},
            "unknown kq-sqlalchemy option(s) table; accepted: "
            "connect_timeout, max_overflow, pool_size, table_name",
        ),
        ({"table_name": "kq results"}, "table_name must be a plain SQL identifier"),
        ({"table_name": "1results"}, "table_name must be a plain SQL identifier"),
        ({"table_name": "x" * 49}, "table_name must be a plain SQL identifier"),
        ({"table_name": "r; DROP TABLE users"}, "table_name must be a plain SQL identifier"),
        ({"pool_size": 0}, "pool_size must be a whole number >= 1, got 0"),
        ({"pool_size": "many"}, "pool_size must be a whole number >= 1, got 'many'"),
        ({"max_overflow": -1}, "max_overflow must be a whole number >= 0"),
        ({"connect_timeout": 2.5}, "connect_timeout must be a whole number >= 1"),
        ({"connect_timeout": True}, "connect_timeout must be a whole number >= 1"),
    ],
)
def test_bad_options_are_refused(options, message):
    with pytest.raises(ConfigurationError) as caught:
        parse_options(options)
    assert message in str(caught.value)


def test_backends_check_url_and_options_when_made():
    with pytest.raises(ConfigurationError, match="pool_size"):
        PostgreSQLBackend("db+postgresql://h/d", {"pool_size": 0})
    with pytest.raises(ConfigurationError, match="serves mysql, mariadb, not 'postgresql'"):
        MySQLBackend("db+postgresql://h/d")


def test_each_scheme_declares_its_backend_and_the_truth_about_it():
    plugins = get_plugins()
    for scheme in ("db+postgresql", "db+postgresql+psycopg"):
        spec = plugins.backend_for(f"{scheme}://h/d")
        assert spec.capabilities == PostgreSQLBackend.capabilities
        assert spec.capabilities.push and spec.capabilities.shared
    for scheme in ("db+mysql", "db+mysql+pymysql", "db+mariadb", "db+mariadb+pymysql"):
        spec = plugins.backend_for(f"{scheme}://h/d")
        assert spec.capabilities == MySQLBackend.capabilities
        assert not spec.capabilities.push and spec.capabilities.shared
    assert isinstance(plugins.backend_for("db+mysql://h/d").factory("db+mysql://h/d", {}), MySQLBackend)


def test_loading_the_plugin_imports_neither_sqlalchemy_nor_a_driver():
    """Every kq process loads every plugin; the heavy imports wait for the first backend."""
    code = (
        "import sys, kq_sqlalchemy; "
        "print(sorted(m for m in ('sqlalchemy', 'psycopg', 'pymysql') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

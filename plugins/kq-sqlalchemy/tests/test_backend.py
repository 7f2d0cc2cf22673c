"""What is special to kq-sqlalchemy, on PostgreSQL and MariaDB alike: the table, expiry, big
payloads, batches, and what happens when the server cannot be reached."""

from __future__ import annotations

import os
import time
import uuid

import pytest
import sqlalchemy as sa

from kq.backend import StoredResult
from kq.exceptions import BackendUnavailable
from kq.plugins import get_plugins
from kq.states import STARTED, SUCCESS


def result(payload: bytes = b"ok", state: str = SUCCESS, task_id: str = "") -> StoredResult:
    return StoredResult(task_id or uuid.uuid4().hex, state, payload)


def test_the_table_is_made_on_first_use_with_the_configured_name(make, engine, table, database):
    backend = make()
    assert not sa.inspect(engine).has_table(table)  # making a backend does not connect
    backend.store(result(), 60)
    inspector = sa.inspect(engine)
    columns = {c["name"]: c for c in inspector.get_columns(table)}
    assert list(columns) == ["task_id", "state", "payload", "expires_at", "date_done"]
    assert inspector.get_pk_constraint(table)["constrained_columns"] == ["task_id"]
    assert [i["column_names"] for i in inspector.get_indexes(table)] == [["expires_at"]]
    payload_type = str(columns["payload"]["type"])
    assert payload_type == ("BYTEA" if database == "postgresql" else "LONGBLOB")
    with engine.connect() as conn:
        assert conn.execute(sa.text(f"SELECT date_done FROM {table}")).scalar() is not None


def test_expired_results_read_as_missing_and_cleanup_counts_them(make):
    backend = make()
    short = [result() for _ in range(3)]
    kept, longer = result(), result()
    backend.store_many(short, ttl=1)
    backend.store(kept, ttl=None)
    backend.store(longer, ttl=3600)
    time.sleep(1.5)
    assert [backend.get(r.task_id) for r in short] == [None, None, None]  # before any cleanup
    assert backend.cleanup() == 3
    assert backend.cleanup() == 0
    assert backend.get(kept.task_id) == kept and backend.get(longer.task_id) == longer


def test_a_later_store_without_ttl_keeps_a_result_that_would_have_expired(make):
    backend = make()
    first = result(state=STARTED)
    backend.store(first, ttl=1)
    done = result(task_id=first.task_id)
    backend.store(done, ttl=None)
    time.sleep(1.5)
    assert backend.cleanup() == 0
    assert backend.get(first.task_id) == done


def test_counters_have_a_table_of_their_own_made_on_first_use(make, engine, table, database):
    backend = make()
    backend.store(result(), 60)
    counters = f"{table}_counters"
    assert not sa.inspect(engine).has_table(counters)  # results alone do not make it
    assert backend.incr("chord", 2, expires=60) == 2
    inspector = sa.inspect(engine)
    assert [c["name"] for c in inspector.get_columns(counters)] == ["name", "value", "expires_at"]
    assert inspector.get_pk_constraint(counters)["constrained_columns"] == ["name"]
    assert [i["column_names"] for i in inspector.get_indexes(counters)] == [["expires_at"]]
    with engine.connect() as conn:
        name, value = conn.execute(sa.text(f"SELECT name, value FROM {counters}")).one()
    assert (bytes(name), value) == (b"chord", 2)


def test_the_longest_table_name_leaves_room_for_the_counters_table(url, engine):
    name = f"kq_test_{uuid.uuid4().hex}".ljust(48, "x")
    backend = get_plugins().backend_for(url).factory(url, {"table_name": name})
    try:
        assert backend.incr("chord") == 1
        assert sa.inspect(engine).get_indexes(f"{name}_counters")[0]["name"] == f"{name}_counters_exp"
    finally:
        backend.close()
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {name}_counters"))
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {name}"))


def test_expired_counters_restart_and_cleanup_counts_them(make):
    backend = make()
    for name in ("old1", "old2"):
        backend.incr(name, 5, expires=1)
    backend.incr("kept", 5, expires=3600)
    backend.incr("forever", 5)
    expired = result()
    backend.store(expired, ttl=1)
    time.sleep(1.5)
    assert backend.incr("old1") == 1  # before any cleanup
    assert backend.cleanup() == 2  # old2 and the result
    assert backend.cleanup() == 0
    assert [backend.incr(n) for n in ("old1", "kept", "forever")] == [2, 6, 6]


def test_a_counter_name_longer_than_mysql_allows_is_an_error_on_mysql_only(make, database):
    backend = make()
    name = "x" * 256
    if database == "mysql":
        with pytest.raises(sa.exc.DBAPIError):
            backend.incr(name)
    else:
        assert backend.incr(name) == 1


def test_five_megabyte_payloads_round_trip(make):
    backend = make()
    big = result(os.urandom(5 * 1024 * 1024))
    backend.store(big, 60)
    assert backend.get(big.task_id) == big
    batch = [result(os.urandom(5 * 1024 * 1024)) for _ in range(3)]
    backend.store_many(batch, 60)
    assert [backend.get(r.task_id) for r in batch] == batch


def test_an_id_twice_in_one_batch_keeps_the_later(make):
    backend = make()
    first = result(b"first", STARTED)
    later = result(b"later", task_id=first.task_id)
    backend.store_many([first, result(), later], 60)
    assert backend.get(first.task_id) == later


def test_a_closed_backend_reconnects_on_next_use(make):
    backend = make()
    stored = result()
    backend.store(stored, 60)
    backend.close()
    assert backend.get(stored.task_id) == stored


def test_an_unreachable_server_raises_backend_unavailable_with_the_password_masked(database):
    # Port 1: nothing listens there, so the connection is refused at once.
    url = f"db+{database}://kq:s3cret@127.0.0.1:1/test"
    backend = get_plugins().backend_for(url).factory(url, {"connect_timeout": 2})
    try:
        for call in (
            lambda: backend.store(result(), 60),
            lambda: backend.get("x"),
            lambda: backend.wait("x", 1),
            lambda: backend.forget("x"),
            backend.cleanup,
            lambda: backend.get_many(["x"]),
            lambda: backend.incr("x"),
            lambda: backend.delete_counter("x"),
        ):
            with pytest.raises(BackendUnavailable) as caught:
                call()
            message = str(caught.value)
            assert message.startswith(
                f"result backend db+{database}://kq:**@127.0.0.1:1/test is unavailable: "
            )
            assert "s3cret" not in message
    finally:
        backend.close()


def test_statement_errors_do_not_quote_the_payload(make):
    """Payloads are task results and may be secret: they never appear in an error's text."""
    backend = make()
    backend.get("create the table")
    with pytest.raises(sa.exc.DBAPIError) as caught:
        backend.store(result(b"secret-result-value", state="S" * 200), 60)  # state is 50 wide
    assert "secret-result-value" not in str(caught.value)

"""Many writers at once, as on a busy worker fleet: table creation and upserts, across threads
and processes, on PostgreSQL and MariaDB."""

from __future__ import annotations

import json
import random
import threading
import uuid

import sqlalchemy as sa

from kq.backend import StoredResult
from kq.states import STARTED, SUCCESS

# Child processes make a backend, say "ready", and start on "go" from the test, so that they
# all hit the server at the same moment.
STORE_ONE = """
import sys, uuid
from kq.backend import StoredResult
from kq.plugins import get_plugins
url, table = sys.argv[1:]
backend = get_plugins().backend_for(url).factory(url, {"table_name": table})
print("ready", flush=True)
sys.stdin.readline()
backend.store(StoredResult(uuid.uuid4().hex, "SUCCESS", b"ok"), None)
backend.close()
print("stored", flush=True)
"""

WRITER = """
import json, sys
from kq.plugins import get_plugins
url, table, plan = sys.argv[1:]
backend = get_plugins().backend_for(url).factory(url, {"table_name": table})
plan = json.loads(plan)
print("ready", flush=True)
sys.stdin.readline()
from kq.backend import StoredResult
for batch in plan:
    backend.store_many([StoredResult(i, s, p.encode()) for i, s, p in batch], 60)
backend.close()
print("done", flush=True)
"""

ROUNDS = 30


def test_four_processes_create_the_table_at_once(url, engine, spawn):
    for _ in range(3):  # a fresh table each round: three chances to race
        table = f"kq_test_{uuid.uuid4().hex[:12]}"
        try:
            children = [spawn(STORE_ONE, url, table) for _ in range(4)]
            for child in children:
                assert child.stdout.readline().strip() == "ready"
            for child in children:
                child.stdin.write("go\n")
                child.stdin.flush()
            for child in children:
                assert child.stdout.readline().strip() == "stored"
                assert child.wait(60) == 0
            inspector = sa.inspect(engine)
            assert [i["column_names"] for i in inspector.get_indexes(table)] == [["expires_at"]]
            with engine.connect() as conn:
                assert conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar() == 4
        finally:
            with engine.begin() as conn:
                conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))


def plan(writer: str, shared: list[str]) -> list[list[tuple[str, str, bytes]]]:
    """ROUNDS batches: the ids every writer shares (in a random order, so batches disagree on
    order) and ids of the writer's own. Each row says who wrote it in which round; only the
    last round is SUCCESS."""
    own = [f"{writer}-{n}" for n in range(10)]
    batches = []
    for r in range(ROUNDS):
        ids = shared + own
        random.shuffle(ids)
        state = SUCCESS if r == ROUNDS - 1 else STARTED
        batches.append([(task_id, state, f"{writer}:{r}".encode()) for task_id in ids])
    return batches


def test_concurrent_upserts_from_threads_and_processes(url, make, spawn):
    """8 threads and 3 processes write the same 20 ids and 10 of their own, 30 batches each, in
    conflicting orders: nobody fails (no deadlock), and each id holds a last write."""
    shared = [uuid.uuid4().hex for _ in range(20)]
    backend = make()
    backend.get("create the table before the processes race for it")
    thread_names = [f"t{n}" for n in range(8)]
    process_names = [f"p{n}" for n in range(3)]
    children = [
        spawn(
            WRITER,
            url,
            backend.table.name,
            json.dumps([[[i, s, p.decode()] for i, s, p in b] for b in plan(name, shared)]),
        )
        for name in process_names
    ]
    for child in children:
        assert child.stdout.readline().strip() == "ready"
    errors: list[BaseException] = []
    go = threading.Event()

    def write(name: str) -> None:
        go.wait()
        try:
            for batch in plan(name, shared):
                backend.store_many([StoredResult(*row) for row in batch], 60)
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(name,)) for name in thread_names]
    for thread in threads:
        thread.start()
    for child in children:
        child.stdin.write("go\n")
        child.stdin.flush()
    go.set()
    for thread in threads:
        thread.join(120)
    for child in children:
        assert child.stdout.readline().strip() == "done"
        assert child.wait(60) == 0
    assert errors == []
    last = f":{ROUNDS - 1}".encode()
    finals = {f"{name}:{ROUNDS - 1}".encode() for name in thread_names + process_names}
    for task_id in shared:
        found = backend.get(task_id)
        assert found is not None and found.state == SUCCESS and found.payload in finals
    for name in thread_names + process_names:
        for n in range(10):
            found = backend.get(f"{name}-{n}")
            assert found == StoredResult(f"{name}-{n}", SUCCESS, name.encode() + last)

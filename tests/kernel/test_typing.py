"""``@app.task`` and ``@kq.shared_task`` keep the function's signature for type checkers: mypy,
run on a typed module, rejects wrong calls of ``delay``, ``__call__`` and bound tasks and accepts
the right ones.

The checked module is written to ``tmp_path`` and checked in a subprocess with its own cache,
so the run sees the installed kq (through its ``py.typed``) exactly as a user's project would.
"""

import os
import pathlib
import re
import subprocess
import sys
import textwrap

MODULE = """
from kq import App, Task, shared_task

app = App("typed")


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="typed.scale", queue="q", priority=5)
def scale(x: float, *, factor: float = 2.0) -> float:
    return x * factor


@app.task(bind=True)
def tag(self: Task, label: str) -> str:
    return f"{self.request}:{label}"


add.delay(1, 2)
add.delay("a", 2)  # error: arg-type (str for int)
total: int = add(1, 2)
text: str = add(1, 2)  # error: assignment (the task returns int)
scale.delay(1.5, factor=3.0)
scale.delay(1.5, 3.0)  # error: call-arg (factor is keyword-only)
tag.delay("x")
tag.delay(tag, "x")  # error: call-arg, arg-type (a bound task's self is not the caller's)
reveal_type(tag)


def triple(x: int) -> int:
    return 3 * x


tripled = app.task(triple, name="typed.triple")  # not as a decorator
tripled.delay(1)
tripled.delay("1")  # error: arg-type


@shared_task
def negate(x: int) -> int:
    return -x


@shared_task(bind=True, name="typed.echo")
def echo(self, text: str) -> str:
    return text


negate.delay(1)
negate.delay("1")  # error: arg-type
echo.delay("a")
echo.delay(1)  # error: arg-type
"""


def expected_errors(source: str) -> dict[int, set[str]]:
    """Line number -> the mypy error codes its ``# error:`` comment names."""
    found = {}
    for number, line in enumerate(source.splitlines(), 1):
        if "# error: " in line:
            codes = line.split("# error: ", 1)[1].split(" (", 1)[0]
            found[number] = {code.strip() for code in codes.split(",")}
    return found


def run_mypy(tmp_path: pathlib.Path, source: str) -> list[str]:
    path = tmp_path / "typed_tasks.py"
    path.write_text(source)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file=",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--follow-imports=silent",
            "--no-error-summary",
            "--show-error-codes",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
        env={**os.environ, "MYPYPATH": ""},  # kq as installed, found through its py.typed
    )
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr  # 2 would be a crash or bad usage
    return [line for line in proc.stdout.splitlines() if line.startswith("typed_tasks.py:")]


def test_mypy_rejects_wrong_calls_and_accepts_right_ones(tmp_path: pathlib.Path) -> None:
    source = textwrap.dedent(MODULE).lstrip("\n")
    lines = run_mypy(tmp_path, source)
    errors: dict[int, set[str]] = {}
    for line in lines:
        found = re.match(r"typed_tasks\.py:(\d+): error: .*\[([a-z-]+)\]$", line)
        if found:
            errors.setdefault(int(found[1]), set()).add(found[2])
    assert errors == expected_errors(source), "\n".join(lines)
    revealed = [line for line in lines if "Revealed type" in line]
    assert len(revealed) == 1 and "kq.task.Task[[label: str], str]" in revealed[0], lines

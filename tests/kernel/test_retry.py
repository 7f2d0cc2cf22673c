"""Retries in the kernel: the backoff policy, ``Task.retry`` and ``autoretry_for`` under eager
``apply()`` (which runs each retry at once, in process), custom base classes and the retry hook.
"""

import itertools

import pytest

from kq import App, MaxRetriesExceededError, Retry, Task, hookimpl
from kq.exceptions import KQError
from kq.plugins import get_plugins
from kq.retry import RetryPolicy
from kq.states import FAILURE, RETRY, SUCCESS


@pytest.fixture
def app():
    return App("retry", broker="memory://", backend="memory://")


def test_backoff_doubles_from_its_base_up_to_the_cap():
    policy = RetryPolicy(retry_backoff=True, retry_jitter=False, retry_backoff_max=10)
    assert [policy.backoff(n) for n in range(6)] == [1, 2, 4, 8, 10, 10]
    assert RetryPolicy(retry_backoff=3, retry_jitter=False).backoff(2) == 12
    assert RetryPolicy(retry_backoff=1, retry_jitter=False).backoff(10_000) == 600


def test_full_jitter_draws_below_the_backoff():
    policy = RetryPolicy(retry_backoff=2, retry_backoff_max=100)
    assert policy.backoff(3, rand=lambda: 0.0) == 0
    assert policy.backoff(3, rand=lambda: 0.5) == 8
    assert policy.backoff(3, rand=lambda: 0.999) == pytest.approx(15.984)


def test_without_backoff_an_automatic_retry_waits_the_default_delay():
    assert RetryPolicy().autoretry_delay(5) == 180
    assert RetryPolicy(default_retry_delay=7).autoretry_delay(0) == 7
    assert RetryPolicy(retry_backoff=True, retry_jitter=False).autoretry_delay(2) == 4


def test_policy_defaults_and_exhaustion():
    policy = RetryPolicy()
    assert (policy.max_retries, policy.retry_backoff_max, policy.retry_jitter) == (3, 600, True)
    assert not policy.exhausted(2) and policy.exhausted(3)
    assert not RetryPolicy(max_retries=None).exhausted(10**9)


@pytest.mark.parametrize(
    "options",
    [
        {"max_retries": -1},
        {"retry_backoff": "soon"},
        {"retry_backoff_max": -5},
        {"default_retry_delay": True},
    ],
)
def test_bad_policy_values_are_refused(options):
    with pytest.raises(ValueError):
        RetryPolicy(**options)


def test_autoretry_for_must_name_exception_classes(app):
    with pytest.raises(TypeError, match="exception classes"):
        app.task(autoretry_for=("ValueError",))(lambda: None)


def test_unknown_task_option_is_refused(app):
    with pytest.raises(TypeError, match="unknown task option"):
        app.task(retry_forever=True)(lambda: None)


def test_eager_autoretry_runs_until_success_with_the_same_id(app):
    seen = []

    @app.task(bind=True, autoretry_for=(ValueError,), retry_backoff=True)
    def flaky(self):
        seen.append((self.request.id, self.request.retries))
        if self.request.retries < 2:
            raise ValueError("not yet")
        return "done"

    result = flaky.apply(task_id="t1")
    assert result.state == SUCCESS and result.get() == "done"
    assert seen == [("t1", 0), ("t1", 1), ("t1", 2)]


def test_eager_autoretry_used_up_fails_with_the_original_exception(app):
    runs = itertools.count()

    @app.task(autoretry_for=(ValueError,), max_retries=1)
    def always():
        raise ValueError(f"run {next(runs)}")

    result = always.apply()
    assert result.state == FAILURE
    with pytest.raises(ValueError, match="run 1"):
        result.get()


def test_other_exceptions_are_not_retried(app):
    runs = itertools.count()

    @app.task(autoretry_for=(ValueError,))
    def other():
        next(runs)
        raise KeyError("no")

    assert other.apply().state == FAILURE
    assert next(runs) == 1


def test_manual_retry_changes_arguments_and_ends_in_max_retries_exceeded(app):
    seen = []

    @app.task(bind=True, max_retries=2)
    def step(self, n):
        seen.append(n)
        raise self.retry(exc=OSError("down"), countdown=5, args=(n + 1,))

    result = step.apply((0,))
    assert seen == [0, 1, 2]
    with pytest.raises(MaxRetriesExceededError) as raised:
        result.get()
    assert isinstance(raised.value.__cause__, OSError)


def test_retry_max_retries_argument_overrides_the_task(app):
    seen = []

    @app.task(bind=True)
    def step(self):
        seen.append(self.request.retries)
        self.retry(countdown=0, max_retries=0)

    assert step.apply().state == FAILURE
    assert seen == [0]


def test_retry_outside_a_run_is_an_error(app):
    @app.task
    def idle():
        return None

    with pytest.raises(KQError, match="outside a run"):
        idle.retry()


def test_raising_retry_without_a_message_records_retry_and_sends_nothing(app):
    @app.task
    def halt():
        raise Retry(exc=RuntimeError("later"))

    result = halt.apply()
    assert result.state == RETRY
    assert isinstance(result.result, RuntimeError)


def test_a_custom_base_class_supplies_the_policy_and_methods(app):
    class Patient(Task):
        autoretry_for = (ConnectionError,)
        max_retries = 5
        retry_backoff = 2

        def attempt(self):
            return self.request.retries

    @app.task(base=Patient, bind=True)
    def reach(self):
        if self.attempt() < 4:
            raise ConnectionError("refused")
        return self.attempt()

    assert isinstance(reach, Patient)
    assert reach.retry_policy.retry_backoff == 2
    assert reach.apply().get() == 4

    @app.task(base=Patient, max_retries=0)
    def once():
        raise ConnectionError("refused")

    with pytest.raises(ConnectionError):
        once.apply().get()


def test_app_task_cls_is_the_default_base():
    class Audited(Task):
        max_retries = 9

    app = App("custom", broker="memory://", backend="memory://", task_cls=Audited)

    @app.task
    def job():
        return 1

    assert type(job) is Audited and job.retry_policy.max_retries == 9


def test_the_retry_hook_gets_the_reason(app):
    seen = []

    class Recorder:
        @hookimpl
        def kq_task_retry(self, task, request, reason):
            seen.append((task.name, request.retries, repr(reason)))

        @hookimpl
        def kq_task_postrun(self, task, request, state, retval):
            seen.append(state)

    plugins = get_plugins()
    recorder = Recorder()
    plugins.register(recorder, "retry-recorder")
    try:

        @app.task(name="hooked.retry", autoretry_for=(ValueError,), max_retries=1)
        def hooked():
            raise ValueError("x")

        hooked.apply()
    finally:
        plugins.unregister("retry-recorder")
    assert seen == [("hooked.retry", 0, "ValueError('x')"), RETRY, FAILURE]

"""kq.compat.celery: Celery's names and setting spellings mapped onto kq's (no Celery needed)."""

import pytest

import kq
from kq.compat import celery as compat
from kq.exceptions import ConfigurationError, KQError


def test_celery_is_an_app_taking_celerys_constructor_arguments() -> None:
    app = compat.Celery(
        "proj", broker="memory://", backend=None, worker_concurrency=3, CELERY_TASK_SERIALIZER="json"
    )
    assert isinstance(app, kq.App)
    assert app.main == "proj"
    assert (app.conf.broker_url, app.conf.result_backend) == ("memory://", None)
    assert (app.conf.worker_concurrency, app.conf.task_serializer) == (3, "json")


def test_include_is_refused_with_what_to_do_instead() -> None:
    with pytest.raises(ConfigurationError, match="import the task modules"):
        compat.Celery("proj", broker="memory://", include=["proj.tasks"])


def test_config_from_object_with_a_namespace_reads_only_that_namespace() -> None:
    app = compat.Celery("proj", broker="memory://", backend=None)
    app.config_from_object(
        {
            "CELERY_BROKER_URL": "redis://localhost/3",
            "DEBUG": True,
            "CELERY_TASK_ACKS_LATE": True,
            "CELERYD_CONCURRENCY": 5,
        },
        namespace="CELERY",
    )
    assert app.conf.broker_url == "redis://localhost/3"
    assert app.conf.task_acks_late is True
    assert app.conf.worker_concurrency == 5


def test_old_names_are_translated_and_other_uppercase_names_skipped() -> None:
    settings = compat.settings_from_celery(
        {
            "BROKER_URL": "amqp://",
            "CELERY_RESULT_BACKEND": "redis://",
            "CELERYBEAT_SCHEDULE": {},
            "CELERYD_TASK_SOFT_TIME_LIMIT": 5,
            "SECRET_KEY": "x",
            "timezone": "UTC",
        }
    )
    assert settings == {
        "broker_url": "amqp://",
        "result_backend": "redis://",
        "beat_schedule": {},
        "task_soft_time_limit": 5,
        "timezone": "UTC",
    }


def test_a_module_attribute_is_read_by_its_dotted_name(tmp_path, monkeypatch) -> None:
    (tmp_path / "compat_settings_mod.py").write_text(
        "import os\nfrom datetime import timedelta\n"
        "class settings:\n    CELERY_BROKER_URL = 'memory://'\n    INSTALLED_APPS = []\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert compat.settings_from_celery("compat_settings_mod:settings", namespace="CELERY") == {
        "broker_url": "memory://"
    }


def test_a_celery_setting_kq_lacks_fails_naming_it() -> None:
    with pytest.raises(ConfigurationError, match="task_always_eager"):
        compat.Celery("proj", broker="memory://", backend=None, task_always_eager=True)
    with pytest.raises(ConfigurationError, match="celery_always_eager"):
        compat.Celery("proj", broker="memory://", backend=None, CELERY_ALWAYS_EAGER=True)


def test_shared_task_registers_with_a_celery_app_made_later() -> None:
    @compat.shared_task(name="compat.add")
    def add(x: int, y: int) -> int:
        return x + y

    app = compat.Celery("proj", broker="memory://", backend=None)
    assert "compat.add" in app.tasks
    assert app.tasks["compat.add"].apply(args=(2, 3)).get() == 5
    assert compat.current_app.main == "proj"


def test_the_other_names_are_kqs_own() -> None:
    assert (compat.group, compat.chain, compat.chord, compat.signature) == (
        kq.group,
        kq.chain,
        kq.chord,
        kq.signature,
    )
    assert compat.states.SUCCESS == "SUCCESS"
    assert compat.TaskRevokedError is kq.TaskRevoked
    for error in (
        compat.Retry,
        compat.SoftTimeLimitExceeded,
        compat.TimeLimitExceeded,
        compat.MaxRetriesExceededError,
        compat.WorkerLostError,
    ):
        assert issubclass(error, KQError)
    assert isinstance(compat.signature("compat.add", args=(1, 2)), compat.Signature)

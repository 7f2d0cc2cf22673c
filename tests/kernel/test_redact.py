"""kq.redact masks passwords in every URL form kq accepts, secret options, settings and
drivers' messages, and keeps what tells a person which server is meant."""

import pytest

from kq import App
from kq.config import safe_url as safe_url_from_config
from kq.exceptions import ConfigurationError
from kq.redact import is_secret_name, safe_options, safe_setting, safe_url, scrub


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@127.0.0.1:6379/0", "redis://:**@127.0.0.1:6379/0"),
        (
            "rediss://user:s3cret@cache.example:6380/1?ssl_cert_reqs=required",
            "rediss://user:**@cache.example:6380/1?ssl_cert_reqs=required",
        ),
        ("amqp://guest:guest@localhost:5672//", "amqp://guest:**@localhost:5672//"),
        ("db+postgresql://kq:s%40cr%2Fet@db/kq", "db+postgresql://kq:**@db/kq"),  # URL-encoded
        ("redis://:s3c@ret@host/0", "redis://:**@host/0"),  # an unescaped "@" in the password
        ("amqp://u:p1@a//;amqp://u:p2@b//", "amqp://u:**@a//;amqp://u:**@b//"),  # failover list
        ("redis://host:6379/0?password=s3cret&db=2", "redis://host:6379/0?password=**&db=2"),
        ("sqs://AKIA:s3cret@", "sqs://AKIA:**@"),
        ("redis://user@host/0", "redis://user@host/0"),  # no password: nothing to hide
        ("sqlite:///kq.sqlite3", "sqlite:///kq.sqlite3"),
        ("memory://", "memory://"),
    ],
)
def test_safe_url_masks_the_password_and_keeps_the_rest(url, shown):
    assert safe_url(url) == shown
    assert safe_url_from_config is safe_url  # where plugins import it from


def test_safe_url_of_nothing():
    assert safe_url(None) == "None" and safe_url("") == ""


def test_secret_names():
    assert all(
        map(
            is_secret_name,
            [
                "password",
                "sasl_password",
                "passwd",
                "secret_key",
                "token",
                "api_key",
                "AccessKey",
                "key",
                "credentials",
            ],
        )
    )
    assert not any(
        map(
            is_secret_name,
            ["global_keyprefix", "unacked_key", "ssl_keyfile", "visibility_timeout", "username"],
        )
    )


def test_safe_options_masks_secret_names_and_urls_at_any_depth():
    options = {
        "sentinel_kwargs": {"password": "s3cret", "socket_timeout": 1},
        "token": "s3cret",
        "password": "",
        "fallbacks": ["redis://:s3cret@b/0"],
        "visibility_timeout": 60,
        "global_keyprefix": "app:",
    }
    assert safe_options(options) == {
        "sentinel_kwargs": {"password": "**", "socket_timeout": 1},
        "token": "**",
        "password": "",
        "fallbacks": ["redis://:**@b/0"],
        "visibility_timeout": 60,
        "global_keyprefix": "app:",
    }


def test_safe_setting():
    assert safe_setting("broker_url", "amqp://u:pw@h//") == "amqp://u:**@h//"
    assert safe_setting("beat_store", "redis://:pw@h/0") == "redis://:**@h/0"
    assert safe_setting("dashboard_token", "abc") == "**"
    assert safe_setting("result_backend_options", {"password": "pw"}) == {"password": "**"}
    assert safe_setting("result_backend", None) is None
    assert safe_setting("task_default_queue", "celery") == "celery"


def test_scrub_masks_a_password_in_free_text_also_in_the_pieces_a_parser_cut_it_into():
    url = "redis://u:s3c/ret%21@host/0"
    assert scrub("auth failed for s3c/ret%21 (s3c/ret!)", url) == "auth failed for ** (**)"
    # urllib takes "s3c" for the port of a password holding an unescaped "/".
    assert scrub("Port could not be cast to integer value as 's3c'", url) == (
        "Port could not be cast to integer value as '**'"
    )
    assert scrub("bad password s3cret", "redis://host/0?password=s3cret") == "bad password **"
    assert scrub("Connection refused", "redis://host/0", None) == "Connection refused"


def test_settings_repr_and_environment_errors_hide_secrets(monkeypatch):
    app = App(
        "t",
        broker_url="redis://u:s3cret@h/0",
        result_backend="db+mysql://u:s3cret@h/kq",
        broker_transport_options={"sentinel_kwargs": {"password": "s3cret"}},
    )
    shown = repr(app.conf)
    assert "s3cret" not in shown
    assert "broker_url='redis://u:**@h/0'" in shown and "'password': '**'" in shown
    monkeypatch.setenv("KQ_BROKER_TRANSPORT_OPTIONS", '{"password": s3cret}')  # invalid JSON
    with pytest.raises(ConfigurationError) as caught:
        App("t").conf  # noqa: B018
    assert "KQ_BROKER_TRANSPORT_OPTIONS" in str(caught.value)
    assert "s3cret" not in str(caught.value)


def test_an_invalid_redis_url_error_names_no_piece_of_the_password():
    with pytest.raises(ConfigurationError) as caught:
        App("t", broker_url="redis://u:s3c/ret@127.0.0.1:6379/0").new_transport()
    assert "s3c" not in str(caught.value) and "percent-encode" in str(caught.value)

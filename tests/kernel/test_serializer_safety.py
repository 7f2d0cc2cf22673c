"""What kq says about formats it refuses, and the one warning about settings that name pickle."""

from __future__ import annotations

import logging

import pytest

from kq import App
from kq.builtins import kq_serializers
from kq.exceptions import ConfigurationError, ContentDisallowed
from kq.serialization import Serializers, to_plain

PICKLE = "application/x-python-serialize"


@pytest.fixture
def builtins() -> Serializers:
    """json and pickle only, whatever else is installed here."""
    return Serializers(kq_serializers())


def refusal(serializers: Serializers, content_type: str, accept: list[str]) -> str:
    with pytest.raises(ContentDisallowed) as info:
        serializers.loads(b"\x80\x04N.", content_type, serializers.accept_set(accept))
    assert info.value.reason == "content-type"
    return info.value.detail


def test_refusing_pickle_says_how_to_opt_in_and_why_not_to(builtins: Serializers) -> None:
    assert refusal(builtins, PICKLE, ["json"]) == (
        "content type 'application/x-python-serialize' (pickle) is not in accept_content (json); "
        "pickle runs code while loading, so anyone who can write to the broker could run code on "
        "this worker: accept it only on a broker only trusted clients can write to, with "
        "accept_content=['json', 'pickle']"
    )


def test_refusing_a_safe_format_says_what_to_list(builtins: Serializers) -> None:
    assert refusal(builtins, "application/json", ["pickle"]) == (
        "content type 'application/json' (json) is not in accept_content (pickle); to decode it, "
        "list it: accept_content=['pickle', 'json']"
    )


def test_refusing_a_format_not_installed_names_its_package(builtins: Serializers) -> None:
    assert refusal(builtins, "application/x-msgpack", ["json"]).endswith(
        "to decode it, pip install kq-msgpack and list it there"
    )
    assert refusal(builtins, "text/x-unknown", ["json"]) == (
        "content type 'text/x-unknown' is not in accept_content (json)"
    )


def test_an_unknown_serializer_name_names_its_package(builtins: Serializers) -> None:
    with pytest.raises(ConfigurationError, match="pip install kq-yaml"):
        builtins.get("yaml")


def warnings_of(caplog: pytest.LogCaptureFixture, **settings: object) -> list[str]:
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="kq.app"):
        App("t", **settings).conf  # noqa: B018
    return [r.getMessage() for r in caplog.records if r.name == "kq.app"]


def test_no_warning_for_the_defaults(caplog: pytest.LogCaptureFixture) -> None:
    assert warnings_of(caplog) == []
    assert warnings_of(caplog, accept_content=["json"], task_serializer="json") == []


def test_sending_pickle_that_workers_refuse_is_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    [warning] = warnings_of(caplog, task_serializer="pickle")
    assert "task_serializer is pickle but accept_content (json) does not list it" in warning
    assert "accept_content=['json', 'pickle']" in warning
    assert "pickle runs code while loading" in warning


@pytest.mark.parametrize("accept", [["json", "pickle"], ["json", PICKLE]], ids=["name", "type"])
def test_accepting_pickle_is_one_warning(caplog: pytest.LogCaptureFixture, accept: list[str]) -> None:
    [warning] = warnings_of(caplog, accept_content=accept, task_serializer="pickle")
    assert warning.startswith(
        "kq: accept_content lists pickle, so anyone who can write to the "
        "broker can run code in this app's workers"
    )
    assert "task_serializer" not in warning  # it is accepted: nothing more to say about it


def test_every_pickle_setting_in_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    [warning] = warnings_of(caplog, accept_content=["json", "pickle"], result_serializer="pickle")
    assert "accept_content lists pickle" in warning
    assert "result_serializer is pickle" in warning
    assert "result backend" in warning


def test_to_plain_is_what_json_makes_of_common_types() -> None:
    import datetime
    import uuid
    from decimal import Decimal

    assert to_plain(datetime.date(2024, 5, 1)) == "2024-05-01"
    assert to_plain(uuid.UUID(int=1)) == "00000000-0000-0000-0000-000000000001"
    assert to_plain(Decimal("1.10")) == "1.10"
    assert sorted(to_plain(frozenset({2, 1}))) == [1, 2]
    with pytest.raises(TypeError, match="Object of type object is not serializable"):
        to_plain(object())

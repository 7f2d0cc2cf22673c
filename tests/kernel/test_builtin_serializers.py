"""The built-in serializers pass the same contract as any serializer plugin."""

import pytest

from kq.testing.contracts import SerializerContract


class TestJson(SerializerContract):
    @pytest.fixture
    def serializer_name(self):
        return "json"


class TestPickle(SerializerContract):
    @pytest.fixture
    def serializer_name(self):
        return "pickle"

    def test_declared_unsafe(self, spec):
        assert spec.safe is False

"""kq-yaml: the ``yaml`` serializer, in kombu's content type so Celery reads it too.

Every kq process imports this module, so it holds only the hook: PyYAML (about 20 ms to import)
and the codec (:mod:`kq_yaml.codec`) are imported by the first message encoded or decoded.
"""

from __future__ import annotations

from kq import hookimpl
from kq.serialization import SerializerSpec
from kq.specs import lazy

__version__ = "0.1.0"
__all__ = ["CONTENT_TYPE", "kq_serializers"]

#: kombu's (and so Celery's) name for YAML bodies.
CONTENT_TYPE = "application/x-yaml"


@hookimpl
def kq_serializers() -> list[SerializerSpec]:
    return [
        SerializerSpec(
            name="yaml",
            content_type=CONTENT_TYPE,
            dumps=lazy("kq_yaml.codec:dumps"),
            loads=lazy("kq_yaml.codec:loads"),
            content_encoding="utf-8",
            safe=True,
            description="YAML, loaded with the safe loader only; aliases refused",
        )
    ]

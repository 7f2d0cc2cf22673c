"""The bytes between a serializer and the broker: compression, signatures and size limits.

Publishing: serialize, compress (``task_compression`` or ``compression=``), check the size, sign.
Receiving, before the serializer sees a byte: check the size, verify the signature, inflate.
The order is what keeps a worker from spending memory on bytes it will not accept: a forged
message is refused before it is inflated, and inflation stops at ``message_max_size`` so a small
"zip bomb" cannot allocate gigabytes.

Compression formats and signers are plugin areas (``kq_compressions``, ``kq_message_signers``);
zlib, bz2 and lzma are built in. The ``compression`` header and its content types are kombu's,
so Celery workers inflate what kq compresses and the other way round.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from .exceptions import ConfigurationError, EncodeError, MessageRejected
from .transport import Envelope

#: The message header naming the compression (kombu's name for it).
COMPRESSION_HEADER = "compression"


@attrs.frozen
class CompressionSpec:
    """A compression format, as a plugin declares it in ``kq_compressions``."""

    #: What users write in ``task_compression`` and ``compression=`` (``zlib``, ``zstd``).
    name: str
    #: The value of the message's ``compression`` header (kombu's: ``application/x-gzip``).
    content_type: str
    compress: Callable[[bytes], bytes]
    #: Called as ``decompress(data, limit)``. Return at most ``limit + 1`` bytes: the kernel
    #: refuses the message when more than ``limit`` come back, so a decompressor must stop
    #: there rather than inflate everything. Raise any exception on corrupt input.
    decompress: Callable[[bytes, int], bytes]
    #: Other names accepted for it (``gzip`` for zlib, as kombu accepts).
    aliases: tuple[str, ...] = attrs.field(default=(), converter=tuple[str, ...])
    description: str = ""


class Signer(abc.ABC):
    """Signs what a client publishes and verifies what a worker receives.

    Checked by :class:`kq.testing.contracts.SignerContract`. ``verify`` runs before anything in
    the message is parsed, so it must rely on nothing but the bytes and headers it is given.
    """

    @abc.abstractmethod
    def sign(self, envelope: Envelope) -> Envelope:
        """Return ``envelope`` with its signature (in headers, or wrapped around the body)."""

    @abc.abstractmethod
    def verify(self, envelope: Envelope) -> Envelope:
        """Return the envelope as it was before :meth:`sign` if its signature is good and made
        by a trusted signer; otherwise raise ``MessageRejected("untrusted", why)``, also for an
        unsigned message."""


@attrs.frozen
class SignerSpec:
    """A way of signing messages, as a plugin declares it in ``kq_message_signers``."""

    #: What users write in ``message_signer`` (``x509``).
    name: str
    #: Called as ``factory(options)`` with ``message_signer_options``; raises
    #: :class:`~kq.exceptions.ConfigurationError` for missing or unreadable keys.
    factory: Callable[[Mapping[str, Any]], Signer]
    description: str = ""


@attrs.frozen
class Limits:
    """What a worker agrees to receive; over-limit messages are rejected before they run."""

    #: Bytes of a message body, compressed and inflated alike.
    max_size: int = 4 * 1024 * 1024
    #: Characters of the ``argsrepr`` and ``kwargsrepr`` headers.
    max_repr: int = 1024
    #: Levels of nested lists and mappings in a message's workflow part (callbacks, chain, chord).
    max_depth: int = 64


class Codec:
    """The compression formats, signer and limits of one app configuration."""

    def __init__(
        self,
        compressions: Iterable[CompressionSpec],
        signer: Signer | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.signer = signer
        self.limits = limits or Limits()
        self._by_name: dict[str, CompressionSpec] = {}
        self._by_type: dict[str, CompressionSpec] = {}
        for spec in compressions:
            for key in (spec.name, *spec.aliases):
                self._by_name[key] = spec
            self._by_type[spec.content_type] = spec

    @property
    def names(self) -> list[str]:
        return sorted({spec.name for spec in self._by_name.values()})

    def compression(self, name: str) -> CompressionSpec:
        """A compression format by name, alias or content type."""
        spec = self._by_name.get(name) or self._by_type.get(name)
        if spec is None:
            raise ConfigurationError(
                f"no compression named {name!r}; installed: "
                f"{', '.join(self.names) or 'none'} (zstd: pip install kq-zstd)"
            )
        return spec

    def seal(self, envelope: Envelope, compression: str | None = None) -> Envelope:
        """What goes on the wire for ``envelope``: compressed, size-checked and signed.

        The size checked is the larger of the body before and after compression, as workers
        check both: compression saves the broker bytes but does not raise the limit.
        """
        size = len(envelope.body)
        if compression:
            spec = self.compression(compression)
            envelope = attrs.evolve(
                envelope,
                body=spec.compress(envelope.body),
                headers={**envelope.headers, COMPRESSION_HEADER: spec.content_type},
            )
            size = max(size, len(envelope.body))
        if size > self.limits.max_size:
            raise EncodeError(
                f"message of {size} bytes is over message_max_size "
                f"({self.limits.max_size}); pass large data by reference (a URL or "
                "a key), or raise message_max_size on clients and workers alike"
            )
        return self.signer.sign(envelope) if self.signer is not None else envelope

    def open(self, envelope: Envelope) -> Envelope:
        """The envelope a serializer may decode, or MessageRejected (``over-limit``,
        ``untrusted``, ``decode``) for one it must not."""
        limits = self.limits
        if len(envelope.body) > limits.max_size:
            raise MessageRejected(
                "over-limit",
                f"body of {len(envelope.body)} bytes is over message_max_size ({limits.max_size})",
            )
        if self.signer is not None:
            envelope = self.signer.verify(envelope)
        headers = envelope.headers
        if not isinstance(headers, Mapping):
            return envelope  # decode_task rejects it as malformed
        for key in ("argsrepr", "kwargsrepr"):
            value = headers.get(key)
            if isinstance(value, str) and len(value) > limits.max_repr:
                raise MessageRejected(
                    "over-limit",
                    f"header {key!r} has {len(value)} characters, over message_max_repr ({limits.max_repr})",
                )
        compression = headers.get(COMPRESSION_HEADER)
        if compression is None:
            return envelope
        spec = self._by_type.get(compression) if isinstance(compression, str) else None
        if spec is None:
            raise MessageRejected(
                "decode",
                f"unknown compression {compression!r}; installed: "
                f"{', '.join(sorted(self._by_type)) or 'none'}",
            )
        try:
            body = spec.decompress(envelope.body, limits.max_size)
        except Exception as exc:  # corrupt input in any of the formats' own error types
            raise MessageRejected("decode", f"{spec.name} could not inflate the body: {exc}") from None
        if len(body) > limits.max_size:
            raise MessageRejected(
                "over-limit", f"body inflates to over message_max_size ({limits.max_size}) bytes"
            )
        rest = {k: v for k, v in headers.items() if k != COMPRESSION_HEADER}
        return attrs.evolve(envelope, body=body, headers=rest)


def nesting_depth(value: Any, limit: int) -> int:
    """Levels of nested lists, tuples and mappings in ``value``, counted up to ``limit + 1``
    (then it stops looking: hostile input may be deep). Iterative, so depth costs no stack."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Mapping):
            children: Iterable[Any] = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        if depth > limit:
            return depth
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children)
    return deepest


# --- the built-in formats ------------------------------------------------------------------


def _stream(factory: Callable[[], Any]) -> Callable[[bytes, int], bytes]:
    """A bounded ``decompress`` from a standard-library decompressor class: each of zlib's,
    bz2's and lzma's takes ``max_length`` and stops there."""

    def decompress(data: bytes, limit: int) -> bytes:
        inflater = factory()
        body: bytes = inflater.decompress(data, limit + 1)
        if len(body) <= limit and not inflater.eof:
            raise ValueError("compressed data is truncated")
        return body

    return decompress


def builtin_compressions() -> list[CompressionSpec]:
    """zlib, bz2 and lzma from the standard library, under kombu's content types."""
    import bz2
    import lzma
    import zlib

    return [
        CompressionSpec(
            "zlib",
            "application/x-gzip",
            zlib.compress,
            _stream(zlib.decompressobj),
            aliases=("gzip",),
            description="zlib (fast, modest ratio)",
        ),
        CompressionSpec(
            "bz2",
            "application/x-bz2",
            bz2.compress,
            _stream(bz2.BZ2Decompressor),
            aliases=("bzip2",),
            description="bzip2 (slow, good ratio on text)",
        ),
        CompressionSpec(
            "lzma",
            "application/x-lzma",
            lzma.compress,
            _stream(lzma.LZMADecompressor),
            aliases=("xz",),
            description="LZMA/xz (slowest, best ratio)",
        ),
    ]

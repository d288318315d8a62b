"""Reading records whatever bytes they carry: one bad record must not stop a partition.

Kafka's protocol says a header name is UTF-8, but the broker does not check it, and a client
that writes raw bytes can put anything there. aiokafka decodes header names strictly while it
unpacks a fetched record batch, so one record with a header name that is not UTF-8 makes every
fetch of its partition raise, forever: the consumer never reaches the records behind it (nor
the records before it in the same batch).

:func:`install` makes aiokafka's fetcher read record batches through :class:`TolerantRecords`:
batches are read by aiokafka's own (compiled) reader as before, and only a batch that fails on
a header name is read again by the pure-Python reader with ``surrogateescape``, which turns the
undecodable bytes into lone surrogates: the name's exact bytes are
``name.encode("utf-8", "surrogateescape")`` (:func:`header_name_bytes`). The consumer then
dead-letters that one record (see ``consumer.Delivery``). Everything else is untouched.

:func:`tolerant_batch_parser` does the same one level up, for FastStream, whose batch parser
decodes every header value as UTF-8 before our code runs (a value ``C3 28`` made it raise, and
the batch was skipped and later committed past, unseen).
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, SupportsIndex, overload

from aiokafka.consumer import fetcher
from aiokafka.errors import CorruptRecordException
from aiokafka.record.default_records import DefaultRecordBatch, _DefaultRecordBatchPy
from aiokafka.record.legacy_records import LegacyRecordBatch

_LENGTH_OFFSET = struct.calcsize(">q")
_LOG_OVERHEAD = struct.calcsize(">qi")
_MAGIC_OFFSET = struct.calcsize(">qii")
_MIN_SLICE = _LOG_OVERHEAD + 14  # Kafka's record overhead of the oldest format (v0)


def header_name_bytes(name: str) -> bytes:
    """The exact bytes of a header name as read (undecodable bytes come back as they were)."""
    return name.encode("utf-8", "surrogateescape")


class _LenientBytes(bytes):
    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return bytes.decode(self, encoding, "surrogateescape")


class _LenientBuffer(bytearray):
    """A record batch's bytes whose slices decode leniently: only the header names are decoded."""

    @overload
    def __getitem__(self, index: SupportsIndex, /) -> int: ...
    @overload
    def __getitem__(self, index: slice, /) -> bytearray: ...
    def __getitem__(self, index: SupportsIndex | slice, /) -> int | bytearray:
        if isinstance(index, slice):
            return _LenientBytes(bytearray.__getitem__(self, index))  # type: ignore[return-value]  # bytes for aiokafka to decode, on purpose
        return bytearray.__getitem__(self, index)


class _LenientBatch(_DefaultRecordBatchPy):
    _buffer: bytearray

    def _read_msg(self, *args: Any, **kwargs: Any) -> Any:
        if not isinstance(self._buffer, _LenientBuffer):  # after decompression, too
            self._buffer = _LenientBuffer(self._buffer)
        return super()._read_msg(*args, **kwargs)


def _undecodable_name(exc: BaseException) -> bool:
    return isinstance(exc, UnicodeDecodeError) or (
        isinstance(exc, CorruptRecordException) and isinstance(exc.__cause__, UnicodeDecodeError)
    )


class _TolerantBatch:
    """aiokafka's batch, read again leniently from its bytes if a header name does not decode."""

    def __init__(self, batch: Any, raw: bytes | memoryview) -> None:
        self._batch = batch
        self._raw = raw
        self._records: Iterator[Any] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._batch, name)

    def __iter__(self) -> Iterator[Any]:
        return self._read()

    def __next__(self) -> Any:  # the fetcher reads a control batch's marker with next()
        if self._records is None:
            self._records = self._read()
        return next(self._records)

    def _read(self) -> Iterator[Any]:
        last = None
        try:
            for record in self._batch:
                last = record.offset
                yield record
        except (UnicodeDecodeError, CorruptRecordException) as exc:
            if not _undecodable_name(exc):
                raise
            for record in _LenientBatch(bytes(self._raw)):
                if last is None or record.offset > last:
                    yield record


class TolerantRecords:
    """aiokafka's MemoryRecords (the record batches of one fetched partition), batch by batch."""

    def __init__(self, data: bytes) -> None:
        self._buffer = data
        self._pos = 0
        self._next: memoryview | None = None
        self._cache_next()

    def _cache_next(self) -> None:
        buffer, pos = self._buffer, self._pos
        if len(buffer) - pos < _LOG_OVERHEAD:
            self._next = None
            return
        (length,) = struct.unpack_from(">i", buffer, pos + _LENGTH_OFFSET)
        end = pos + _LOG_OVERHEAD + length
        if end > len(buffer):  # a partial batch at the end of the fetch: fetched again later
            self._next = None
            return
        self._next = memoryview(buffer)[pos:end]
        self._pos = end

    def size_in_bytes(self) -> int:
        return len(self._buffer)

    def has_next(self) -> bool:
        return self._next is not None

    def next_batch(self) -> Any:
        raw = self._next
        if raw is None:
            return None
        if len(raw) < _MIN_SLICE:
            raise CorruptRecordException("Record size is less than the minimum record overhead")
        self._cache_next()
        magic = raw[_MAGIC_OFFSET]
        if magic >= 2:
            return _TolerantBatch(DefaultRecordBatch(raw), raw)
        return LegacyRecordBatch(raw, magic)  # the old formats have no headers


def install() -> None:
    """Make every aiokafka consumer of this process read batches through :class:`TolerantRecords`."""
    fetcher.MemoryRecords = TolerantRecords


def _text_headers(headers: Any) -> tuple[tuple[str, bytes], ...] | None:
    """The headers as FastStream can take them (names and values that decode), or None if they
    already can."""
    try:
        for name, value in headers or ():
            value.decode()
            name.encode()
        return None
    except (AttributeError, UnicodeError):
        pass
    safe = []
    for name, value in headers or ():
        text_name = header_name_bytes(name).decode(errors="replace")
        safe.append((text_name, (value or b"").decode(errors="replace").encode()))
    return tuple(safe)


async def tolerant_batch_parser(records: Any, original: Callable[[Any], Awaitable[Any]]) -> Any:
    """FastStream parser for a batch subscriber that never fails on a record's headers.

    FastStream gets records whose headers it can decode (undecodable bytes replaced), and the
    message keeps the records exactly as read in ``raw_message``, for the consumer to judge."""
    batch = records if isinstance(records, (list, tuple)) else (records,)
    safe = []
    for record in batch:
        headers = _text_headers(record.headers)
        safe.append(record if headers is None else dataclasses.replace(record, headers=headers))
    message = await original(tuple(safe) if isinstance(records, (list, tuple)) else safe[0])
    message.raw_message = records
    return message

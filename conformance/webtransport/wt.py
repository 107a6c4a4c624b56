"""A small client for weir's gRPC over WebTransport mapping, on aioquic.

It speaks the wire format of docs/protocol/webtransport.md directly: an extended CONNECT
opens the session (aioquic's H3Connection), call streams start with the WebTransport stream
signal, and everything on a call stream after it is handled here rather than by aioquic's
HTTP/3 layer (which would parse a call's bytes as HTTP/3 frames). The client is deliberately
permissive: it records what the server does (bytes, FIN, resets, STOP_SENDING, capsules,
connection close) so that tests can assert on it, and it can send anything, broken or not.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import struct
from dataclasses import dataclass, field
from typing import Callable

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.buffer import Buffer, BufferReadError, encode_uint_var
from aioquic.h3.connection import H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import (
    ConnectionTerminated,
    StopSendingReceived,
    StreamDataReceived,
    StreamReset,
)

# --- Codes (§2.1, §2.4, §5.1) -------------------------------------------------------------

H3_NO_ERROR = 0x100
H3_SETTINGS_ERROR = 0x109
H3_REQUEST_REJECTED = 0x10B
WT_SESSION_GONE = 0x170D7B68

CANCEL, PROTOCOL_ERROR, REFUSED = 0x0, 0x1, 0x2

CLOSE_WEBTRANSPORT_SESSION = 0x2843
DRAIN_WEBTRANSPORT_SESSION = 0x78AE

# Settings the server announces (§2.1).
SETTINGS_ENABLE_CONNECT_PROTOCOL = 0x08
SETTINGS_H3_DATAGRAM = 0x33
SETTINGS_WT_MAX_SESSIONS = 0xC671706A
SETTINGS_ENABLE_WEBTRANSPORT = 0x2B603742
SETTINGS_H3_DATAGRAM_DEPRECATED = 0xFFD277
SETTINGS_WT_0x2B603743 = 0x2B603743
SETTINGS_QPACK_MAX_TABLE_CAPACITY = 0x01

# gRPC status codes used by the tests.
OK, CANCELLED, UNKNOWN, INVALID_ARGUMENT, DEADLINE_EXCEEDED = 0, 1, 2, 3, 4
UNIMPLEMENTED, INTERNAL, UNAVAILABLE, RESOURCE_EXHAUSTED = 12, 13, 14, 8

_WT_FIRST = 0x52E4A40FA8DB
_WT_LAST = 0x52E5AC983162


def wt_code(n: int) -> int:
    """The HTTP/3 error code that carries WebTransport application code n (§5.1)."""
    return _WT_FIRST + n + n // 0x1E


def wt_app_code(h3: int | None) -> int | None:
    """The WebTransport application code an HTTP/3 error code carries, or None."""
    if h3 is None or not _WT_FIRST <= h3 <= _WT_LAST or (h3 - 0x21) % 0x1F == 0:
        return None
    shifted = h3 - _WT_FIRST
    return shifted - shifted // 0x1F


def code_name(h3: int | None) -> str:
    names = {
        H3_NO_ERROR: "H3_NO_ERROR",
        H3_SETTINGS_ERROR: "H3_SETTINGS_ERROR",
        H3_REQUEST_REJECTED: "H3_REQUEST_REJECTED",
        WT_SESSION_GONE: "WT_SESSION_GONE",
    }
    if h3 is None:
        return "none"
    if h3 in names:
        return names[h3]
    app = wt_app_code(h3)
    if app is not None:
        return {0: "CANCEL", 1: "PROTOCOL_ERROR", 2: "REFUSED"}.get(app, f"wt({app})")
    return hex(h3)


# --- Frames (§3) ----------------------------------------------------------------------------

END_OF_REQUEST = b"\x80\x00\x00\x00\x00"


def frame(flags: int, payload: bytes) -> bytes:
    return struct.pack(">BI", flags, len(payload)) + payload


def message(payload: bytes) -> bytes:
    return frame(0x00, payload)


def header_block(lines: list[tuple[str, str]] | None = None, raw: bytes | None = None) -> bytes:
    """A header-block frame from (name, value) pairs, or from raw payload bytes."""
    if raw is None:
        raw = b"".join(f"{n}: {v}\r\n".encode() for n, v in lines or [])
    return frame(0x80, raw)


def parse_header_block(payload: bytes) -> list[tuple[str, str]]:
    """Lines `name: value` (CRLF or LF), as §3.2 says a receiver must accept them."""
    out = []
    for line in payload.decode("latin-1").replace("\r\n", "\n").split("\n"):
        if not line:
            continue
        name, _, value = line.partition(":")
        out.append((name, value.strip(" ")))
    return out


@dataclass
class Frame:
    flags: int
    payload: bytes

    @property
    def is_headers(self) -> bool:
        return self.flags == 0x80

    @property
    def headers(self) -> dict[str, str]:
        return dict(parse_header_block(self.payload))

    def __repr__(self) -> str:
        if self.is_headers:
            return f"HeaderBlock({parse_header_block(self.payload)})"
        return f"Frame(flags={self.flags:#x}, {len(self.payload)} B)"


def split_frames(data: bytes) -> tuple[list[Frame], bytes]:
    """Complete frames in data, and the incomplete rest."""
    frames, pos = [], 0
    while len(data) - pos >= 5:
        flags, length = struct.unpack_from(">BI", data, pos)
        if len(data) - pos - 5 < length:
            break
        frames.append(Frame(flags, bytes(data[pos + 5 : pos + 5 + length])))
        pos += 5 + length
    return frames, bytes(data[pos:])


# --- Protobuf, just the fields of grpc.testing messages the tests use -----------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def pb_varint(field_no: int, value: int) -> bytes:
    return _varint(field_no << 3) + _varint(value)


def pb_bytes(field_no: int, value: bytes) -> bytes:
    return _varint(field_no << 3 | 2) + _varint(len(value)) + value


def simple_request(response_size: int = 0, body: bytes = b"", status: tuple[int, str] | None = None) -> bytes:
    """SimpleRequest{response_size=2, payload=3{body=2}, response_status=7{code=1, message=2}}."""
    out = pb_varint(2, response_size) if response_size else b""
    if body:
        out += pb_bytes(3, pb_bytes(2, body))
    if status:
        out += pb_bytes(7, pb_varint(1, status[0]) + pb_bytes(2, status[1].encode()))
    return out


def streaming_output_request(sizes: list[int], interval_us: int = 0, status: tuple[int, str] | None = None) -> bytes:
    """StreamingOutputCallRequest{response_parameters=2{size=1, interval_us=2}, response_status=7}."""
    out = b""
    for size in sizes:
        params = pb_varint(1, size) + (pb_varint(2, interval_us) if interval_us else b"")
        out += pb_bytes(2, params)
    if status:
        out += pb_bytes(7, pb_varint(1, status[0]) + pb_bytes(2, status[1].encode()))
    return out


def streaming_input_request(body: bytes) -> bytes:
    """StreamingInputCallRequest{payload=1{body=2}}."""
    return pb_bytes(1, pb_bytes(2, body))


def pb_fields(data: bytes) -> dict[int, list]:
    """Top-level fields of a protobuf message: varints as ints, length-delimited as bytes."""
    buf, out = Buffer(data=data), {}
    while not buf.eof():
        key = _pull_varint(buf)
        kind = key & 7
        if kind == 0:
            value = _pull_varint(buf)
        elif kind == 2:
            value = buf.pull_bytes(_pull_varint(buf))
        else:
            raise ValueError(f"wire type {kind}")
        out.setdefault(key >> 3, []).append(value)
    return out


def _pull_varint(buf: Buffer) -> int:
    n, shift = 0, 0
    while True:
        b = buf.pull_uint8()
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n


def payload_body_len(response: bytes) -> int:
    """len(payload.body) of a SimpleResponse or StreamingOutputCallResponse (payload=1{body=2})."""
    fields = pb_fields(response)
    if 1 not in fields:
        return 0
    return len(pb_fields(fields[1][0]).get(2, [b""])[0])


# --- Connection -------------------------------------------------------------------------------


@dataclass
class StreamState:
    """What the server did on one stream."""

    data: bytearray = field(default_factory=bytearray)
    fin: bool = False
    reset: int | None = None  # RESET_STREAM code received
    stop_sending: int | None = None  # STOP_SENDING code received

    @property
    def ended(self) -> bool:
        return self.fin or self.reset is not None


class TimedOut(AssertionError):
    pass


class WtProtocol(QuicConnectionProtocol):
    """A QUIC connection with HTTP/3 for the session and raw handling of call streams."""

    h3_class: type[H3Connection] = H3Connection

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.h3 = self.h3_class(self._quic, enable_webtransport=True)
        self.streams: dict[int, StreamState] = {}
        self.call_streams: set[int] = set()
        self.responses: dict[int, list[tuple[bytes, bytes]]] = {}
        self.capsule_bytes: dict[int, bytearray] = {}
        self.terminated: ConnectionTerminated | None = None
        self._waiters: list[asyncio.Future] = []

    # Events -------------------------------------------------------------------------------

    def quic_event_received(self, event) -> None:
        sid = getattr(event, "stream_id", None)
        if isinstance(event, ConnectionTerminated):
            self.terminated = event
        elif isinstance(event, StreamReset):
            self.stream(sid).reset = event.error_code
        elif isinstance(event, StopSendingReceived):
            self.stream(sid).stop_sending = event.error_code
        if sid is not None and sid in self.call_streams:
            if isinstance(event, StreamDataReceived):
                st = self.stream(sid)
                st.data += event.data
                st.fin = st.fin or event.end_stream
        else:
            for h3_event in self.h3.handle_event(event):
                self._h3_event(h3_event)
        self._wake()

    def _h3_event(self, event) -> None:
        if isinstance(event, HeadersReceived):
            self.responses.setdefault(event.stream_id, []).extend(event.headers)
            if event.stream_ended:
                self.stream(event.stream_id).fin = True
        elif isinstance(event, DataReceived):
            st = self.stream(event.stream_id)
            st.data += event.data
            st.fin = st.fin or event.stream_ended

    def stream(self, sid: int) -> StreamState:
        return self.streams.setdefault(sid, StreamState())

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for w in waiters:
            if not w.done():
                w.set_result(None)

    async def until(self, predicate: Callable[[], object], timeout: float = 5.0, what: str = "") -> object:
        """Wait until predicate() is truthy (re-checked after each event); its value."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            value = predicate()
            if value:
                return value
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimedOut(f"timed out after {timeout} s waiting for {what or predicate}")
            waiter = loop.create_future()
            self._waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, remaining)
            except asyncio.TimeoutError:
                pass

    async def quiet_for(self, seconds: float, predicate: Callable[[], object], what: str) -> None:
        """Assert predicate() stays falsy for `seconds` (for things that must NOT happen)."""
        try:
            await self.until(predicate, seconds, what)
        except TimedOut:
            return
        raise AssertionError(f"unexpected: {what}")

    async def closed(self, timeout: float = 5.0) -> ConnectionTerminated:
        await self.until(lambda: self.terminated, timeout, "the connection to close")
        return self.terminated

    @property
    def peer_settings(self) -> dict[int, int] | None:
        return self.h3._received_settings

    @property
    def peer_certificate(self):
        return self._quic.tls._peer_certificate

    # Session -----------------------------------------------------------------------------

    def send_connect(self, authority: str, path: str, origin: str | None = None,
                     extra: list[tuple[str, str]] = (), protocol: str = "webtransport") -> int:
        sid = self._quic.get_next_available_stream_id()
        headers = [(b":method", b"CONNECT"), (b":protocol", protocol.encode()),
                   (b":scheme", b"https"), (b":authority", authority.encode()),
                   (b":path", path.encode())]
        if origin is not None:
            headers.append((b"origin", origin.encode()))
        headers += [(n.encode(), v.encode()) for n, v in extra]
        self.h3.send_headers(sid, headers, end_stream=False)
        self.transmit()
        return sid

    def send_request(self, headers: list[tuple[str, str]], end_stream: bool = False) -> int:
        """Any request, pseudo-headers as given (for requests that are not a session's)."""
        sid = self._quic.get_next_available_stream_id()
        self.h3.send_headers(sid, [(n.encode(), v.encode()) for n, v in headers], end_stream)
        self.transmit()
        return sid

    async def connect_status(self, sid: int, timeout: float = 5.0) -> int:
        """The :status the server answered a request stream with."""
        await self.until(lambda: sid in self.responses or self.stream(sid).ended
                         or self.terminated, timeout, "an answer to the CONNECT")
        headers = dict(self.responses.get(sid, []))
        if b":status" not in headers:
            raise AssertionError(f"no :status; stream {self.stream(sid)}, connection {self.terminated}")
        return int(headers[b":status"])

    def send_capsule(self, sid: int, ctype: int, payload: bytes, end: bool = False) -> None:
        self.h3.send_data(sid, encode_uint_var(ctype) + encode_uint_var(len(payload)) + payload, end)
        self.transmit()

    def close_session(self, sid: int, code: int = 0, reason: str = "") -> None:
        """CLOSE_WEBTRANSPORT_SESSION and FIN on the CONNECT stream (§2.4)."""
        self.send_capsule(sid, CLOSE_WEBTRANSPORT_SESSION, struct.pack(">I", code) + reason.encode(), True)

    def capsules(self, sid: int) -> list[tuple[int, bytes]]:
        """Complete capsules received on the CONNECT stream so far."""
        buf, out = Buffer(data=bytes(self.stream(sid).data)), []
        while not buf.eof():
            try:
                ctype = buf.pull_uint_var()
                payload = buf.pull_bytes(buf.pull_uint_var())
            except BufferReadError:
                break
            out.append((ctype, payload))
        return out

    # Calls -------------------------------------------------------------------------------

    def open_stream(self, session_id: int, signal: bool = True) -> "Call":
        """A new bidirectional stream with the WebTransport stream signal (unless signal=False)."""
        if signal:
            sid = self.h3.create_webtransport_stream(session_id)
        else:
            sid = self._quic.get_next_available_stream_id()
        self.call_streams.add(sid)
        self.stream(sid)
        self.transmit()
        return Call(self, sid)

    def stream_blocked(self, sid: int) -> bool:
        """Whether aioquic holds the stream back for lack of the server's stream credit."""
        return self._quic._streams[sid].is_blocked


class Call:
    """One call stream: raw writes, and the server's frames, FIN, resets and STOP_SENDING."""

    def __init__(self, conn: WtProtocol, sid: int):
        self.conn, self.sid = conn, sid

    @property
    def state(self) -> StreamState:
        return self.conn.stream(self.sid)

    def write(self, data: bytes, fin: bool = False) -> "Call":
        self.conn._quic.send_stream_data(self.sid, data, fin)
        self.conn.transmit()
        return self

    def headers(self, path: str, extra: list[tuple[str, str]] = (), content_type: str = "application/grpc") -> "Call":
        lines = [(":path", path)]
        if content_type:
            lines.append(("content-type", content_type))
        return self.write(header_block(lines + list(extra)))

    def message(self, payload: bytes, fin: bool = False) -> "Call":
        return self.write(message(payload), fin)

    def end(self, version: int) -> "Call":
        """End the request: FIN (v1) or the end-of-request frame (v2, §3.4)."""
        return self.write(b"", True) if version == 1 else self.write(END_OF_REQUEST)

    def fin(self) -> "Call":
        return self.write(b"", True)

    def reset(self, code: int) -> "Call":
        self.conn._quic.reset_stream(self.sid, code)
        self.conn.transmit()
        return self

    def stop(self, code: int) -> "Call":
        self.conn._quic.stop_stream(self.sid, code)
        self.conn.transmit()
        return self

    def frames(self) -> tuple[list[Frame], bytes]:
        return split_frames(self.state.data)

    async def wait_frames(self, n: int, timeout: float = 5.0) -> list[Frame]:
        """Wait until n complete frames arrived (fails if the stream ends first)."""
        await self.conn.until(lambda: len(self.frames()[0]) >= n or self.state.ended, timeout,
                              f"{n} frames on stream {self.sid}")
        frames = self.frames()[0]
        assert len(frames) >= n, f"stream ended after {frames}, {self.state}"
        return frames

    async def response(self, timeout: float = 5.0) -> "Response":
        """Wait until the response side ended (FIN or reset)."""
        await self.conn.until(lambda: self.state.ended, timeout, f"the end of stream {self.sid}")
        frames, rest = self.frames()
        return Response(frames, rest, self.state)

    async def stop_sending(self, timeout: float = 5.0) -> int:
        await self.conn.until(lambda: self.state.stop_sending is not None, timeout,
                              f"STOP_SENDING on stream {self.sid}")
        return self.state.stop_sending


@dataclass
class Response:
    frames: list[Frame]
    rest: bytes
    state: StreamState

    @property
    def header_blocks(self) -> list[Frame]:
        return [f for f in self.frames if f.is_headers]

    @property
    def messages(self) -> list[bytes]:
        return [f.payload for f in self.frames if f.flags == 0]

    @property
    def trailers(self) -> dict[str, str] | None:
        last = self.frames[-1] if self.frames else None
        if last is None or not last.is_headers or "grpc-status" not in last.headers:
            return None
        return last.headers

    @property
    def status(self) -> int | None:
        t = self.trailers
        return int(t["grpc-status"]) if t else None

    @property
    def trailers_only(self) -> bool:
        return len(self.frames) == 1 and self.trailers is not None

    def __repr__(self) -> str:
        return f"Response({self.frames}, rest={self.rest!r}, fin={self.state.fin}, reset={code_name(self.state.reset)})"


# --- Opening connections and sessions -------------------------------------------------------


def configuration(server_name: str = "localhost") -> QuicConfiguration:
    cfg = QuicConfiguration(is_client=True, alpn_protocols=["h3"], max_datagram_frame_size=65536,
                            server_name=server_name)
    cfg.verify_mode = ssl.CERT_NONE  # the development certificate is checked by hash (§7)
    return cfg


@contextlib.asynccontextmanager
async def connection(host: str, port: int, protocol: type[WtProtocol] = WtProtocol):
    async with connect(host, port, configuration=configuration(), create_protocol=protocol) as conn:
        yield conn


class Session:
    """An open session: a connection, its CONNECT stream, and the mapping version."""

    def __init__(self, conn: WtProtocol, sid: int, version: int):
        self.conn, self.sid, self.version = conn, sid, version

    def call(self) -> Call:
        return self.conn.open_stream(self.sid)

    async def unary(self, method: str, request: bytes, extra=(), timeout: float = 5.0) -> Response:
        """A whole call with one request message, ended as this session's version says."""
        call = self.call().headers(f"/grpc.testing.TestService/{method}", extra).message(request)
        call.end(self.version)
        resp = await call.response(timeout)
        if self.version == 2 and resp.state.fin:
            call.fin()  # §3.4: the v2 client finishes its send side after the trailers
        return resp


@contextlib.asynccontextmanager
async def session(host: str, port: int, version: int = 2, origin: str | None = None,
                  path: str = "/weir", authority: str | None = None):
    async with connection(host, port) as conn:
        sid = conn.send_connect(authority or f"{host}:{port}", f"{path}?v={version}", origin)
        status = await conn.connect_status(sid)
        assert status == 200, f"CONNECT answered {status}"
        yield Session(conn, sid, version)

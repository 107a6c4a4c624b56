"""§2.1–§2.3, §6, §7, §8: transport, establishment, keep-alive, limits, certificates, versions."""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import json
import time

from aioquic.h3.connection import H3Connection, Setting
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

import servers
import wt
from common import SVC, expect_status, session, test

# --- §2.1 Transport ---------------------------------------------------------------------------


@test
async def test_2_1_settings(env):
    """§2.1: the server's SETTINGS, ALPN h3, and a QPACK dynamic table capacity of 0."""
    async with session(env.gw) as s:
        settings = await s.conn.until(lambda: s.conn.peer_settings, what="SETTINGS")
        expected = {wt.SETTINGS_ENABLE_CONNECT_PROTOCOL: 1, wt.SETTINGS_H3_DATAGRAM: 1,
                    wt.SETTINGS_WT_MAX_SESSIONS: 1, wt.SETTINGS_ENABLE_WEBTRANSPORT: 1,
                    wt.SETTINGS_H3_DATAGRAM_DEPRECATED: 1, wt.SETTINGS_WT_0x2B603743: 1}
        got = {k: settings.get(k) for k in expected}
        assert got == expected, f"SETTINGS {({hex(k): v for k, v in settings.items()})}"
        assert settings.get(wt.SETTINGS_QPACK_MAX_TABLE_CAPACITY, 0) == 0, settings
        assert s.conn._quic.tls.alpn_negotiated == "h3"
        # The server never opens streams: besides its HTTP/3 control and QPACK streams, none.
        expect_status(await s.unary("EmptyCall", b""), wt.OK)
        server_bidi = [sid for sid in s.conn._quic._streams if sid % 4 == 1]
        server_uni = [sid for sid in s.conn._quic._streams if sid % 4 == 3]
        assert not server_bidi and len(server_uni) <= 3, (server_bidi, server_uni)


class _SettingsH3(H3Connection):
    """An HTTP/3 layer whose SETTINGS lack SETTINGS_H3_DATAGRAM, or carry only the deprecated
    0xffd277 (class attribute `deprecated`)."""

    deprecated = False

    def _get_local_settings(self):
        settings = super()._get_local_settings()
        settings.pop(Setting.H3_DATAGRAM, None)
        settings.pop(Setting.ENABLE_WEBTRANSPORT, None)
        if self.deprecated:
            settings[wt.SETTINGS_H3_DATAGRAM_DEPRECATED] = 1
        return settings


class _NoDatagram(wt.WtProtocol):
    h3_class = _SettingsH3


class _DeprecatedDatagram(wt.WtProtocol):
    h3_class = type("_DeprecatedH3", (_SettingsH3,), {"deprecated": True})


@test
async def test_2_1_settings_without_h3_datagram_refused(env):
    """§2.1: SETTINGS without SETTINGS_H3_DATAGRAM close the connection with H3_SETTINGS_ERROR."""
    async with wt.connection(env.gw.wt.host, env.gw.wt.port, _NoDatagram) as conn:
        closed = await conn.closed()
        assert closed.error_code == wt.H3_SETTINGS_ERROR, closed


@test
async def test_2_1_deprecated_h3_datagram_setting_accepted(env):
    """§2.1: the deprecated 0xffd277 = 1 is as good as SETTINGS_H3_DATAGRAM."""
    async with wt.connection(env.gw.wt.host, env.gw.wt.port, _DeprecatedDatagram) as conn:
        sid = conn.send_connect(str(env.gw.wt), "/weir?v=2")
        status = await conn.connect_status(sid)
        assert status == 200, status


async def _second_request_rejected(env, second) -> None:
    async with session(env.gw, 2) as s:
        sid = second(s)
        st = s.conn.stream(sid)
        await s.conn.until(lambda: st.reset is not None and st.stop_sending is not None, what="the refusal")
        assert (st.reset, st.stop_sending) == (wt.H3_REQUEST_REJECTED, wt.H3_REQUEST_REJECTED), \
            f"expected H3_REQUEST_REJECTED both ways: reset {wt.code_name(st.reset)}, " \
            f"STOP_SENDING {wt.code_name(st.stop_sending)}"
        assert sid not in s.conn.responses, "a refused request gets no response headers"
        # The session is unaffected.
        expect_status(await s.unary("EmptyCall", b""), wt.OK)


@test
async def test_2_1_second_connect_rejected(env):
    """§2.1: one session per connection: a second extended CONNECT gets H3_REQUEST_REJECTED."""
    await _second_request_rejected(env, lambda s: s.conn.send_connect(str(env.gw.wt), "/weir?v=2"))


@test
async def test_2_1_other_request_rejected(env):
    """§2.1: any other HTTP/3 request after the session's gets H3_REQUEST_REJECTED."""
    def get(s):
        sid = s.conn._quic.get_next_available_stream_id()
        s.conn.h3.send_headers(sid, [(b":method", b"GET"), (b":scheme", b"https"),
                                     (b":authority", str(env.gw.wt).encode()), (b":path", b"/weir?v=2")],
                               end_stream=True)
        s.conn.transmit()
        return sid
    await _second_request_rejected(env, get)


@test
async def test_2_1_unidirectional_stream_stopped(env):
    """§2.1: a unidirectional WebTransport stream gets STOP_SENDING PROTOCOL_ERROR."""
    async with session(env.gw, 2) as s:
        sid = s.conn.h3.create_webtransport_stream(s.sid, is_unidirectional=True)
        s.conn._quic.send_stream_data(sid, wt.header_block([(":path", SVC + "EmptyCall")]))
        s.conn.transmit()
        st = s.conn.stream(sid)
        code = await s.conn.until(lambda: st.stop_sending, what="STOP_SENDING")
        assert code == wt.wt_code(wt.PROTOCOL_ERROR), wt.code_name(code)
        expect_status(await s.unary("EmptyCall", b""), wt.OK)


@test
async def test_2_1_datagrams_ignored(env):
    """§2.1: datagrams are dropped unread; the session goes on."""
    async with session(env.gw, 2) as s:
        s.conn.h3.send_datagram(s.sid, b"\x80\x00\x00\x00\x00")
        s.conn.transmit()
        expect_status(await s.unary("EmptyCall", b""), wt.OK)


# --- §2.2 Establishment, §8 Versions ----------------------------------------------------------


async def connect_status(server, path: str, origin: str | None = None, authority: str | None = None) -> int:
    async with wt.connection(server.wt.host, server.wt.port) as conn:
        sid = conn.send_connect(authority or str(server.wt), path, origin)
        return await conn.connect_status(sid)


@test
async def test_2_2_connect_v1_and_v2_accepted(env):
    """§2.2, §8: a weir server serves versions 1 and 2."""
    for v in (1, 2):
        status = await connect_status(env.gw, f"/weir?v={v}")
        assert status == 200, f"v={v}: {status}"


@test
async def test_2_2_not_a_webtransport_connect_400(env):
    """§2.2: a first request that is not an extended CONNECT with `:protocol` `webtransport`
    and `:scheme` `https`, or a malformed one, gets 400."""
    authority = str(env.gw.wt)
    connect = [(":method", "CONNECT"), (":protocol", "webtransport"), (":scheme", "https"),
               (":authority", authority), (":path", "/weir?v=2")]
    cases = {
        "GET": [(":method", "GET"), (":scheme", "https"), (":authority", authority), (":path", "/weir?v=2")],
        "classic CONNECT": [(":method", "CONNECT"), (":authority", authority)],
        "connect-udp": [(n, "connect-udp" if n == ":protocol" else v) for n, v in connect],
        ":scheme http": [(n, "http" if n == ":scheme" else v) for n, v in connect],
        "no :authority": [(n, v) for n, v in connect if n != ":authority"],
    }
    await _expect_400(env, cases)


@test
async def test_2_2_malformed_connect_400(env):
    """§2.2: a request that is not a well-formed extended CONNECT for WebTransport gets 400.
    (The QPACK-level malformations of RFC 9114 §4.1.2 that weir does not detect — repeated
    pseudo-headers, uppercase names, pseudo-headers after fields — are a limitation §2.2
    states: they are not checked here.)"""
    authority = str(env.gw.wt)
    connect = [(":method", "CONNECT"), (":protocol", "webtransport"), (":scheme", "https"),
               (":authority", authority), (":path", "/weir?v=2")]
    cases = {
        "no :protocol": [h for h in connect if h[0] != ":protocol"],
        "no :authority": [h for h in connect if h[0] != ":authority"],
        "another :protocol": [h if h[0] != ":protocol" else (":protocol", "websocket")
                              for h in connect],
    }
    await _expect_400(env, cases)


async def _expect_400(env, cases: dict) -> None:
    wrong = {}
    for name, headers in cases.items():
        async with wt.connection(env.gw.wt.host, env.gw.wt.port) as conn:
            status = await conn.connect_status(conn.send_request(headers))
            if status != 400:
                wrong[name] = status
    assert not wrong, f"expected 400, got {wrong}"


@test
async def test_2_2_wrong_path_404(env):
    """§2.2: a path other than the configured one gets 404."""
    for path in ("/other?v=2", "/weir/?v=2", "/WEIR?v=2", "/weir/x?v=2"):
        status = await connect_status(env.gw, path)
        assert status == 404, f"{path}: {status}"


@test
async def test_2_2_missing_or_unknown_version_404(env):
    """§2.2, §8: no `v`, or a version the server does not serve, gets 404."""
    for path in ("/weir", "/weir?v=", "/weir?v=3", "/weir?v=0", "/weir?version=2"):
        status = await connect_status(env.gw, path)
        assert status == 404, f"{path}: {status}"


@test
async def test_2_2_refusal_then_connection_closed(env):
    """§2.2: after a refusal the server finishes the request stream and closes the connection
    with H3_NO_ERROR within the session request timeout (10 s)."""
    async with wt.connection(env.gw.wt.host, env.gw.wt.port) as conn:
        started = time.monotonic()
        sid = conn.send_connect(str(env.gw.wt), "/nowhere?v=2")
        assert await conn.connect_status(sid) == 404
        await conn.until(lambda: conn.stream(sid).fin, what="FIN of the refused request")
        closed = await conn.closed(timeout=12.0)
        assert closed.error_code == wt.H3_NO_ERROR, closed
        assert time.monotonic() - started < 11.5


@test
async def test_2_2_origins_allowed(env):
    """§2.2: no origin; the own origin (authority lowercased); the pages of the server's own HTTP
    listeners, http and https; the CORS policy's origins."""
    wt_port, http_port = env.gw.wt.port, env.gw.http.port
    cases = [
        (None, None),
        (f"https://127.0.0.1:{wt_port}", None),
        (f"https://localhost:{wt_port}", f"LocalHost:{wt_port}"),
        (f"http://127.0.0.1:{http_port}", None),
        (f"https://127.0.0.1:{http_port}", None),
        (f"http://localhost:{http_port}", f"localhost:{wt_port}"),
        ("http://localhost:3000", None),
    ]
    for origin, authority in cases:
        status = await connect_status(env.gw, "/weir?v=2", origin, authority)
        assert status == 200, f"origin {origin}, authority {authority}: {status}"


@test
async def test_2_2_origins_refused(env):
    """§2.2: origins that are not allowed, or not serialized origins, get 403."""
    wt_port, http_port = env.gw.wt.port, env.gw.http.port
    cases = [
        (f"HTTPS://127.0.0.1:{wt_port}", None),
        (f"https://127.0.0.1:{wt_port}/weir", None),
        ("null", None),
        ("https://evil.example", None),
        ("http://localhost:3000/", None),
        ("http://LOCALHOST:3000", None),
        ("https://localhost:3000", None),
        (f"https://127.0.0.1:{wt_port}", f"localhost:{wt_port}"),  # not the authority's host
        (f"http://127.0.0.1:{http_port}", f"localhost:{wt_port}"),
        ("", None),
    ]
    if wt_port != http_port:  # a UDP and a TCP port may coincide
        cases.append((f"http://127.0.0.1:{wt_port}", None))  # own origin is https only
    for origin, authority in cases:
        status = await connect_status(env.gw, "/weir?v=2", origin, authority)
        assert status == 403, f"origin {origin!r}, authority {authority}: {status}"


@test
async def test_2_2_origin_trailing_slash_refused(env):
    """§2.2: the own origin with a trailing slash is not a serialized origin: 403."""
    status = await connect_status(env.gw, "/weir?v=2", f"https://{env.gw.wt}/")
    assert status == 403, status


@test
async def test_2_2_origin_wildcard_cors(env):
    """§2.2: with `*` in the CORS policy every origin is allowed."""
    p = await servers.pair("wildcard", cors='allow_origins = ["*"]')
    try:
        status = await connect_status(p.gw, "/weir?v=2", "https://evil.example")
        assert status == 200, status
    finally:
        await p.close()


@test
async def test_2_2_demo_page_origin(env):
    """§2.2: `weir demo`'s own page, served over HTTP, may open sessions; others may not."""
    demo = env.demo_wt
    own_page = await connect_status(demo, "/weir?v=2", f"http://127.0.0.1:{demo.http.port}")
    foreign = await connect_status(demo, "/weir?v=2", "https://evil.example")
    assert (own_page, foreign) == (200, 403), (own_page, foreign)
    async with session(demo, 2) as s:
        expect_status(await s.unary("EmptyCall", b""), wt.OK)


@test
async def test_2_2_capacity_connection_refused(env):
    """§2.2: at its session limit the server refuses new QUIC connections (CONNECTION_REFUSED)."""
    p = await servers.pair("capacity", webtransport="max_sessions = 1")
    try:
        async with session(p.gw, 2) as s:
            closed = await _refused_connection(p.gw)
            assert closed is not None and closed.error_code == 0x2, \
                f"expected CONNECTION_REFUSED (0x2): {closed}"
            expect_status(await s.unary("EmptyCall", b""), wt.OK)
        # Once that session's connection closed, a new one is served (the server may take a
        # moment to count it gone: retry for a while).
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while True:
            try:
                status = await connect_status(p.gw, "/weir?v=2")
                assert status == 200, status
                break
            except ConnectionError:
                assert loop.time() < deadline, "connections still refused after the session ended"
                await asyncio.sleep(0.05)
    finally:
        await p.close()


async def _refused_connection(server):
    """None if a QUIC connection can be made, else how it was closed."""
    protocols = []

    def create(*args, **kwargs):
        protocols.append(wt.WtProtocol(*args, **kwargs))
        return protocols[-1]

    try:
        async with wt.connect(server.wt.host, server.wt.port, configuration=wt.configuration(),
                              create_protocol=create):
            return None
    except ConnectionError:
        return protocols[0].terminated


@test
async def test_2_2_session_request_timeout(env):
    """§2.2: a connection that sends no CONNECT within 10 s is closed with H3_NO_ERROR and the
    reason `no session request` (not before)."""
    async with wt.connection(env.gw.wt.host, env.gw.wt.port) as conn:
        started = time.monotonic()
        closed = await conn.closed(timeout=13.0)
        elapsed = time.monotonic() - started
        assert (closed.error_code, closed.reason_phrase) == (wt.H3_NO_ERROR, "no session request"), closed
        assert 9.5 <= elapsed <= 12.0, f"closed after {elapsed:.1f} s"


# --- §2.3 Keep-alive, §6 Limits -------------------------------------------------------------


@test
async def test_2_3_keepalive_and_idle_timeout(env):
    """§2.3: QUIC PINGs keep an idle session alive (weir: every 10 s); idle timeout 60 s."""
    async with session(env.gw, 2) as s:
        quic = s.conn._quic
        assert quic._remote_max_idle_timeout == 60.0, quic._remote_max_idle_timeout
        handlers = quic._QuicConnection__frame_handlers
        handler, epochs = handlers[0x01]
        pings = []

        def count(*args):
            pings.append(time.monotonic())
            return handler(*args)

        handlers[0x01] = (count, epochs)
        await s.conn.until(lambda: pings, timeout=15.0, what="a PING from the server")


@test
async def test_2_3_no_heartbeat(env):
    """§2.3: no heartbeats over WebTransport, and `weir-heartbeat` is not answered."""
    async with session(env.gw, 2) as s:
        call = s.call().headers(SVC + "FullDuplexCall", [("weir-heartbeat", "1S")])
        first = (await call.wait_frames(1))[0]
        assert first.is_headers and "weir-heartbeat" not in first.headers, first
        await s.conn.quiet_for(2.5, lambda: len(call.frames()[0]) > 1 or call.state.ended,
                               "a frame on an idle call")
        call.end(2)
        resp = await call.response()
        expect_status(resp, wt.OK)
        assert len(resp.frames) == 2, resp
        call.fin()


async def _hundred_calls(s):
    """100 running FullDuplexCalls (each has its response header block), and a 101st that
    aioquic holds back for lack of stream credit."""
    quic = s.conn._quic
    assert quic._remote_max_streams_bidi == 101, quic._remote_max_streams_bidi
    calls = [s.call().headers(SVC + "FullDuplexCall") for _ in range(100)]
    await asyncio.gather(*(c.wait_frames(1, timeout=15) for c in calls))
    extra = s.call().headers(SVC + "FullDuplexCall")
    assert s.conn.stream_blocked(extra.sid), "the 101st stream should wait for credit"
    await s.conn.quiet_for(0.5, lambda: not s.conn.stream_blocked(extra.sid), "credit for a 101st call")
    return calls, extra


async def _finish(call):
    call.end(2)
    expect_status(await call.response(), wt.OK)
    call.fin()


@test
async def test_6_concurrent_calls_exactly_100(env):
    """§6: 100 concurrent calls per session (initial_max_streams_bidi = 101, the CONNECT stream
    included); a client that opens more waits for credit, which comes as calls end."""
    async with session(env.gw, 2) as s:
        assert s.conn._quic._remote_max_streams_uni == 8, s.conn._quic._remote_max_streams_uni
        calls, extra = await _hundred_calls(s)
        await asyncio.gather(*(_finish(c) for c in calls[:50]))
        await extra.wait_frames(1)  # credit came, the call runs
        await _finish(extra)


@test
async def test_6_credit_comes_back_as_calls_end(env):
    """§6: after 100 calls, credit for more comes back as calls end, in batches: at the
    latest once an eighth of the window (13 calls) ended, a waiting call starts."""
    async with session(env.gw, 2) as s:
        calls, extra = await _hundred_calls(s)
        for call in calls[:13]:
            await _finish(call)
        try:
            await extra.wait_frames(1, timeout=3.0)
        except wt.TimedOut:
            raise AssertionError(
                "with 87 calls running, a waiting call got no stream credit within 3 s "
                f"(MAX_STREAMS still {s.conn._quic._remote_max_streams_bidi})") from None
        await _finish(extra)


# --- §7 Certificates ------------------------------------------------------------------------


@test
async def test_7_discovery_and_certificate(env):
    """§7: the discovery document names v=2 and the hash of the certificate served over QUIC,
    an ECDSA P-256 certificate valid 13 days (at most 14) from an hour before it was made."""
    headers, body = await servers.http_get(env.gw.http, "/.well-known/weir/webtransport")
    assert headers[":status"] == "200", headers
    assert headers.get("content-type", "").startswith("application/json"), headers
    assert headers.get("access-control-allow-origin") == "*", headers
    doc = json.loads(body)
    assert doc["version"] == 1, doc
    assert doc["url"] == f"https://{env.gw.wt}/weir?v=2", doc
    hashes = doc["certificateHashes"]
    assert len(hashes) == 1 and hashes[0]["algorithm"] == "sha-256", doc
    value = hashes[0]["value"]
    assert len(value) == 64 and value == value.lower() and int(value, 16) >= 0, doc

    async with session(env.gw, 2) as s:
        cert = s.conn.peer_certificate
    der = cert.public_bytes(serialization.Encoding.DER)
    assert hashlib.sha256(der).hexdigest() == value, "the served certificate is not the published one"
    key = cert.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1", key
    validity = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert validity <= datetime.timedelta(days=14), validity
    assert validity == datetime.timedelta(days=13), validity
    age = datetime.datetime.now(datetime.timezone.utc) - cert.not_valid_before_utc
    assert datetime.timedelta(minutes=59) <= age <= datetime.timedelta(minutes=62), \
        f"notBefore {cert.not_valid_before_utc} is {age} ago, not about an hour"


@test
async def test_7_demo_prints_published_hash(env):
    """§7: `weir demo` serves the certificate it prints and publishes."""
    _, body = await servers.http_get(env.demo_wt.http, "/.well-known/weir/webtransport")
    value = json.loads(body)["certificateHashes"][0]["value"]
    assert value == env.demo_wt.cert_hash, (value, env.demo_wt.cert_hash)
    async with session(env.demo_wt, 2) as s:
        der = s.conn.peer_certificate.public_bytes(serialization.Encoding.DER)
    assert hashlib.sha256(der).hexdigest() == value



def _write_certificate(name: str, days: int) -> tuple[str, str, str]:
    """A self-signed ECDSA P-256 certificate for 127.0.0.1 valid `days`: (cert, key, sha-256)."""
    import ipaddress
    import os

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now - datetime.timedelta(hours=1) + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_path = os.path.join(servers.LOG_DIR, f"{name}.crt")
    key_path = os.path.join(servers.LOG_DIR, f"{name}.key")
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return cert_path, key_path, hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


async def _published_hashes(name: str, days: int) -> tuple[list, str, str]:
    cert, key, digest = _write_certificate(name, days)
    p = await servers.pair(name, webtransport=f'cert = "{cert}"\nkey = "{key}"')
    try:
        _, body = await servers.http_get(p.gw.http, "/.well-known/weir/webtransport")
        async with session(p.gw, 2) as s:
            served = hashlib.sha256(s.conn.peer_certificate.public_bytes(serialization.Encoding.DER)).hexdigest()
        return json.loads(body)["certificateHashes"], served, digest
    finally:
        await p.close()


@test
async def test_7_short_lived_certificate_file_published(env):
    """§7: a configured certificate browsers may pin (P-256, at most 14 days) is published."""
    hashes, served, digest = await _published_hashes("cert-10d", 10)
    assert served == digest, "the configured certificate is not the one served"
    assert hashes == [{"algorithm": "sha-256", "value": digest}], hashes


@test
async def test_7_long_lived_certificate_not_published(env):
    """§7: hashes are published only for certificates browsers may pin: none for a year-long one."""
    hashes, served, digest = await _published_hashes("cert-365d", 365)
    assert served == digest, "the configured certificate is not the one served"
    assert hashes == [], hashes

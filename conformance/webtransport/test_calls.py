"""§3 and §4: the four call types in both versions, response framing, metadata, deadlines."""

from __future__ import annotations

import base64
import urllib.parse

import wt
from common import SVC, expect_status, expect_stop_sending, session, test


def check_ok_response(resp: wt.Response, sizes: list[int]) -> None:
    """§3.5: response header block, the messages, a trailer block with grpc-status 0, FIN."""
    expect_status(resp, wt.OK, trailers_only=False)
    first = resp.frames[0]
    assert first.is_headers and "grpc-status" not in first.headers, f"no response header block: {resp}"
    assert first.headers.get("content-type", "").startswith("application/grpc"), resp
    assert len(resp.header_blocks) == 2, f"exactly a header block and a trailer block: {resp}"
    assert [wt.payload_body_len(m) for m in resp.messages] == sizes, resp
    assert all(f.flags in (0x00, 0x80) for f in resp.frames), resp


async def unary(env, version):
    async with session(env.gw, version) as s:
        call = s.call().headers(SVC + "UnaryCall").message(wt.simple_request(response_size=10))
        call.end(version)
        resp = await call.response()
        check_ok_response(resp, [10])
        if version == 2:
            call.fin()
        # §5.4: the request ended first, so no STOP_SENDING.
        await expect_stop_sending(call, None)


@test
async def test_3_5_unary_v1(env):
    await unary(env, 1)


@test
async def test_3_5_unary_v2(env):
    await unary(env, 2)


async def empty(env, version):
    async with session(env.gw, version) as s:
        resp = await s.unary("EmptyCall", b"")
        check_ok_response(resp, [0])
        assert resp.messages == [b""], resp


@test
async def test_3_5_empty_call_v1(env):
    await empty(env, 1)


@test
async def test_3_5_empty_call_v2(env):
    await empty(env, 2)


async def server_streaming(env, version):
    async with session(env.gw, version) as s:
        resp = await s.unary("StreamingOutputCall", wt.streaming_output_request([1, 20, 300]))
        check_ok_response(resp, [1, 20, 300])


@test
async def test_3_5_server_streaming_v1(env):
    await server_streaming(env, 1)


@test
async def test_3_5_server_streaming_v2(env):
    await server_streaming(env, 2)


async def client_streaming(env, version):
    async with session(env.gw, version) as s:
        call = s.call().headers(SVC + "StreamingInputCall")
        for size in (3, 40, 500):
            call.message(wt.streaming_input_request(b"x" * size))
        call.end(version)
        resp = await call.response()
        expect_status(resp, wt.OK, trailers_only=False)
        assert len(resp.messages) == 1, resp
        assert wt.pb_fields(resp.messages[0])[1] == [543], resp  # aggregated_payload_size
        if version == 2:
            call.fin()


@test
async def test_3_4_client_streaming_v1(env):
    await client_streaming(env, 1)


@test
async def test_3_4_client_streaming_v2(env):
    await client_streaming(env, 2)


async def full_duplex(env, version):
    """§4: the server answers each message before the request ended, and the client sends its
    next message only after reading that answer."""
    async with session(env.gw, version) as s:
        call = s.call().headers(SVC + "FullDuplexCall")
        for i, size in enumerate((5, 6, 7)):
            call.message(wt.streaming_output_request([size]))
            frames = await call.wait_frames(i + 2)  # the response header block and i+1 messages
            assert wt.payload_body_len(frames[i + 1].payload) == size, frames
        call.end(version)
        resp = await call.response()
        check_ok_response(resp, [5, 6, 7])
        if version == 2:
            call.fin()


@test
async def test_4_full_duplex_v1(env):
    await full_duplex(env, 1)


@test
async def test_4_full_duplex_v2(env):
    await full_duplex(env, 2)


async def half_duplex(env, version):
    async with session(env.gw, version) as s:
        call = s.call().headers(SVC + "HalfDuplexCall")
        call.message(wt.streaming_output_request([4])).message(wt.streaming_output_request([8]))
        call.end(version)
        check_ok_response(await call.response(), [4, 8])


@test
async def test_3_5_half_duplex_v1(env):
    await half_duplex(env, 1)


@test
async def test_3_5_half_duplex_v2(env):
    await half_duplex(env, 2)


@test
async def test_3_4_v2_fin_alone_ends_request(env):
    """§3.4: in version 2 a FIN without the end-of-request frame also ends the request."""
    async with session(env.gw, 2) as s:
        call = s.call().headers(SVC + "UnaryCall").message(wt.simple_request(response_size=3), fin=True)
        check_ok_response(await call.response(), [3])


@test
async def test_3_5_trailers_only(env):
    """§3.5: a call that fails before any response header block is one header block with
    grpc-status (percent-encoded grpc-message), then FIN."""
    async with session(env.gw, 2) as s:
        resp = await s.unary("UnaryCall", wt.simple_request(status=(9, "héllo 100%")))
        expect_status(resp, 9, trailers_only=True)
        encoded = resp.trailers["grpc-message"]
        assert all(" " <= c <= "~" for c in encoded) and urllib.parse.unquote(encoded) == "héllo 100%", resp


@test
async def test_3_5_trailer_block_after_messages(env):
    """§3.5: a status after messages comes as a separate trailer block."""
    async with session(env.gw, 2) as s:
        resp = await s.unary("StreamingOutputCall", wt.streaming_output_request([2], status=(10, "later")))
        expect_status(resp, 10, trailers_only=False)
        assert len(resp.messages) == 1 and resp.trailers["grpc-message"] == "later", resp


@test
async def test_3_3_metadata_reaches_service(env):
    """§3.3: request metadata reaches the service (the interop echo sends it back as a response
    header and a trailer); §3.2: a -bin value may be unpadded base64."""
    value = bytes([0xCA, 0xFE, 0xBA, 0xBE])  # base64 "yv66vg==", sent unpadded
    unpadded = base64.b64encode(value).decode().rstrip("=")
    async with session(env.gw, 2) as s:
        resp = await s.unary("UnaryCall", wt.simple_request(response_size=1),
                             extra=[("x-grpc-test-echo-initial", "hello"),
                                    ("x-grpc-test-echo-trailing-bin", unpadded)])
        expect_status(resp, wt.OK, trailers_only=False)
        assert resp.frames[0].headers.get("x-grpc-test-echo-initial") == "hello", resp
        echoed = resp.trailers.get("x-grpc-test-echo-trailing-bin")
        assert echoed is not None and base64.b64decode(echoed + "=" * (-len(echoed) % 4)) == value, resp


@test
async def test_3_2_lf_lines_and_no_space_accepted(env):
    """§3.2: receivers MUST accept `name:value` without the space and lines ended by a bare LF."""
    async with session(env.gw, 2) as s:
        raw = f":path:{SVC}UnaryCall\ncontent-type:application/grpc\r\nx-grpc-test-echo-initial:v\n".encode()
        call = s.call().write(wt.header_block(raw=raw)).message(wt.simple_request(response_size=2))
        call.end(2)
        resp = await call.response()
        check_ok_response(resp, [2])
        assert resp.frames[0].headers.get("x-grpc-test-echo-initial") == "v", resp


@test
async def test_3_3_content_type_variants_accepted(env):
    """§3.3: application/grpc+proto is a valid content-type."""
    async with session(env.gw, 2) as s:
        call = s.call().headers(SVC + "EmptyCall", content_type="application/grpc+proto").message(b"")
        call.end(2)
        expect_status(await call.response(), wt.OK)


@test
async def test_3_5_unknown_method_unimplemented(env):
    """§5.5: an unknown method is the service's UNIMPLEMENTED; with the request ended, no
    STOP_SENDING."""
    async with session(env.gw, 1) as s:
        call = s.call().headers(SVC + "NoSuchMethod").message(b"", fin=True)
        expect_status(await call.response(), wt.UNIMPLEMENTED)
        await expect_stop_sending(call, None)


@test
async def test_5_5_unknown_method_before_request_end_stop_sending_cancel(env):
    """§5.5/§5.4: UNIMPLEMENTED before the request ended, then STOP_SENDING CANCEL."""
    async with session(env.gw, 2) as s:
        call = s.call().headers("/no.such.Service/Method")
        expect_status(await call.response(), wt.UNIMPLEMENTED)
        await expect_stop_sending(call, wt.CANCEL)


@test
async def test_4_deadline_enforced(env):
    """§4: on grpc-timeout expiry the server writes DEADLINE_EXCEEDED and FIN; the request had
    not ended, so STOP_SENDING CANCEL follows (§5.4)."""
    async with session(env.gw, 2) as s:
        call = s.call().headers(SVC + "FullDuplexCall", [("grpc-timeout", "300m")])
        resp = await call.response()
        expect_status(resp, wt.DEADLINE_EXCEEDED)
        await expect_stop_sending(call, wt.CANCEL)


@test
async def test_5_4_v2_no_fin_after_trailers_stop_sending_cancel(env):
    """§5.4: in version 2 the server waits (weir: up to 5 s) for the client's FIN after its
    own, then sends STOP_SENDING CANCEL."""
    async with session(env.gw, 2) as s:
        call = s.call().headers(SVC + "EmptyCall").message(b"").end(2)
        expect_status(await call.response(), wt.OK)
        await call.conn.quiet_for(3.0, lambda: call.state.stop_sending is not None,
                                  "STOP_SENDING well before the 5 s wait for the client's FIN")
        await expect_stop_sending(call, wt.CANCEL, timeout=5.0)


@test
async def test_5_4_v2_fin_after_trailers_no_stop_sending(env):
    """§5.4: a version-2 client that FINs after the trailers gets no STOP_SENDING."""
    async with session(env.gw, 2) as s:
        call = s.call().headers(SVC + "EmptyCall").message(b"").end(2)
        expect_status(await call.response(), wt.OK)
        call.fin()
        await call.conn.quiet_for(6.0, lambda: call.state.stop_sending is not None,
                                  f"STOP_SENDING on stream {call.sid} after the client's FIN")


@test
async def test_5_4_service_answers_before_request_end(env):
    """§5.4: a call the service ends before the request ended (FullDuplexCall asked for status
    9 after one message) gets its status and FIN, then STOP_SENDING CANCEL."""
    async with session(env.gw, 2) as s:
        call = s.call().headers(SVC + "FullDuplexCall")
        call.message(wt.streaming_output_request([2], status=(9, "early")))
        resp = await call.response()
        expect_status(resp, 9, trailers_only=False)
        assert [wt.payload_body_len(m) for m in resp.messages] == [2], resp
        await expect_stop_sending(call, wt.CANCEL)

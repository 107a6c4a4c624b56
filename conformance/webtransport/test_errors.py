"""§3.1–§3.4 and §5.5: what the server answers to requests that break the mapping.

Each test writes its request without ending it (unless the point is how it ends), so that the
STOP_SENDING of §5.4 is due; the status is checked with FIN, and trailers-only where no
response header block can have been written yet.
"""

from __future__ import annotations

import time

import wt
from common import SVC, expect_reset, expect_status, expect_stop_sending, session, test

CT = ("content-type", "application/grpc")


async def refused(env, data: bytes, status: int, stop: int | None, version: int = 2,
                  trailers_only: bool | None = True) -> wt.Response:
    """Write `data` on a new call stream; expect `status`, then STOP_SENDING `stop`."""
    async with session(env.gw, version) as s:
        call = s.call().write(data)
        resp = await call.response()
        expect_status(resp, status, trailers_only)
        await expect_stop_sending(call, stop)
        return resp


def block(*lines: tuple[str, str]) -> bytes:
    return wt.header_block(list(lines))


# --- Malformed request header blocks (§3.2, §3.3) -------------------------------------------


@test
async def test_3_2_uppercase_name_v1(env):
    await refused(env, block((":path", SVC + "EmptyCall"), ("Content-Type", "application/grpc")),
                  wt.INTERNAL, wt.PROTOCOL_ERROR, version=1)


@test
async def test_3_2_uppercase_name_v2(env):
    await refused(env, block((":path", SVC + "EmptyCall"), CT, ("x-Custom", "1")),
                  wt.INTERNAL, wt.PROTOCOL_ERROR)


@test
async def test_3_3_method_pseudo_header(env):
    await refused(env, block((":path", SVC + "EmptyCall"), (":method", "POST"), CT),
                  wt.INTERNAL, wt.PROTOCOL_ERROR)


@test
async def test_3_3_authority_pseudo_header(env):
    await refused(env, block((":authority", "example.com"), (":path", SVC + "EmptyCall"), CT),
                  wt.INTERNAL, wt.PROTOCOL_ERROR)


@test
async def test_3_3_duplicate_path(env):
    await refused(env, block((":path", SVC + "EmptyCall"), CT, (":path", SVC + "EmptyCall")),
                  wt.INTERNAL, wt.PROTOCOL_ERROR)


@test
async def test_3_3_missing_path(env):
    await refused(env, block(CT, ("x-a", "b")), wt.INTERNAL, wt.PROTOCOL_ERROR)


@test
async def test_3_2_control_character_in_value(env):
    await refused(env, block((":path", SVC + "EmptyCall"), CT, ("x-a", "a\x01b")),
                  wt.INTERNAL, wt.PROTOCOL_ERROR)


@test
async def test_3_2_non_ascii_value(env):
    raw = f":path: {SVC}EmptyCall\r\ncontent-type: application/grpc\r\nx-a: caf\xe9\r\n".encode("latin-1")
    await refused(env, wt.header_block(raw=raw), wt.INTERNAL, wt.PROTOCOL_ERROR)


@test
async def test_3_2_invalid_base64_bin_value(env):
    await refused(env, block((":path", SVC + "EmptyCall"), CT, ("x-a-bin", "!!!")),
                  wt.INTERNAL, wt.PROTOCOL_ERROR)


@test
async def test_3_2_line_without_colon(env):
    raw = f":path: {SVC}EmptyCall\r\ncontent-type: application/grpc\r\nno colon here\r\n".encode()
    await refused(env, wt.header_block(raw=raw), wt.INTERNAL, wt.PROTOCOL_ERROR)


# --- The header block limit (§3.2, §6) -------------------------------------------------------


def sized_block(total: int) -> bytes:
    """A request header block for EmptyCall whose HTTP/2-style size (name + value + 32 per
    line) is exactly `total`."""
    path = SVC + "EmptyCall"
    used = (5 + len(path) + 32) + (len(CT[0]) + len(CT[1]) + 32) + (len("x-pad") + 32)
    return block((":path", path), CT, ("x-pad", "a" * (total - used)))


@test
async def test_3_2_header_block_over_limit(env):
    """§3.2, §5.5: a request header block over 16 KiB: RESOURCE_EXHAUSTED, STOP_SENDING
    PROTOCOL_ERROR."""
    await refused(env, sized_block(16385), wt.RESOURCE_EXHAUSTED, wt.PROTOCOL_ERROR)


@test
async def test_3_2_header_block_at_limit_accepted(env):
    """§3.2: a request header block of exactly 16 KiB is within the limit: the server passes the
    call on. (The answer is then the upstream's: a weir upstream with the same 16 KiB limit
    refuses it, since the gateway adds its own request headers, so only the absence of the
    server's refusal is checked.)"""
    async with session(env.gw, 2) as s:
        call = s.call().write(sized_block(16384)).message(b"").end(2)
        resp = await call.response()
        assert resp.state.fin and resp.status is not None, resp
        assert resp.status != wt.RESOURCE_EXHAUSTED, f"a 16384-byte block was refused: {resp}"
        assert call.state.stop_sending != wt.wt_code(wt.PROTOCOL_ERROR), resp
        call.fin()


# --- Frames (§3.1, §3.4) ----------------------------------------------------------------------


@test
async def test_3_1_reserved_flag_first_frame(env):
    await refused(env, wt.frame(0x40, b""), wt.INTERNAL, wt.PROTOCOL_ERROR)


@test
async def test_3_1_reserved_flag_after_header_block(env):
    """§3.1: a reserved flag on a later frame, in a call already running."""
    await refused(env, block((":path", SVC + "FullDuplexCall"), CT) + wt.frame(0x02, b"\x00"),
                  wt.INTERNAL, wt.PROTOCOL_ERROR, trailers_only=None)


@test
async def test_5_5_first_frame_not_header_block(env):
    await refused(env, wt.message(b""), wt.INTERNAL, wt.PROTOCOL_ERROR)


@test
async def test_3_4_second_header_block(env):
    """§3.4: a second, non-empty header block is a protocol error."""
    await refused(env, block((":path", SVC + "FullDuplexCall"), CT) + block(("x-a", "b")),
                  wt.INTERNAL, wt.PROTOCOL_ERROR, trailers_only=None)


@test
async def test_3_4_v1_end_of_request_frame_is_error(env):
    """§3.4: in version 1 even an empty header block after the request header block is a
    protocol error."""
    await refused(env, block((":path", SVC + "FullDuplexCall"), CT) + wt.END_OF_REQUEST,
                  wt.INTERNAL, wt.PROTOCOL_ERROR, version=1, trailers_only=None)


@test
async def test_3_4_v2_frame_after_end_of_request(env):
    """§3.4: in version 2 nothing may follow the end-of-request frame."""
    await refused(env, block((":path", SVC + "FullDuplexCall"), CT) + wt.END_OF_REQUEST + wt.message(b""),
                  wt.INTERNAL, wt.PROTOCOL_ERROR, trailers_only=None)


@test
async def test_3_4_v2_second_end_of_request(env):
    await refused(env, block((":path", SVC + "FullDuplexCall"), CT) + wt.END_OF_REQUEST * 2,
                  wt.INTERNAL, wt.PROTOCOL_ERROR, trailers_only=None)


@test
async def test_5_5_fin_before_header_block(env):
    """§5.5: FIN before any request header block: INTERNAL, no STOP_SENDING (the request ended)."""
    async with session(env.gw, 2) as s:
        call = s.call().fin()
        expect_status(await call.response(), wt.INTERNAL, trailers_only=True)
        await expect_stop_sending(call, None)


@test
async def test_5_5_fin_inside_header_block(env):
    async with session(env.gw, 2) as s:
        call = s.call().write(block((":path", SVC + "EmptyCall"), CT)[:20], fin=True)
        expect_status(await call.response(), wt.INTERNAL, trailers_only=True)
        await expect_stop_sending(call, None)


@test
async def test_5_5_fin_inside_message_frame(env):
    async with session(env.gw, 2) as s:
        call = s.call().headers(SVC + "UnaryCall").write(wt.message(b"\x10\x05")[:4], fin=True)
        expect_status(await call.response(), wt.INTERNAL)
        await expect_stop_sending(call, None)


@test
async def test_5_5_missing_content_type(env):
    await refused(env, block((":path", SVC + "EmptyCall")), wt.INTERNAL, wt.CANCEL)


@test
async def test_5_5_invalid_content_type(env):
    for ct in ("text/plain", "application/grpc-web"):
        await refused(env, block((":path", SVC + "EmptyCall"), ("content-type", ct)), wt.INTERNAL, wt.CANCEL)


@test
async def test_5_5_invalid_grpc_timeout(env):
    for timeout in ("abc", "123456789S", "5s"):
        await refused(env, block((":path", SVC + "EmptyCall"), CT, ("grpc-timeout", timeout)),
                      wt.INTERNAL, wt.CANCEL)


@test
async def test_5_5_message_over_limit(env):
    """§5.5: a message frame announcing more than 4 MiB: RESOURCE_EXHAUSTED, STOP_SENDING
    PROTOCOL_ERROR (the prefix says so; the payload need not be sent)."""
    prefix = bytes([0]) + (4 * 1024 * 1024 + 1).to_bytes(4, "big")
    await refused(env, block((":path", SVC + "StreamingInputCall"), CT) + prefix + b"\x0a" * 1024,
                  wt.RESOURCE_EXHAUSTED, wt.PROTOCOL_ERROR, trailers_only=None)


@test
async def test_5_5_no_header_block_timeout(env):
    """§5.5, §6: no request header block within 10 s: the response side is reset with
    PROTOCOL_ERROR, no status, and STOP_SENDING PROTOCOL_ERROR."""
    async with session(env.gw, 2) as s:
        started = time.monotonic()
        call = s.call()
        resp = await call.response(timeout=13.0)
        elapsed = time.monotonic() - started
        expect_reset(resp, wt.wt_code(wt.PROTOCOL_ERROR))
        assert resp.frames == [], resp
        await expect_stop_sending(call, wt.PROTOCOL_ERROR)
        assert 9.5 <= elapsed <= 12.0, f"reset after {elapsed:.1f} s"

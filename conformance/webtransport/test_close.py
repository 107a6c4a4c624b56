"""§2.4: closing a session, by the client and by a server that stops."""

from __future__ import annotations

import asyncio
import signal
import struct
import time

import servers
import wt
from common import SVC, expect_reset, expect_status, session, test


def close_capsule(code: int, reason: str) -> tuple[int, bytes]:
    return wt.CLOSE_WEBTRANSPORT_SESSION, struct.pack(">I", code) + reason.encode()


async def client_closes(name: str, close) -> None:
    """A running call, then the client ends the session with `close(session)`."""
    p = await servers.pair(name)
    try:
        async with session(p.gw, 2) as s:
            before = await p.cancellations("FullDuplexCall")
            call = s.call().headers(SVC + "FullDuplexCall")
            await call.wait_frames(1)
            close(s)
            connect = s.conn.stream(s.sid)
            await s.conn.until(lambda: connect.fin, what="FIN of the CONNECT stream")
            expect_reset(await call.response(), wt.WT_SESSION_GONE)
            after = await p.wait_cancellations("FullDuplexCall", before + 1)
            assert after == before + 1, f"the backend saw {after - before} cancelled calls"
            # The client closes the connection, not the server.
            await s.conn.quiet_for(1.0, lambda: s.conn.terminated, "the server closing the connection")
    finally:
        await p.close()


@test
async def test_2_4_client_close_capsule(env):
    """§2.4: CLOSE_WEBTRANSPORT_SESSION from the client: calls are cancelled and reset with
    WT_SESSION_GONE, the server FINs the CONNECT stream and leaves the connection open."""
    await client_closes("client-close", lambda s: s.conn.close_session(s.sid, 7, "bye"))


@test
async def test_2_4_client_fin_without_capsule(env):
    """§2.4: a FIN of the CONNECT stream without a capsule closes the session all the same."""
    def fin(s):
        s.conn.h3.send_data(s.sid, b"", end_stream=True)
        s.conn.transmit()
    await client_closes("client-fin", fin)


@test
async def test_2_4_client_close_connect_stream_codes(env):
    """§2.4, §5.1: after the client's capsule and FIN the server finishes the CONNECT stream,
    with no reset or STOP_SENDING carrying a code §5.1 does not define."""
    from common import ALLOWED_CODES

    async with session(env.gw, 2) as s:
        st = s.conn.stream(s.sid)
        s.conn.close_session(s.sid, 0, "")
        await s.conn.until(lambda: st.fin, what="FIN of the CONNECT stream")
        try:
            await s.conn.until(lambda: any(c is not None and c not in ALLOWED_CODES
                                           for c in (st.reset, st.stop_sending)), 1.0)
        except wt.TimedOut:
            return
        raise AssertionError(f"on the CONNECT stream: STOP_SENDING {st.stop_sending!r}, reset {st.reset!r}")


@test
async def test_2_4_connection_closed_10s_after_session(env):
    """§2.4: the server closes a connection whose session ended only if the client has not
    within 10 s, with H3_NO_ERROR."""
    async with session(env.gw, 2) as s:
        s.conn.close_session(s.sid)
        await s.conn.until(lambda: s.conn.stream(s.sid).fin, what="FIN of the CONNECT stream")
        started = time.monotonic()
        closed = await s.conn.closed(timeout=13.0)
        elapsed = time.monotonic() - started
        assert closed.error_code == wt.H3_NO_ERROR, closed
        assert 9.0 <= elapsed <= 12.0, f"closed {elapsed:.1f} s after the session ended"


# --- The server stops -------------------------------------------------------------------------


async def wait_capsules(s, n: int, timeout: float = 5.0) -> list[tuple[int, bytes]]:
    return await s.conn.until(lambda: len(s.conn.capsules(s.sid)) >= n and s.conn.capsules(s.sid),
                              timeout, f"{n} capsules on the CONNECT stream")


async def expect_server_close(s, timeout: float = 5.0) -> None:
    """§2.4 steps 2 and 3: CLOSE code 0 `shutting down`, FIN, then the connection closed."""
    await s.conn.until(lambda: s.conn.stream(s.sid).fin, timeout, "FIN of the CONNECT stream")
    capsules = s.conn.capsules(s.sid)
    assert capsules == [(wt.DRAIN_WEBTRANSPORT_SESSION, b""), close_capsule(0, "shutting down")], capsules
    closed = await s.conn.closed(timeout=3.0)  # at most 1 s, and some slack
    assert closed.error_code == wt.H3_NO_ERROR, closed


@test
async def test_2_4_shutdown_drains_then_closes_after_last_call(env):
    """§2.4: on SIGTERM: DRAIN at once; new calls are refused with REFUSED; the running call
    goes on; when it ended, CLOSE (0, `shutting down`), FIN, and the connection closes."""
    p = await servers.pair("shutdown", timeouts='drain_delay = "0s"\nshutdown_grace = "20s"')
    try:
        async with session(p.gw, 2) as s:
            call = s.call().headers(SVC + "FullDuplexCall")
            await call.wait_frames(1)
            p.gw.signal(signal.SIGTERM)
            assert await wait_capsules(s, 1) == [(wt.DRAIN_WEBTRANSPORT_SESSION, b"")]

            refused = s.call().headers(SVC + "EmptyCall").message(b"").end(2)
            expect_reset(await refused.response(), wt.wt_code(wt.REFUSED))
            assert refused.frames()[0] == [], "a refused call gets no frames"

            call.message(wt.streaming_output_request([3]))
            await call.wait_frames(2)
            assert not s.conn.stream(s.sid).fin, "the session closed while a call was running"
            call.end(2)
            expect_status(await call.response(), wt.OK)
            call.fin()
            await expect_server_close(s)
        assert await asyncio.wait_for(p.gw.proc.wait(), 5) == 0
    finally:
        await p.close()


@test
async def test_2_4_shutdown_grace_over_ends_calls_unavailable(env):
    """§2.4: calls still running when the grace period is over end UNAVAILABLE (a trailer
    block, or a reset with WT_SESSION_GONE), the session is closed (0, `shutting down`), and
    their backends see cancelled calls."""
    p = await servers.pair("grace", timeouts='drain_delay = "0s"\nshutdown_grace = "1s"')
    try:
        async with session(p.gw, 2) as s:
            before = await p.cancellations("FullDuplexCall")
            call = s.call().headers(SVC + "FullDuplexCall")
            await call.wait_frames(1)
            p.gw.signal(signal.SIGTERM)
            assert await wait_capsules(s, 1) == [(wt.DRAIN_WEBTRANSPORT_SESSION, b"")]
            resp = await call.response()
            if resp.state.reset is not None:
                expect_reset(resp, wt.WT_SESSION_GONE)
            else:
                expect_status(resp, wt.UNAVAILABLE)
            await expect_server_close(s)
            after = await p.wait_cancellations("FullDuplexCall", before + 1)
            assert after == before + 1, f"the backend saw {after - before} cancelled calls"
    finally:
        await p.close()


@test
async def test_2_4_shutdown_idle_session(env):
    """§2.4: a session without calls is drained and closed at once."""
    p = await servers.pair("idle-shutdown", timeouts='drain_delay = "0s"\nshutdown_grace = "20s"')
    try:
        async with session(p.gw, 2) as s:
            p.gw.signal(signal.SIGTERM)
            await expect_server_close(s)
    finally:
        await p.close()


@test
async def test_2_4_demo_shutdown_closes_session(env):
    """§2.4: `weir demo` (no drain phase) closes its sessions the same way on SIGTERM."""
    demo = await servers.demo("demo-shutdown", webtransport=True)
    try:
        async with session(demo, 2) as s:
            demo.signal(signal.SIGTERM)
            await expect_server_close(s)
    finally:
        await demo.stop()

"""What the test modules share: the registry, Skip, and a few call helpers."""

from __future__ import annotations

import contextlib

import wt

TESTS = []


def test(fn):
    """Register an async test `fn(env)`. Its name cites the section it checks."""
    TESTS.append(fn)
    return fn


class Skip(Exception):
    pass


SVC = "/grpc.testing.TestService/"


@contextlib.asynccontextmanager
async def session(server, version: int = 2, **kwargs):
    """A session on a server's WebTransport listener (a servers.Weir)."""
    async with wt.session(server.wt.host, server.wt.port, version, **kwargs) as s:
        yield s
        # §5.1: the server sends no stream error codes but these, in any test, on call streams
        # (the CONNECT stream's are checked by test_2_4_client_close_connect_stream_codes).
        for sid, st in s.conn.streams.items():
            if sid == s.sid:
                continue
            for what, code in (("reset", st.reset), ("STOP_SENDING", st.stop_sending)):
                assert code is None or code in ALLOWED_CODES, \
                    f"§5.1: {what} with {code:#x} ({wt.code_name(code)}) on stream {sid}"


ALLOWED_CODES = {wt.wt_code(wt.CANCEL), wt.wt_code(wt.PROTOCOL_ERROR), wt.wt_code(wt.REFUSED),
                 wt.H3_REQUEST_REJECTED, wt.WT_SESSION_GONE}


def expect_status(resp: wt.Response, code: int, trailers_only: bool | None = None) -> None:
    assert resp.state.fin, f"expected FIN after the status: {resp}"
    assert resp.rest == b"", f"bytes after the last frame: {resp}"
    assert resp.status == code, f"expected grpc-status {code}: {resp}"
    if trailers_only is not None:
        assert resp.trailers_only == trailers_only, f"trailers-only should be {trailers_only}: {resp}"


def expect_reset(resp: wt.Response, h3_code: int) -> None:
    assert resp.state.reset == h3_code, \
        f"expected the response side reset with {wt.code_name(h3_code)}, got {resp}"
    assert all(not (f.is_headers and "grpc-status" in f.headers) for f in resp.frames), \
        f"no trailer block may be written before the reset: {resp}"


async def expect_stop_sending(call: wt.Call, app_code: int | None, timeout: float = 5.0) -> None:
    """STOP_SENDING with the mapped WebTransport code app_code (None: no STOP_SENDING at all,
    checked for a second after the response ended)."""
    if app_code is None:
        await call.conn.quiet_for(1.0, lambda: call.state.stop_sending is not None,
                                  f"STOP_SENDING on stream {call.sid}")
        return
    got = await call.stop_sending(timeout)
    assert got == wt.wt_code(app_code), \
        f"expected STOP_SENDING {wt.code_name(wt.wt_code(app_code))}, got {wt.code_name(got)} ({got:#x})"

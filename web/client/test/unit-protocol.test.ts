// Pure protocol logic: frame parser, base64 text decoding, heartbeat
// skipping and error mapping, with a scripted in-memory Wire (no network).

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { encodeEnvelope } from "@connectrpc/connect/protocol";
import { Base64Decoder, encodeBase64 } from "../src/base64.js";
import { checkResponse, createWireTransport, formatInterval, type Wire, wireError } from "../src/core.js";
import { FrameParser } from "../src/frames.js";
import { StreamingOutputCallResponseSchema } from "../../interop/src/gen/grpc/testing/messages_pb.js";
import { TestService } from "../../interop/src/gen/grpc/testing/test_pb.js";

const enc = new TextEncoder();
const concat = (...parts: Uint8Array[]) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
};
const frame = (flags: number, data: Uint8Array) => encodeEnvelope(flags, data);
const trailer = (s: string) => frame(0x80, enc.encode(s));
const HEARTBEAT = new Uint8Array([0x40, 0, 0, 0, 0]);
const msg = (size: number) =>
  frame(0, toBinary(StreamingOutputCallResponseSchema, create(StreamingOutputCallResponseSchema, { payload: { body: new Uint8Array(size) } })));

function codeOf(f: () => unknown): Code {
  try {
    f();
  } catch (e) {
    assert.ok(e instanceof ConnectError, `not a ConnectError: ${String(e)}`);
    return e.code;
  }
  assert.fail("did not throw");
}

describe("FrameParser", () => {
  const body = concat(msg(3), HEARTBEAT, msg(0), msg(300), trailer("grpc-status: 0\r\n"));

  test("every split into two chunks gives the same frames", () => {
    for (let cut = 0; cut <= body.length; cut++) {
      const p = new FrameParser(1 << 20);
      const frames = [...p.push(body.subarray(0, cut)), ...p.push(body.subarray(cut))];
      p.end();
      assert.deepEqual(frames.map((f) => [f.flags, f.data.length]), [[0, 7], [0x40, 0], [0, 2], [0, 306], [0x80, 16]]);
    }
  });

  test("every split into three chunks gives the same frames, byte for byte", () => {
    const payloads = (fs: { flags: number; data: Uint8Array }[]) => fs.map((f) => [f.flags, [...f.data]]);
    const whole = new FrameParser(1 << 20).push(body);
    assert.equal(whole.length, 5);
    for (let a = 0; a <= body.length; a += 3) {
      for (let b = a; b <= body.length; b += 7) {
        const p = new FrameParser(1 << 20);
        const frames = [...p.push(body.subarray(0, a)), ...p.push(body.subarray(a, b)), ...p.push(body.subarray(b))];
        p.end();
        assert.deepEqual(payloads(frames), payloads(whole), `cuts at ${a} and ${b}`);
      }
    }
  });

  test("a frame's data is its own copy, not a view of the chunk it came in", () => {
    const chunk = concat(msg(3), msg(5));
    const frames = new FrameParser(1024).push(chunk);
    for (const f of frames) {
      assert.notEqual(f.data.buffer, chunk.buffer);
      assert.equal(f.data.byteLength, f.data.buffer.byteLength);
    }
    chunk.fill(0xff);
    assert.deepEqual([...(frames[0]?.data ?? [])], [...msg(3).subarray(5)]);
  });

  test("the byte offset in an error is the same however the body is chunked", () => {
    const bad = concat(msg(3), new Uint8Array([0x12, 0, 0, 0, 0]));
    const messageOf = (chunks: Uint8Array[]) => {
      const p = new FrameParser(1024);
      try {
        for (const c of chunks) p.push(c);
      } catch (e) {
        return (e as Error).message;
      }
      assert.fail("did not throw");
    };
    const whole = messageOf([bad]);
    assert.match(whole, /at byte 12\b/);
    assert.equal(messageOf([...bad].map((b) => new Uint8Array([b]))), whole);
    assert.equal(messageOf([bad.subarray(0, 14), bad.subarray(14)]), whole);
  });

  test("one byte at a time", () => {
    const p = new FrameParser(1 << 20);
    const frames = [];
    for (const b of body) frames.push(...p.push(new Uint8Array([b])));
    p.end();
    assert.equal(frames.length, 5);
    assert.ok(p.trailerSeen);
  });

  test("oversize length prefix fails before allocating", () => {
    const p = new FrameParser(1024);
    assert.equal(codeOf(() => p.push(new Uint8Array([0, 0xff, 0xff, 0xff, 0xff]))), Code.ResourceExhausted);
  });

  test("truncated body, inside prefix and inside payload", () => {
    const a = new FrameParser(1024);
    a.push(new Uint8Array([0, 0, 0]));
    assert.equal(codeOf(() => a.end()), Code.Internal);
    const b = new FrameParser(1024);
    b.push(new Uint8Array([0, 0, 0, 0, 9, 1, 2]));
    assert.equal(codeOf(() => b.end()), Code.Internal);
  });

  test("bytes after the trailer (second trailer, data after trailer)", () => {
    const p = new FrameParser(1024);
    assert.equal(codeOf(() => p.push(concat(trailer("grpc-status: 0\r\n"), trailer("grpc-status: 0\r\n")))), Code.Internal);
  });

  test("garbage flags, compressed frame without negotiation, heartbeat with payload", () => {
    for (const bad of [
      new Uint8Array([0x12, 0, 0, 0, 0]),
      new Uint8Array([0x01, 0, 0, 0, 0]),
      new Uint8Array([0xc0, 0, 0, 0, 0]),
      new Uint8Array([0x40, 0, 0, 0, 1, 0]),
    ]) {
      assert.equal(codeOf(() => new FrameParser(1024).push(bad)), Code.Internal, `flags ${bad[0]}`);
    }
  });
});

describe("Base64Decoder", () => {
  test("padding at every 4-character boundary, any chunking", () => {
    for (let n = 0; n < 40; n++) {
      // Several frames of different lengths, each base64-encoded on its own.
      const parts = [0, 1, 2, 3].map((k) => new Uint8Array(n + k).map((_, i) => (i * 37 + k) & 0xff));
      const text = enc.encode(parts.map(encodeBase64).join(""));
      const expected = concat(...parts);
      for (const step of [1, 2, 3, 4, 5, 7, 1000]) {
        const d = new Base64Decoder();
        const out: Uint8Array[] = [];
        for (let i = 0; i < text.length; i += step) out.push(d.push(text.subarray(i, i + step)));
        d.end();
        assert.deepEqual(concat(...out), expected, `n=${n} step=${step}`);
      }
    }
  });

  test("matches Buffer base64", () => {
    const bytes = new Uint8Array(1000).map((_, i) => (i * 131) & 0xff);
    for (let n = 0; n < 50; n++) assert.equal(encodeBase64(bytes.subarray(0, n)), Buffer.from(bytes.subarray(0, n)).toString("base64"));
  });

  test("invalid characters, misplaced padding, truncated group", () => {
    assert.deepEqual([...new Base64Decoder().push(enc.encode("QQ==QUI=QUJD"))], [65, 65, 66, 65, 66, 67]);
    for (const bad of ["QUJD!", "QU=D", "=AAA", "QUJDRA", "QUJ\nD"]) {
      const d = new Base64Decoder();
      const c = codeOf(() => {
        d.push(enc.encode(bad));
        d.end();
      });
      assert.equal(c, Code.Internal, bad);
    }
  });
});

test("formatInterval uses grpc-timeout syntax", () => {
  assert.equal(formatInterval(15_000), "15S");
  assert.equal(formatInterval(1500), "1500m");
  assert.equal(formatInterval(0.2), "1m");
  assert.equal(formatInterval(1e12), "99999999S");
});

describe("error mapping", () => {
  test("HTTP status → gRPC code (gRPC HTTP mapping)", () => {
    const cases: [number, Code][] = [
      [400, Code.Internal],
      [401, Code.Unauthenticated],
      [403, Code.PermissionDenied],
      [404, Code.Unimplemented],
      [429, Code.Unavailable],
      [502, Code.Unavailable],
      [503, Code.Unavailable],
      [504, Code.Unavailable],
      [500, Code.Unknown],
      [415, Code.Unknown],
    ];
    for (const [status, code] of cases) assert.equal(codeOf(() => checkResponse(status, new Headers())), code, `HTTP ${status}`);
  });
  test("200 without a gRPC-Web content type → UNKNOWN", () => {
    assert.equal(codeOf(() => checkResponse(200, new Headers({ "content-type": "text/html" }))), Code.Unknown);
  });
  test("trailers-only", () => {
    const h = new Headers({ "content-type": "application/grpc-web+proto", "grpc-status": "5", "grpc-message": "no%20such" });
    const e = (() => {
      try {
        checkResponse(200, h);
      } catch (err) {
        return err as ConnectError;
      }
      throw new Error("no error");
    })();
    assert.equal(e.code, Code.NotFound);
    assert.equal(e.rawMessage, "no such");
    const ok = checkResponse(200, new Headers({ "content-type": "application/grpc-web+proto", "grpc-status": "0" }));
    assert.ok(ok !== undefined);
  });
  test("network failure → UNAVAILABLE, abort → the abort reason", () => {
    assert.equal(wireError(new TypeError("Failed to fetch"), new AbortController().signal).code, Code.Unavailable);
    const c = new AbortController();
    c.abort(new ConnectError("deadline", Code.DeadlineExceeded));
    assert.equal(wireError(new TypeError("aborted"), c.signal).code, Code.DeadlineExceeded);
    const d = new AbortController();
    d.abort();
    assert.equal(wireError(new TypeError("aborted"), d.signal).code, Code.Canceled);
  });
});

/** A Wire that answers every call with the given status, headers and body chunks. */
function scripted(status: number, headers: Record<string, string>, chunks: (Uint8Array | "hang")[], seen?: Headers[]): Wire {
  return {
    async send(req) {
      seen?.push(req.headers);
      const queue = [...chunks];
      return {
        status,
        headers: new Headers(headers),
        read: () => {
          const c = queue.shift();
          if (c === "hang") return new Promise(() => {});
          return Promise.resolve(c ?? null);
        },
        cancel() {},
      };
    },
  };
}

const GW = { "content-type": "application/grpc-web+proto" };
const OK = trailer("grpc-status: 0\r\n");

async function runStream(wire: Wire, opts: { heartbeat?: { interval: number; graceMs?: number }; format?: "text" | "binary" } = {}) {
  const client = createClient(TestService, createWireTransport({ baseUrl: "http://x", ...opts }, wire));
  const sizes: number[] = [];
  try {
    for await (const m of client.streamingOutputCall({})) sizes.push(m.payload?.body.length ?? -1);
    return { sizes, code: undefined as Code | undefined, message: "" };
  } catch (e) {
    const err = ConnectError.from(e);
    return { sizes, code: err.code, message: err.message };
  }
}

describe("response streams (scripted wire)", () => {
  test("heartbeat frames are skipped, split anywhere", async () => {
    const body = concat(HEARTBEAT, msg(5), HEARTBEAT, HEARTBEAT, msg(6), HEARTBEAT, OK);
    for (let cut = 0; cut < body.length; cut += 3) {
      const r = await runStream(scripted(200, GW, [body.subarray(0, cut), body.subarray(cut)]));
      assert.deepEqual(r, { sizes: [5, 6], code: undefined, message: "" });
    }
  });

  test("heartbeat request header and watchdog", async () => {
    const seen: Headers[] = [];
    const t0 = Date.now();
    const r = await runStream(
      scripted(200, { ...GW, "weir-heartbeat": "50m" }, [msg(1), HEARTBEAT, "hang"], seen),
      { heartbeat: { interval: 15_000, graceMs: 100 } },
    );
    assert.equal(seen[0]?.get("weir-heartbeat"), "15S");
    assert.deepEqual(r.sizes, [1]);
    assert.equal(r.code, Code.Unavailable, r.message);
    assert.match(r.message, /heartbeat/);
    assert.ok(Date.now() - t0 < 2000);
  });

  test("no watchdog when the server did not grant heartbeats", async () => {
    const r = await runStream(scripted(200, GW, [msg(1), OK]), { heartbeat: { interval: 1000, graceMs: 1 } });
    assert.deepEqual(r, { sizes: [1], code: undefined, message: "" });
  });

  test("text mode", async () => {
    const body = enc.encode([msg(2), HEARTBEAT, msg(9), OK].map(encodeBase64).join(""));
    const r = await runStream(scripted(200, { "content-type": "application/grpc-web-text" }, [body.subarray(0, 7), body.subarray(7)]), { format: "text" });
    assert.deepEqual(r, { sizes: [2, 9], code: undefined, message: "" });
    const bad = await runStream(scripted(200, { "content-type": "application/grpc-web-text" }, [enc.encode("AAAA*AAA")]), { format: "text" });
    assert.equal(bad.code, Code.Internal);
  });

  test("missing trailer is an error, not success", async () => {
    const r = await runStream(scripted(200, GW, [msg(1)]));
    assert.equal(r.code, Code.Internal);
    assert.match(r.message, /trailer/);
  });

  test("error status in the trailer, with metadata", async () => {
    const client = createClient(TestService, createWireTransport({ baseUrl: "http://x" }, scripted(200, GW, [msg(1), trailer("grpc-status: 7\r\ngrpc-message: nope\r\nx-a: b\r\n")])));
    await assert.rejects(
      (async () => {
        for await (const _ of client.streamingOutputCall({}));
      })(),
      (e: unknown) => e instanceof ConnectError && e.code === Code.PermissionDenied && e.rawMessage === "nope" && e.metadata.get("x-a") === "b",
    );
  });

  test("a bad message in a chunk of many: the ones before it arrive, then INTERNAL", async () => {
    const r = await runStream(scripted(200, GW, [concat(msg(1), msg(2), frame(0, new Uint8Array([0xff])), msg(3), OK)]));
    assert.deepEqual(r.sizes, [1, 2]);
    assert.equal(r.code, Code.Internal);
    assert.match(r.message, /failed to parse response message/);
  });

  /** The wire of one call whose body is `chunks`, counting cancels; and a transport over it. */
  function streamOver(chunks: Uint8Array[]) {
    const wire = scripted(200, GW, chunks);
    let cancels = 0;
    const counted: Wire = {
      async send(req) {
        const res = await wire.send(req);
        return { ...res, cancel: () => void cancels++ };
      },
    };
    const transport = createWireTransport({ baseUrl: "http://x" }, counted);
    const call = (signal?: AbortSignal) =>
      transport.stream(TestService.method.streamingOutputCall, signal, undefined, undefined, (async function* () {
        yield create(TestService.method.streamingOutputCall.input, {});
      })());
    return { call, cancels: () => cancels };
  }
  const sizeOf = (r: IteratorResult<{ payload?: { body: Uint8Array } }>) => (r.done === true ? "done" : (r.value.payload?.body.length ?? -1));

  test("next() calls made at once are answered in order, across chunks", async () => {
    const s = streamOver([msg(1), concat(msg(2), msg(3)), OK]);
    const it = (await s.call()).message[Symbol.asyncIterator]();
    const rs = await Promise.all([it.next(), it.next(), it.next(), it.next(), it.next()]);
    assert.deepEqual(rs.map(sizeOf), [1, 2, 3, "done", "done"]);
    assert.ok(s.cancels() >= 1, "the call was released");
  });

  test("an abort stops the messages of the chunk in hand", async () => {
    const s = streamOver([concat(msg(1), msg(2), msg(3), OK)]);
    const ctl = new AbortController();
    const it = (await s.call(ctl.signal)).message[Symbol.asyncIterator]();
    assert.equal(sizeOf(await it.next()), 1);
    ctl.abort(new ConnectError("stop", Code.Canceled));
    await assert.rejects(it.next(), (e: unknown) => e instanceof ConnectError && e.code === Code.Canceled);
    assert.equal(s.cancels(), 1);
  });

  test("unary: trailers-only OK is 'missing response message'", async () => {
    const client = createClient(TestService, createWireTransport({ baseUrl: "http://x" }, scripted(200, { ...GW, "grpc-status": "0" }, [])));
    await assert.rejects(client.emptyCall({}), (e: unknown) => e instanceof ConnectError && e.code === Code.Unimplemented);
  });
});

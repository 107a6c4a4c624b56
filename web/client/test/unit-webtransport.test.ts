// gRPC over WebTransport without a network: header-block encoding and
// decoding, stream error codes, the discovery document, and the transport
// against a scripted in-memory WebTransport (streams from Node's web streams).

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { encodeEnvelope } from "@connectrpc/connect/protocol";
import { FrameParser } from "../src/frames.js";
import { createWebTransportTransport, type SessionCloseInfo } from "../src/webtransport.js";
import {
  chooseVersion,
  codeFromStreamError,
  decodeHeaderBlock,
  encodeHeaderBlock,
  END_OF_REQUEST,
  headerBlockFrame,
  hexToBytes,
  parseDiscovery,
  StreamErrorCode,
  streamErrorToConnectError,
} from "../src/wt-protocol.js";
import { SimpleResponseSchema, StreamingOutputCallResponseSchema } from "../../interop/src/gen/grpc/testing/messages_pb.js";
import { TestService } from "../../interop/src/gen/grpc/testing/test_pb.js";

const enc = new TextEncoder();
const dec = new TextDecoder();
const block = (s: string) => encodeEnvelope(0x80, enc.encode(s));
const streamMsg = (size: number) =>
  encodeEnvelope(0, toBinary(StreamingOutputCallResponseSchema, create(StreamingOutputCallResponseSchema, { payload: { body: new Uint8Array(size) } })));
const unaryMsg = (size: number) => encodeEnvelope(0, toBinary(SimpleResponseSchema, create(SimpleResponseSchema, { payload: { body: new Uint8Array(size) } })));
const HEAD = block("content-type: application/grpc\r\n");
const OK = block("grpc-status: 0\r\n");

const codeOf = async (p: Promise<unknown>) => {
  try {
    await p;
    return { code: -1, message: "" };
  } catch (e) {
    const err = ConnectError.from(e);
    return { code: err.code, message: err.rawMessage };
  }
};

describe("header blocks", () => {
  test("encode: :path first, lowercase names, CRLF lines, -bin without padding", () => {
    const h = new Headers({ "Content-Type": "application/grpc+proto", "grpc-timeout": "100m", "x-trace-bin": "q6s=", authorization: "Bearer t" });
    const text = dec.decode(encodeHeaderBlock(h, [[":path", "/grpc.testing.TestService/EmptyCall"]]));
    const lines = text.split("\r\n");
    assert.equal(lines[0], ":path: /grpc.testing.TestService/EmptyCall");
    assert.equal(lines.at(-1), "", "every line ends with CRLF");
    assert.ok(lines.includes("content-type: application/grpc+proto"));
    assert.ok(lines.includes("grpc-timeout: 100m"));
    assert.ok(lines.includes("x-trace-bin: q6s"));
    assert.ok(lines.includes("authorization: Bearer t"));
  });

  test("encode: a header-block frame has flags 0x80 and a big-endian length", () => {
    const f = headerBlockFrame(new Headers({ a: "b" }));
    assert.equal(f[0], 0x80);
    assert.equal(new DataView(f.buffer).getUint32(1), f.length - 5);
    assert.equal(dec.decode(f.subarray(5)), "a: b\r\n");
  });

  test("encode: a value that cannot travel on a line is INTERNAL", () => {
    assert.throws(() => encodeHeaderBlock(new Headers({ x: "caf\u00e9" })), (e) => e instanceof ConnectError && e.code === Code.Internal);
    assert.throws(() => encodeHeaderBlock(new Headers(), [[":path", "/a\r\nb"]]), (e) => e instanceof ConnectError && e.code === Code.Internal);
  });

  test("decode: CRLF, bare LF, no space, repeated names, -bin padded or not", () => {
    const h = decodeHeaderBlock(enc.encode("grpc-status: 3\r\ngrpc-message:bad%20thing\nx-a: 1\r\nx-a: 2\r\nx-b-bin: q6s=\nx-c-bin: q6s, AQ\r\n"));
    assert.equal(h.get("grpc-status"), "3");
    assert.equal(h.get("grpc-message"), "bad%20thing");
    assert.equal(h.get("x-a"), "1, 2");
    assert.equal(h.get("x-b-bin"), "q6s=");
    assert.equal(h.get("x-c-bin"), "q6s, AQ");
    assert.equal([...h.keys()].length, 5);
  });

  test("decode: empty block", () => {
    assert.equal([...decodeHeaderBlock(new Uint8Array()).keys()].length, 0);
  });

  for (const [name, text] of [
    ["a line without a colon", "grpc-status 0\r\n"],
    ["a line without an ending", "grpc-status: 0"],
    ["an empty line inside", "a: 1\r\n\r\nb: 2\r\n"],
    ["an invalid name", "bad name: 1\r\n"],
    ["a control character in a value", "a: \u0001\r\n"],
    // §3.2: names MUST be lowercase; a receiver treats anything else as malformed.
    ["a name with an uppercase letter", "Content-Type: application/grpc\r\n"],
    ["a pseudo-header (none is defined for responses)", ":status: 200\r\n"],
    ["a -bin value that is not base64", "x-trace-bin: q6$s\r\n"],
    ["a value that is not printable ASCII", "x-a: caf\u00e9\r\n"],
  ] as const) {
    test(`decode: ${name} is INTERNAL`, () => {
      assert.throws(() => decodeHeaderBlock(enc.encode(text)), (e) => e instanceof ConnectError && e.code === Code.Internal);
    });
  }

  test("decode: invalid UTF-8 is INTERNAL", () => {
    assert.throws(() => decodeHeaderBlock(new Uint8Array([0x61, 0x3a, 0xff, 0x0a])), (e) => e instanceof ConnectError && e.code === Code.Internal);
  });

  test("round trip", () => {
    const h = new Headers({ "x-grpc-test-echo-initial": "test_initial_metadata_value", "grpc-timeout": "5S" });
    const back = decodeHeaderBlock(encodeHeaderBlock(h));
    assert.deepEqual([...back], [...h]);
  });

  test("the end-of-request frame (§3.4) is an empty header block: 80 00 00 00 00", () => {
    assert.deepEqual([...END_OF_REQUEST], [0x80, 0, 0, 0, 0]);
    const frames = new FrameParser(1024, { heartbeats: false, trailerEnds: false }).push(END_OF_REQUEST);
    assert.deepEqual(frames.map((f) => [f.flags, f.data.length]), [[0x80, 0]]);
  });
});

describe("mapping version (§8)", () => {
  test("the version a URL names, when it is 1 or 2", () => {
    assert.deepEqual(chooseVersion("https://h:4433/weir?v=1"), { url: "https://h:4433/weir?v=1", version: 1 });
    assert.deepEqual(chooseVersion("https://h:4433/weir?v=2"), { url: "https://h:4433/weir?v=2", version: 2 });
  });
  test("no version, or one this client does not speak: version 2, named in the URL", () => {
    assert.deepEqual(chooseVersion("https://h:4433/weir"), { url: "https://h:4433/weir?v=2", version: 2 });
    assert.deepEqual(chooseVersion("https://h:4433/weir?v=3"), { url: "https://h:4433/weir?v=2", version: 2 });
    assert.deepEqual(chooseVersion("https://h:4433/weir?x=y"), { url: "https://h:4433/weir?x=y&v=2", version: 2 });
  });
});

describe("stream error codes (§5)", () => {
  test("CANCEL → CANCELLED, PROTOCOL_ERROR → INTERNAL, REFUSED → UNAVAILABLE, other or no code → UNKNOWN", () => {
    assert.equal(codeFromStreamError(StreamErrorCode.CANCEL), Code.Canceled);
    assert.equal(codeFromStreamError(StreamErrorCode.PROTOCOL_ERROR), Code.Internal);
    assert.equal(codeFromStreamError(StreamErrorCode.REFUSED), Code.Unavailable);
    assert.equal(codeFromStreamError(3), Code.Unknown);
    assert.equal(codeFromStreamError(0xffffffff), Code.Unknown);
    assert.equal(codeFromStreamError(null), Code.Unknown, "a reset without an application code (§5.1: other or no code)");
  });
  test("messages name the code", () => {
    assert.match(streamErrorToConnectError(2, "reset").rawMessage, /REFUSED/);
    assert.match(streamErrorToConnectError(7, "reset").rawMessage, /unknown code 0x7/);
  });
});

describe("discovery document (§7)", () => {
  test("hex hashes become bytes", () => {
    const d = parseDiscovery({ version: 1, url: "https://127.0.0.1:4433/weir?v=1", certificateHashes: [{ algorithm: "sha-256", value: "00ff10" }] });
    assert.equal(d.url, "https://127.0.0.1:4433/weir?v=1");
    assert.deepEqual([...(d.serverCertificateHashes[0]?.value ?? [])], [0, 255, 16]);
  });
  test("the document's format version is 1 whatever mapping version its url names", () => {
    assert.equal(parseDiscovery({ version: 1, url: "https://h:4433/weir?v=2", certificateHashes: [] }).url, "https://h:4433/weir?v=2");
  });
  test("wrong format version, bad hex, missing url are refused", () => {
    assert.throws(() => parseDiscovery({ version: 2, url: "https://x/", certificateHashes: [] }), /format version/);
    assert.throws(() => parseDiscovery({ version: 1, certificateHashes: [] }), /url/);
    assert.throws(() => parseDiscovery({ version: 1, url: "https://x/", certificateHashes: [{ algorithm: "sha-256", value: "zz" }] }), /hex/);
    assert.throws(() => hexToBytes("abc"), /hex/);
  });
});

describe("frame parser in WebTransport mode", () => {
  test("two header blocks pass; 0x40 is reserved", () => {
    const p = new FrameParser(1024, { heartbeats: false, trailerEnds: false });
    assert.equal(p.push(new Uint8Array([...HEAD, ...streamMsg(1), ...OK])).length, 3);
    assert.throws(() => new FrameParser(1024, { heartbeats: false }).push(new Uint8Array([0x40, 0, 0, 0, 0])), /flags 0x40/);
  });
});

// ---- the transport against a scripted WebTransport ---------------------------

interface FakeStream {
  /** Bytes the client wrote, in order. */
  written: Uint8Array[];
  closedByClient: boolean;
  /** The reason the client aborted its writer / cancelled its reader with. */
  writerAbort: unknown;
  readerCancel: unknown;
  /** Server side of the receive direction. */
  respond(bytes: Uint8Array): void;
  fin(): void;
  reset(code: number | null): void;
  /** STOP_SENDING from the server: the client's writes (and its FIN) fail from now on. */
  stopSending(code: number): void;
  onWrite?: (chunk: Uint8Array) => void;
  onClose?: () => void;
}

class FakeWebTransportError extends Error {
  constructor(
    readonly source: string,
    readonly streamErrorCode: number | null,
  ) {
    super(`stream error ${streamErrorCode}`);
  }
}

interface FakeSession {
  url: string;
  options: unknown;
  /** The server closes the session (CLOSE_WEBTRANSPORT_SESSION). */
  serverClose(closeCode: number, reason: string): void;
  /** The server drains the session (DRAIN_WEBTRANSPORT_SESSION). */
  drain(): void;
}

function fakeWebTransport(onStream: (s: FakeStream) => void, opts: { failReady?: boolean } = {}) {
  const sessions: FakeSession[] = [];
  class FakeWT {
    readonly ready: Promise<void>;
    readonly closed: Promise<{ closeCode: number; reason: string }>;
    readonly draining: Promise<void>;
    private resolveClosed!: (v: { closeCode: number; reason: string }) => void;
    constructor(url: string, options: unknown) {
      let drain = () => {};
      this.draining = new Promise((r) => (drain = r));
      sessions.push({ url, options, serverClose: (closeCode, reason) => this.resolveClosed({ closeCode, reason }), drain });
      this.ready = opts.failReady === true ? Promise.reject(new Error("Opening handshake failed.")) : Promise.resolve();
      this.ready.catch(() => {});
      this.closed = new Promise((r) => (this.resolveClosed = r));
    }
    close(info?: { closeCode?: number; reason?: string }) {
      this.resolveClosed({ closeCode: info?.closeCode ?? 0, reason: info?.reason ?? "" });
    }
    async createBidirectionalStream() {
      let ctl!: ReadableStreamDefaultController<Uint8Array>;
      let wctl!: WritableStreamDefaultController;
      const s: FakeStream = {
        written: [],
        closedByClient: false,
        writerAbort: undefined,
        readerCancel: undefined,
        respond: (b) => ctl.enqueue(b),
        fin: () => ctl.close(),
        reset: (code) => ctl.error(new FakeWebTransportError("stream", code)),
        stopSending: (code) => wctl.error(new FakeWebTransportError("stream", code)),
      };
      const readable = new ReadableStream<Uint8Array>({
        start: (c) => {
          ctl = c;
        },
        cancel: (r) => {
          s.readerCancel = r ?? "cancelled without a reason";
        },
      });
      const writable = new WritableStream<Uint8Array>({
        start: (c) => {
          wctl = c;
        },
        write: (chunk) => {
          s.written.push(chunk.slice());
          s.onWrite?.(chunk);
        },
        close: () => {
          s.closedByClient = true;
          s.onClose?.();
        },
        abort: (r) => {
          s.writerAbort = r ?? "aborted without a reason";
        },
      });
      onStream(s);
      return { readable, writable };
    }
  }
  return { WebTransport: FakeWT as unknown as typeof WebTransport, sessions };
}

const requestText = (s: FakeStream) => {
  const all = new Uint8Array(s.written.reduce((n, c) => n + c.length, 0));
  let o = 0;
  for (const c of s.written) {
    all.set(c, o);
    o += c.length;
  }
  const frames = new FrameParser(1 << 20, { heartbeats: false, trailerEnds: false }).push(all);
  return { head: dec.decode(frames[0]?.data), frames };
};

let endpoint = 0;
/** A transport on a fresh endpoint (sessions are shared by endpoint); `v`: the URL's `v` parameter (none: the default). */
const transportWith = (
  onStream: (s: FakeStream) => void,
  opts: { failReady?: boolean; v?: string; onSessionClose?: (info: SessionCloseInfo) => void } = {},
) => {
  const fake = fakeWebTransport(onStream, opts);
  const transport = createWebTransportTransport({
    url: `https://wt.test:${4000 + endpoint++}/weir${opts.v === undefined ? "" : `?v=${opts.v}`}`,
    serverCertificateHashes: [{ algorithm: "sha-256", value: "ab".repeat(32) }],
    WebTransport: fake.WebTransport,
    onSessionClose: opts.onSessionClose,
  });
  return { transport, fake, client: createClient(TestService, transport) };
};
const tick = (ms = 10) => new Promise((r) => setTimeout(r, ms));
const frameList = (s: FakeStream) => requestText(s).frames.map((f) => [f.flags, f.data.length > 0 ? "…" : 0]);

describe("transport (scripted WebTransport)", () => {
  test("unary (version 2): request header block, one message, end-of-request frame; headers and trailers reach the caller; FIN after them", async () => {
    let seen: FakeStream | undefined;
    const { client, fake } = transportWith((s) => {
      seen = s;
      s.respond(block("content-type: application/grpc\r\nx-h: 1\r\n"));
      s.respond(unaryMsg(3));
      s.respond(block("grpc-status: 0\r\nx-t-bin: q6ur\r\n"));
      s.fin();
    });
    let header: Headers | undefined;
    let trailer: Headers | undefined;
    const r = await client.unaryCall(
      { responseSize: 3 },
      { timeoutMs: 5000, headers: { "x-echo-bin": "AQ==" }, onHeader: (h) => (header = h), onTrailer: (t) => (trailer = t) },
    );
    assert.equal(r.payload?.body.length, 3);
    assert.equal(header?.get("x-h"), "1");
    assert.equal(trailer?.get("x-t-bin"), "q6ur");
    assert.ok(seen);
    const { head, frames } = requestText(seen);
    assert.match(head, /^:path: \/grpc\.testing\.TestService\/UnaryCall\r\n/);
    assert.match(head, /\r\ncontent-type: application\/grpc\+proto\r\n/);
    assert.match(head, /\r\ngrpc-timeout: (5S|4\d{3}m)\r\n/);
    assert.match(head, /\r\nx-echo-bin: AQ\r\n/);
    assert.deepEqual(frames.map((f) => [f.flags, f.data.length]), [[0x80, head.length], [0, 2], [0x80, 0]], "header block, the message, end of request");
    assert.equal(seen.written.length, 1, "one write");
    await tick();
    assert.ok(seen.closedByClient, "FIN after the trailer block");
    assert.match(fake.sessions[0]?.url ?? "", /\/weir\?v=2$/);
    assert.deepEqual(fake.sessions[0]?.options, { serverCertificateHashes: [{ algorithm: "sha-256", value: hexToBytes("ab".repeat(32)) }] });
  });

  test("one session for many calls", async () => {
    const { client, fake } = transportWith((s) => {
      s.respond(HEAD);
      s.respond(unaryMsg(1));
      s.respond(OK);
      s.fin();
    });
    await Promise.all(Array.from({ length: 5 }, () => client.unaryCall({})));
    assert.equal(fake.sessions.length, 1);
  });

  test("trailers-only error", async () => {
    const { client } = transportWith((s) => {
      s.respond(block("grpc-status: 12\r\ngrpc-message: no%20such%20method\r\n"));
      s.fin();
    });
    assert.deepEqual(await codeOf(client.unaryCall({})), { code: Code.Unimplemented, message: "no such method" });
  });

  test("missing trailer → INTERNAL, never success", async () => {
    const { client } = transportWith((s) => {
      s.respond(HEAD);
      s.respond(streamMsg(1));
      s.fin();
    });
    const out = await codeOf((async () => {
      for await (const _ of client.streamingOutputCall({})) void _;
    })());
    assert.equal(out.code, Code.Internal);
    assert.match(out.message, /without a trailer/);
  });

  test("a message before the header block, or a frame after the trailer → INTERNAL", async () => {
    for (const body of [[unaryMsg(1), OK], [HEAD, unaryMsg(1), OK, unaryMsg(1)], [HEAD, unaryMsg(1), OK, OK]]) {
      const { client } = transportWith((s) => {
        for (const b of body) s.respond(b);
        s.fin();
      });
      assert.equal((await codeOf(client.unaryCall({}))).code, Code.Internal);
    }
  });

  for (const [code, expected] of [
    [0, Code.Canceled],
    [1, Code.Internal],
    [2, Code.Unavailable],
    [9, Code.Unknown],
  ] as const) {
    test(`a server reset with code ${code} → ${Code[expected]}`, async () => {
      const { client } = transportWith((s) => {
        s.respond(HEAD);
        s.reset(code);
      });
      assert.equal((await codeOf(client.unaryCall({}))).code, expected);
    });
  }

  test("abort of a bidi call resets the send side and stops the receive side with CANCEL", async (t) => {
    // Chromium's constructor form: new WebTransportError({streamErrorCode}).
    const g = globalThis as { WebTransportError?: unknown };
    const saved = g.WebTransportError;
    g.WebTransportError = class {
      readonly streamErrorCode: number | null;
      constructor(init: { streamErrorCode?: number }) {
        this.streamErrorCode = init.streamErrorCode ?? null;
      }
    };
    t.after(() => {
      g.WebTransportError = saved;
    });
    let seen: FakeStream | undefined;
    const { client } = transportWith((s) => {
      seen = s;
      s.respond(HEAD);
      s.respond(streamMsg(1));
    });
    const ac = new AbortController();
    const out = await codeOf((async () => {
      const input = (async function* () {
        yield {};
        await new Promise(() => {});
      })();
      for await (const _ of client.fullDuplexCall(input, { signal: ac.signal })) ac.abort();
    })());
    assert.equal(out.code, Code.Canceled);
    await new Promise((r) => setTimeout(r, 10));
    assert.ok(seen);
    assert.equal((seen.writerAbort as { streamErrorCode?: number })?.streamErrorCode, 0, "send side reset with CANCEL");
    assert.equal((seen.readerCancel as { streamErrorCode?: number })?.streamErrorCode, 0, "STOP_SENDING with CANCEL");
    assert.equal(seen.closedByClient, false);
  });

  test("full duplex: each answer arrives before the next request is produced", async () => {
    const { client } = transportWith((s) => {
      s.respond(HEAD);
      let n = 0;
      s.onWrite = (chunk) => {
        if (chunk[0] === 0) s.respond(streamMsg(++n));
        else if (chunk.length === 5) {
          // the end-of-request frame
          s.respond(OK);
          s.fin();
        }
      };
    });
    const got: number[] = [];
    let arrived = () => {};
    const input = (async function* () {
      for (let i = 1; i <= 3; i++) {
        const answered = new Promise<void>((r) => (arrived = r));
        yield { responseParameters: [{ size: i }] };
        await answered; // would never resolve on a half-duplex transport
      }
    })();
    for await (const m of client.fullDuplexCall(input)) {
      got.push(m.payload?.body.length ?? -1);
      arrived();
    }
    assert.deepEqual(got, [1, 2, 3]);
  });

  test("no WebTransport → UNIMPLEMENTED with a clear message", async () => {
    const transport = createWebTransportTransport({ url: "https://x.test/weir?v=1", WebTransport: undefined });
    const saved = (globalThis as { WebTransport?: unknown }).WebTransport;
    delete (globalThis as { WebTransport?: unknown }).WebTransport;
    try {
      const out = await codeOf(createClient(TestService, transport).emptyCall({}));
      assert.equal(out.code, Code.Unimplemented);
      assert.match(out.message, /WebTransport is not available/);
    } finally {
      if (saved !== undefined) (globalThis as { WebTransport?: unknown }).WebTransport = saved;
    }
  });

  test("session that cannot open → UNAVAILABLE; the next call tries again", async () => {
    const { client, fake } = transportWith(() => {}, { failReady: true });
    const out = await codeOf(client.emptyCall({}));
    assert.equal(out.code, Code.Unavailable);
    assert.match(out.message, /could not open a WebTransport session/);
    await codeOf(client.emptyCall({}));
    assert.equal(fake.sessions.length, 2);
  });

  test("discovery: 404 → UNAVAILABLE that names the cause; the document's url and hashes are used", async () => {
    const fake = fakeWebTransport((s) => {
      s.respond(HEAD);
      s.respond(unaryMsg(0));
      s.respond(OK);
      s.fin();
    });
    const missing = createWebTransportTransport({
      baseUrl: "http://gone.test",
      WebTransport: fake.WebTransport,
      fetch: async () => new Response("not found", { status: 404 }),
    });
    const out = await codeOf(createClient(TestService, missing).emptyCall({}));
    assert.equal(out.code, Code.Unavailable);
    assert.match(out.message, /404.*webtransport-listen/);
    const refused = createWebTransportTransport({
      baseUrl: "http://old.test",
      WebTransport: fake.WebTransport,
      fetch: async () => new Response("", { status: 405 }),
    });
    assert.match((await codeOf(createClient(TestService, refused).emptyCall({}))).message, /no WebTransport endpoint.*405/);
    const found = createWebTransportTransport({
      baseUrl: "http://found.test/",
      WebTransport: fake.WebTransport,
      fetch: async (url) => {
        assert.equal(String(url), "http://found.test/.well-known/weir/webtransport");
        return Response.json({ version: 1, url: "https://found.test:4433/weir?v=1", certificateHashes: [{ algorithm: "sha-256", value: "0102" }] });
      },
    });
    await createClient(TestService, found).emptyCall({});
    assert.equal(fake.sessions[0]?.url, "https://found.test:4433/weir?v=1");
    assert.deepEqual(fake.sessions[0]?.options, { serverCertificateHashes: [{ algorithm: "sha-256", value: new Uint8Array([1, 2]) }] });
  });

  test("session closed by the server → UNAVAILABLE for open calls; a new session for the next call", async () => {
    let wtClose: (() => void) | undefined;
    const fake = fakeWebTransport((s) => {
      s.respond(HEAD);
    });
    const Orig = fake.WebTransport as unknown as new (u: string, o: unknown) => { close(i?: unknown): void };
    class Tracking extends Orig {
      constructor(u: string, o: unknown) {
        super(u, o);
        wtClose = () => this.close({ closeCode: 0, reason: "shutting down" });
      }
    }
    const transport = createWebTransportTransport({ url: "https://lost.test/weir?v=1", WebTransport: Tracking as unknown as typeof WebTransport });
    const client = createClient(TestService, transport);
    const call = codeOf((async () => {
      for await (const _ of client.streamingOutputCall({})) void _;
    })());
    await new Promise((r) => setTimeout(r, 20));
    wtClose?.();
    const out = await call;
    assert.equal(out.code, Code.Unavailable);
    assert.match(out.message, /shutting down/);
    void codeOf(client.emptyCall({}, { timeoutMs: 50 }));
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(fake.sessions.length, 2);
  });

  // ---- version 2: the send side stays open until the response ended (§3.4, §5)

  test("version 2, unary: the send side stays open until the trailer block is read, then FIN", async () => {
    let seen: FakeStream | undefined;
    const { client } = transportWith((s) => {
      seen = s;
      s.respond(HEAD);
    });
    const call = client.unaryCall({ responseSize: 1 });
    await tick();
    assert.ok(seen);
    assert.deepEqual(frameList(seen), [[0x80, "…"], [0, "…"], [0x80, 0]]);
    assert.equal(seen.closedByClient, false, "no FIN before the response ended");
    seen.respond(unaryMsg(1));
    seen.respond(OK);
    seen.fin();
    assert.equal((await call).payload?.body.length, 1);
    await tick();
    assert.equal(seen.closedByClient, true, "FIN once the trailer block was read");
    assert.equal(seen.writerAbort, undefined);
  });

  test("version 2, client streaming: messages, then the end-of-request frame; FIN after the trailers", async () => {
    let seen: FakeStream | undefined;
    let closedBeforeTrailers: boolean | undefined;
    const { client } = transportWith((s) => {
      seen = s;
      s.onWrite = (chunk) => {
        // The end-of-request frame: the server answers.
        if (chunk.length === 5 && chunk[0] === 0x80) {
          closedBeforeTrailers = s.closedByClient;
          s.respond(HEAD);
          s.respond(encodeEnvelope(0, new Uint8Array([0x08, 0x07])));
          s.respond(OK);
          s.fin();
        }
      };
    });
    const r = await client.streamingInputCall(
      (async function* () {
        yield { payload: { body: new Uint8Array(3) } };
        yield { payload: { body: new Uint8Array(4) } };
      })(),
    );
    assert.equal(r.aggregatedPayloadSize, 7);
    assert.ok(seen);
    assert.deepEqual(frameList(seen), [[0x80, "…"], [0, "…"], [0, "…"], [0x80, 0]]);
    assert.equal(closedBeforeTrailers, false);
    await tick();
    assert.equal(seen.closedByClient, true);
  });

  test("version 2: the server answers before the request ended → FIN (no end-of-request frame needed), nothing more is written", async () => {
    let seen: FakeStream | undefined;
    const { client } = transportWith((s) => {
      seen = s;
      s.respond(block("grpc-status: 3\r\ngrpc-message: bad\r\n"));
      s.fin();
    });
    let produce = () => {};
    const input = (async function* () {
      yield {};
      await new Promise<void>((r) => (produce = r));
      yield {};
    })();
    const out = await codeOf((async () => {
      for await (const _ of client.fullDuplexCall(input)) void _;
    })());
    assert.deepEqual(out, { code: Code.InvalidArgument, message: "bad" });
    produce();
    await tick();
    assert.ok(seen);
    assert.equal(seen.closedByClient, true);
    assert.equal(seen.writerAbort, undefined, "not a cancel");
    assert.ok(requestText(seen).frames.length <= 2, "nothing written after the response ended");
  });

  test("version 2: abort of a server stream resets the (still open) send side and stops the receive side, both CANCEL", async (t) => {
    const g = globalThis as { WebTransportError?: unknown };
    const saved = g.WebTransportError;
    // Firefox's constructor form: new WebTransportError(message, {streamErrorCode}).
    g.WebTransportError = class {
      readonly streamErrorCode: number | null;
      constructor(_message?: unknown, init?: { streamErrorCode?: number }) {
        this.streamErrorCode = init?.streamErrorCode ?? null;
      }
    };
    t.after(() => {
      g.WebTransportError = saved;
    });
    let seen: FakeStream | undefined;
    const { client } = transportWith((s) => {
      seen = s;
      s.respond(HEAD);
      s.respond(streamMsg(1));
    });
    const ac = new AbortController();
    const out = await codeOf((async () => {
      for await (const _ of client.streamingOutputCall({}, { signal: ac.signal })) ac.abort();
    })());
    assert.equal(out.code, Code.Canceled);
    await tick();
    assert.ok(seen);
    assert.deepEqual(frameList(seen), [[0x80, "…"], [0, 0], [0x80, 0]], "the request had ended (end-of-request frame)");
    assert.equal((seen.writerAbort as { streamErrorCode?: number })?.streamErrorCode, 0, "RESET_STREAM CANCEL");
    assert.equal((seen.readerCancel as { streamErrorCode?: number })?.streamErrorCode, 0, "STOP_SENDING CANCEL");
    assert.equal(seen.closedByClient, false, "no FIN");
  });

  test("version 1 (the URL names v=1): FIN right after the request; a cancel can only stop the receive side", async () => {
    let seen: FakeStream | undefined;
    const { client, fake } = transportWith(
      (s) => {
        seen = s;
        s.respond(HEAD);
        s.respond(streamMsg(1));
      },
      { v: "1" },
    );
    const ac = new AbortController();
    const out = await codeOf((async () => {
      for await (const _ of client.streamingOutputCall({}, { signal: ac.signal })) ac.abort();
    })());
    assert.equal(out.code, Code.Canceled);
    await tick();
    assert.ok(seen);
    assert.match(fake.sessions[0]?.url ?? "", /\?v=1$/);
    assert.deepEqual(frameList(seen), [[0x80, "…"], [0, 0]], "no end-of-request frame in version 1");
    assert.equal(seen.closedByClient, true, "FIN after the message");
    assert.equal(seen.writerAbort, undefined, "a finished send side cannot be reset");
    assert.notEqual(seen.readerCancel, undefined);
  });

  test("version from the discovery document: v=1 → version 1; v=2, none or a newer one → version 2", async () => {
    for (const [named, expectedUrl, v1] of [
      ["https://d.test:4433/weir?v=1", "https://d.test:4433/weir?v=1", true],
      ["https://d.test:4433/weir?v=2", "https://d.test:4433/weir?v=2", false],
      ["https://d.test:4433/weir", "https://d.test:4433/weir?v=2", false],
      ["https://d.test:4433/weir?v=3", "https://d.test:4433/weir?v=2", false],
    ] as const) {
      let seen: FakeStream | undefined;
      const fake = fakeWebTransport((s) => {
        seen = s;
        s.onWrite = () => {
          if (s.written.length === 3) {
            s.respond(HEAD);
            s.respond(encodeEnvelope(0, new Uint8Array()));
            s.respond(OK);
            s.fin();
          }
        };
        s.onClose = () => {
          if (s.written.length === 2) {
            s.respond(HEAD);
            s.respond(encodeEnvelope(0, new Uint8Array()));
            s.respond(OK);
            s.fin();
          }
        };
      });
      const transport = createWebTransportTransport({
        baseUrl: `http://d${endpoint++}.test`,
        WebTransport: fake.WebTransport,
        fetch: async () => Response.json({ version: 1, url: named, certificateHashes: [] }),
      });
      await createClient(TestService, transport).streamingInputCall((async function* () {
        yield {};
      })());
      assert.equal(fake.sessions[0]?.url, expectedUrl, named);
      assert.ok(seen);
      assert.deepEqual(frameList(seen), v1 ? [[0x80, "…"], [0, 0]] : [[0x80, "…"], [0, 0], [0x80, 0]], named);
    }
  });

  test("STOP_SENDING from the server: the client stops writing and reads on; the trailer block decides the status", async () => {
    for (const [status, expected] of [
      ["0", -1],
      ["3", Code.InvalidArgument],
    ] as const) {
      let seen: FakeStream | undefined;
      const { client } = transportWith((s) => {
        seen = s;
        s.respond(HEAD);
        s.onWrite = (chunk) => {
          if (chunk[0] !== 0) return;
          // The server ends the call early (§5.4): status, FIN, then STOP_SENDING.
          s.respond(streamMsg(2));
          s.respond(block(`grpc-status: ${status}\r\n`));
          s.stopSending(StreamErrorCode.CANCEL);
          setTimeout(() => s.fin(), 5);
        };
      });
      let more = () => {};
      const input = (async function* () {
        yield {};
        await new Promise<void>((r) => (more = r));
        yield {}; // written after STOP_SENDING: fails, quietly
      })();
      const got: number[] = [];
      const out = await codeOf((async () => {
        for await (const m of client.fullDuplexCall(input)) {
          got.push(m.payload?.body.length ?? -1);
          more();
        }
      })());
      assert.equal(out.code, expected, out.message);
      assert.deepEqual(got, [2]);
      await tick();
      assert.ok(seen);
      assert.equal(seen.writerAbort, undefined, "no cancel");
    }
  });

  test("a reset after the trailer block changes nothing: the trailer's status stands", async () => {
    const { client } = transportWith((s) => {
      s.respond(HEAD);
      s.respond(unaryMsg(2));
      s.respond(OK);
      // (later: a reset discards what the client has not read yet)
      setTimeout(() => s.reset(StreamErrorCode.PROTOCOL_ERROR), 5);
    });
    assert.equal((await client.unaryCall({})).payload?.body.length, 2);
    const trailersOnly = transportWith((s) => {
      s.respond(block("grpc-status: 5\r\n"));
      setTimeout(() => s.reset(StreamErrorCode.CANCEL), 5);
    });
    assert.equal((await codeOf(trailersOnly.client.unaryCall({}))).code, Code.NotFound);
  });

  test("a reset without an application code, the session still there → UNKNOWN", async () => {
    const { client } = transportWith((s) => {
      s.respond(HEAD);
      s.reset(null);
    });
    const out = await codeOf(client.unaryCall({}));
    assert.equal(out.code, Code.Unknown);
    assert.match(out.message, /no code/);
  });

  test("a reset by REFUSED → UNAVAILABLE, saying the call may be retried", async () => {
    const { client } = transportWith((s) => s.reset(StreamErrorCode.REFUSED));
    const out = await codeOf(client.unaryCall({}));
    assert.equal(out.code, Code.Unavailable);
    assert.match(out.message, /REFUSED.*retried/);
  });

  test("a malformed response header block (uppercase name) → INTERNAL, and the stream is cancelled", async () => {
    let seen: FakeStream | undefined;
    const { client } = transportWith((s) => {
      seen = s;
      s.respond(block("Content-Type: application/grpc\r\n"));
    });
    const out = await codeOf((async () => {
      for await (const _ of client.streamingOutputCall({})) void _;
    })());
    assert.equal(out.code, Code.Internal);
    assert.match(out.message, /not lowercase/);
    await tick();
    assert.ok(seen);
    assert.notEqual(seen.writerAbort, undefined);
    const bad = transportWith((s) => {
      s.respond(HEAD);
      s.respond(unaryMsg(1));
      s.respond(block("grpc-status: 0\r\nX-Trailer: 1\r\n"));
      s.fin();
    });
    assert.equal((await codeOf(bad.client.unaryCall({}))).code, Code.Internal, "a malformed trailer block too");
  });

  test("unary and server streaming send exactly one message: a second is never read, none fails before a stream opens", async () => {
    let seen: FakeStream | undefined;
    let streams = 0;
    const { transport } = transportWith((s) => {
      streams++;
      seen = s;
      s.respond(HEAD);
      s.respond(OK);
      s.fin();
    });
    const method = TestService.method.streamingOutputCall;
    let pulled = 0;
    const two = (async function* () {
      pulled++;
      yield create(method.input, {});
      pulled++;
      yield create(method.input, {});
    })();
    const res = await transport.stream(method, undefined, undefined, undefined, two);
    for await (const _ of res.message) void _;
    assert.ok(seen);
    assert.deepEqual(frameList(seen), [[0x80, "…"], [0, 0], [0x80, 0]]);
    assert.equal(pulled, 1, "the second message was never asked for");
    const none = (async function* () {})();
    const out = await codeOf(transport.stream(method, undefined, undefined, undefined, none));
    assert.equal(out.code, Code.Internal);
    assert.match(out.message, /missing request message/);
    assert.equal(streams, 1, "no stream for a call without its message");
  });

  test("session closed by the page: open calls CANCELLED; onSessionClose says by the client", async () => {
    const closes: SessionCloseInfo[] = [];
    const { client, transport } = transportWith((s) => s.respond(HEAD), { onSessionClose: (i) => closes.push(i) });
    const call = codeOf((async () => {
      for await (const _ of client.streamingOutputCall({})) void _;
    })());
    await tick();
    transport.close("bye");
    const out = await call;
    assert.equal(out.code, Code.Canceled);
    assert.match(out.message, /closed by the client: bye/);
    await tick();
    assert.deepEqual(closes.map((c) => [c.by, c.closeCode, c.reason]), [["client", 0, "bye"]]);
  });

  test("session closed by the server: UNAVAILABLE with its code and reason; onSessionClose has them", async () => {
    const closes: SessionCloseInfo[] = [];
    const { client, fake } = transportWith((s) => s.respond(HEAD), { onSessionClose: (i) => closes.push(i) });
    const call = codeOf((async () => {
      for await (const _ of client.streamingOutputCall({})) void _;
    })());
    await tick();
    fake.sessions[0]?.serverClose(0, "shutting down");
    const out = await call;
    assert.equal(out.code, Code.Unavailable);
    assert.match(out.message, /closed by the server \(code 0: shutting down\)/);
    assert.deepEqual(closes, [{ url: fake.sessions[0]?.url, by: "server", closeCode: 0, reason: "shutting down" }]);
  });

  test("a draining session keeps its open calls; new calls open a new session", async () => {
    let first: FakeStream | undefined;
    const { client, fake } = transportWith((s) => {
      if (first === undefined) {
        first = s;
        s.respond(HEAD);
        return;
      }
      s.respond(HEAD);
      s.respond(encodeEnvelope(0, new Uint8Array()));
      s.respond(OK);
      s.fin();
    });
    const open = codeOf((async () => {
      for await (const _ of client.streamingOutputCall({})) void _;
    })());
    await tick();
    fake.sessions[0]?.drain();
    await tick();
    await client.emptyCall({});
    assert.equal(fake.sessions.length, 2);
    first?.respond(OK);
    first?.fin();
    assert.equal((await open).code, -1, "the open call ended well on the draining session");
  });
});

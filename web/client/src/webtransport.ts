// gRPC over WebTransport (docs/protocol/webtransport.md), client side. One
// session per endpoint, shared by every call and transport that names the
// same endpoint, opened on the first call and again after it is lost; one
// bidirectional stream per call. Both directions run independently, so bidi
// calls are full duplex. Version 2 of the mapping by default: the request
// ends with an end-of-request frame and the send side stays open until the
// response ended, so that a cancel can always reset it (§3.4, §5.3).

import { type DescMessage, type DescMethodStreaming, type DescMethodUnary, fromBinary, type MessageShape } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  type Interceptor,
  type Transport,
} from "@connectrpc/connect";
import { validateTrailer } from "@connectrpc/connect/protocol-grpc";
import { DEFAULT_READ_MAX_BYTES, formatInterval } from "./core.js";
import { FLAG_DATA, type Frame, FrameParser } from "./frames.js";
import { callController, frameMessages, watchAbort } from "./messages.js";
import { type CallParts, createShell, envelopeMessage } from "./shell.js";
import {
  chooseVersion,
  DISCOVERY_PATH,
  type Discovery,
  END_OF_REQUEST,
  FLAG_HEADER_BLOCK,
  type MappingVersion,
  StreamErrorCode,
  decodeHeaderBlock,
  headerBlockFrame,
  hexToBytes,
  parseDiscovery,
  streamErrorToConnectError,
} from "./wt-protocol.js";

export interface CertificateHash {
  algorithm: string;
  /** The hash as bytes, or as hex (as in the discovery document). */
  value: BufferSource | string;
}

export interface WebTransportTransportOptions {
  /**
   * The session URL, e.g. `https://api.example.com:4433/weir?v=2`. Without
   * it (and without hashes) the discovery document names it. Its `v`
   * parameter picks the mapping version when it is 1 or 2; otherwise (none,
   * or a newer one) the client speaks version 2 and sets `v=2`.
   */
  url?: string;
  /**
   * Hashes of the server's development certificate. Without them, a
   * `discoveryUrl` (or `baseUrl`) is asked for the current ones before each
   * session; without any of those, the certificate must be CA-signed.
   */
  serverCertificateHashes?: CertificateHash[];
  /** Where the discovery document is (`GET`, JSON, §7 of the mapping). */
  discoveryUrl?: string;
  /** The server's HTTP base URL: shorthand for `discoveryUrl: baseUrl + "/.well-known/weir/webtransport"`. */
  baseUrl?: string;
  /** Largest response message accepted, from its length prefix (default 4 MiB). */
  readMaxBytes?: number;
  /** Largest request message sent (default 4 MiB). */
  writeMaxBytes?: number;
  /** Applied to every call without a timeout of its own. */
  defaultTimeoutMs?: number;
  /** How long opening a session (discovery included) may take, default 10 s; then UNAVAILABLE. */
  connectTimeoutMs?: number;
  interceptors?: Interceptor[];
  /** The WebTransport constructor (default globalThis.WebTransport). */
  WebTransport?: typeof globalThis.WebTransport;
  /** The fetch used for the discovery document (default globalThis.fetch). */
  fetch?: typeof globalThis.fetch;
  /**
   * Called once for each session this transport used that ends, with who
   * ended it and, when the server closed it, its close code and reason (weir
   * sends code 0, `"shutting down"` when it stops). The session's open calls
   * fail with UNAVAILABLE (CANCELLED when the application closed it); the
   * next call opens a new session. (Transports for the same endpoint share
   * sessions: each one's hook is called for a session it used.)
   */
  onSessionClose?: (info: SessionCloseInfo) => void;
}

/** How a WebTransport session ended (`onSessionClose`). */
export interface SessionCloseInfo {
  /** The session URL. */
  url: string;
  /**
   * `server`: the server closed it (`closeCode` and `reason` are what
   * `WebTransport.closed` resolved with); `client`: the application did
   * (`close()`); `lost`: the connection failed (`error` says how).
   */
  by: "server" | "client" | "lost";
  closeCode?: number;
  reason?: string;
  error?: unknown;
}

/** A Connect Transport over WebTransport, with control over its session. */
export interface WebTransportTransport extends Transport {
  /**
   * Opens the session (or waits for the one being opened / reuses the open
   * one). Rejects with UNIMPLEMENTED when the environment has no
   * WebTransport, UNAVAILABLE when the session cannot be opened.
   */
  connect(signal?: AbortSignal): Promise<void>;
  /**
   * Closes the session this transport uses (shared with transports for the
   * same endpoint): its open calls fail with CANCELLED; the next call opens a
   * new session.
   */
  close(reason?: string): void;
}

/** Whether this environment has the WebTransport API. */
export function supportsWebTransport(): boolean {
  return typeof (globalThis as { WebTransport?: unknown }).WebTransport === "function";
}

function notSupported(): ConnectError {
  return new ConnectError(
    "WebTransport is not available in this environment (it needs a browser with the WebTransport API in a secure context, " +
      "e.g. Chromium 97+ or Firefox 114+); use the fetch transport, or createAutoTransport which falls back to it",
    Code.Unimplemented,
  );
}

/** The reason given to a writer or reader we abandon: the CANCEL code (§5). */
function cancelReason(): unknown {
  const E = (globalThis as { WebTransportError?: new (...args: unknown[]) => { streamErrorCode: number | null } }).WebTransportError;
  if (typeof E !== "function") return undefined;
  try {
    // Chromium: new WebTransportError({streamErrorCode}); the W3C draft: (message, options).
    const e = new E({ streamErrorCode: StreamErrorCode.CANCEL });
    if (e.streamErrorCode === StreamErrorCode.CANCEL) return e;
  } catch {
    // fall through to the other form
  }
  try {
    return new E("call cancelled", { streamErrorCode: StreamErrorCode.CANCEL });
  } catch {
    return undefined;
  }
}

function raceAbort<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener("abort", onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener("abort", onAbort);
        reject(e);
      },
    );
  });
}

const describe = (e: unknown) => (e instanceof Error ? e.message : String(e));

// ---- sessions ---------------------------------------------------------------

class Session {
  /** Set once the session is gone: the error its open calls fail with. */
  dead: ConnectError | undefined;
  private readonly listeners = new Set<(err: ConnectError) => void>();

  constructor(
    readonly wt: WebTransport,
    readonly url: string,
    /** The mapping version every call of this session speaks (§8). */
    readonly version: MappingVersion,
    private readonly forget: (s: Session) => void,
  ) {
    wt.closed.then(
      (info) => {
        const closeCode = info.closeCode ?? 0;
        const reason = info.reason ?? "";
        this.lost(
          new ConnectError(
            `WebTransport session to ${url} closed by the server (code ${closeCode}${reason ? `: ${reason}` : ""})`,
            Code.Unavailable,
            undefined,
            undefined,
            info,
          ),
          { url, by: "server", closeCode, reason },
        );
      },
      (e) =>
        this.lost(new ConnectError(`WebTransport session to ${url} lost: ${describe(e)}`, Code.Unavailable, undefined, undefined, e), {
          url,
          by: "lost",
          error: e,
        }),
    );
    // The server is stopping (DRAIN_WEBTRANSPORT_SESSION, §2.4): it refuses
    // new calls on this session; the open ones go on. New calls open a new
    // session. (Chromium has `draining`; where it is missing, new calls are
    // refused with REFUSED → UNAVAILABLE until the session closes.)
    (wt as { draining?: Promise<void> }).draining?.then(
      () => this.forget(this),
      () => {},
    );
  }

  /** The `onSessionClose` hooks of the transports that used this session. */
  private readonly closeHooks = new Set<(info: SessionCloseInfo) => void>();

  /** Calls `hook` once, when the session ends (if it has not yet). */
  onClose(hook: (info: SessionCloseInfo) => void): void {
    if (this.dead === undefined) this.closeHooks.add(hook);
  }

  /** Calls `fail` when the session goes away; returns the unsubscribe. */
  watch(fail: (err: ConnectError) => void): () => void {
    this.listeners.add(fail);
    return () => this.listeners.delete(fail);
  }

  lost(err: ConnectError, info: SessionCloseInfo): void {
    if (this.dead !== undefined) return;
    this.dead = err;
    this.forget(this);
    for (const fail of [...this.listeners]) fail(err);
    this.listeners.clear();
    for (const hook of this.closeHooks) {
      try {
        hook(info);
      } catch {
        // the application's hook failing is not the session's business
      }
    }
    this.closeHooks.clear();
  }

  close(reason: string): void {
    this.lost(new ConnectError(`WebTransport session closed by the client${reason ? `: ${reason}` : ""}`, Code.Canceled), {
      url: this.url,
      by: "client",
      closeCode: 0,
      reason,
    });
    try {
      this.wt.close({ closeCode: 0, reason });
    } catch {
      // already closed
    }
  }
}

/** Sessions by WebTransport constructor and endpoint, shared by transports. */
const pools = new WeakMap<object, Map<string, Promise<Session>>>();

function normalizeHashes(hashes: CertificateHash[] | undefined): WebTransportHash[] | undefined {
  return hashes?.map((h) => ({ algorithm: h.algorithm, value: typeof h.value === "string" ? (hexToBytes(h.value) as BufferSource) : h.value }));
}

function hashKey(hashes: WebTransportHash[] | undefined): string {
  if (hashes === undefined) return "";
  return hashes
    .map((h) => {
      const v = h.value;
      const bytes = v instanceof ArrayBuffer ? new Uint8Array(v) : new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
      return `${h.algorithm}:${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
    })
    .join(",");
}

// ---- the transport ------------------------------------------------------------


/** A Connect-ES Transport speaking gRPC over WebTransport (full duplex). */
export function createWebTransportTransport(options: WebTransportTransportOptions): WebTransportTransport {
  const readMaxBytes = options.readMaxBytes ?? DEFAULT_READ_MAX_BYTES;
  const writeMaxBytes = options.writeMaxBytes ?? DEFAULT_READ_MAX_BYTES;
  const connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
  const hashes = normalizeHashes(options.serverCertificateHashes);
  const discoveryUrl =
    options.discoveryUrl ?? (options.baseUrl !== undefined ? `${options.baseUrl.replace(/\/+$/, "")}${DISCOVERY_PATH}` : undefined);
  if (options.url === undefined && discoveryUrl === undefined) {
    throw new ConnectError("createWebTransportTransport needs a url, a discoveryUrl or a baseUrl", Code.InvalidArgument);
  }
  const key = JSON.stringify([options.url ?? "", hashes === undefined ? (discoveryUrl ?? "") : "", hashKey(hashes)]);
  const methodBase = options.url ?? options.baseUrl ?? discoveryUrl ?? "";

  function pool(): Map<string, Promise<Session>> | undefined {
    const WT = options.WebTransport ?? (globalThis as { WebTransport?: typeof WebTransport }).WebTransport;
    if (typeof WT !== "function") return undefined;
    let p = pools.get(WT);
    if (p === undefined) pools.set(WT, (p = new Map()));
    return p;
  }

  async function discover(signal: AbortSignal): Promise<Discovery> {
    const f = options.fetch ?? globalThis.fetch;
    const url = discoveryUrl as string;
    let res: Response;
    try {
      res = await f(url, { signal, cache: "no-store", credentials: "omit" });
    } catch (e) {
      if (signal.aborted) throw signal.reason;
      throw new ConnectError(`could not fetch the WebTransport discovery document ${url}: ${describe(e)}`, Code.Unavailable, undefined, undefined, e);
    }
    if (res.status === 404 || res.status === 405) {
      // 404: no endpoint. weir without a WebTransport listener answers 405
      // (the path falls through to its gRPC endpoint, which wants POST).
      throw new ConnectError(
        `the server publishes no WebTransport endpoint (${url} answered ${res.status}); is WebTransport enabled on it (weir: --webtransport-listen or [webtransport])?`,
        Code.Unavailable,
      );
    }
    if (!res.ok) throw new ConnectError(`WebTransport discovery document ${url} answered HTTP ${res.status}`, Code.Unavailable);
    try {
      return parseDiscovery(await res.json(), url);
    } catch (e) {
      throw new ConnectError(`bad WebTransport discovery document at ${url}: ${describe(e)}`, Code.Unavailable);
    }
  }

  async function open(sessions: Map<string, Promise<Session>>, self: () => Promise<Session> | undefined): Promise<Session> {
    const WT = (options.WebTransport ?? (globalThis as { WebTransport?: typeof WebTransport }).WebTransport) as typeof WebTransport;
    const ctl = new AbortController();
    const timer = setTimeout(
      () => ctl.abort(new ConnectError(`opening a WebTransport session took longer than ${connectTimeoutMs} ms`, Code.Unavailable)),
      connectTimeoutMs,
    );
    let wt: WebTransport | undefined;
    try {
      let named = options.url;
      let certs = hashes;
      if (certs === undefined && discoveryUrl !== undefined) {
        const d = await discover(ctl.signal);
        named ??= d.url;
        certs = d.serverCertificateHashes as WebTransportHash[];
      }
      if (named === undefined) throw new ConnectError("no WebTransport URL", Code.Unavailable);
      // The version the URL names (a server before version 2 names v=1 in
      // its discovery document), else version 2 (§8).
      const { url, version } = chooseVersion(named);
      try {
        wt = new WT(url, certs !== undefined && certs.length > 0 ? { serverCertificateHashes: certs } : {});
      } catch (e) {
        throw new ConnectError(`cannot open a WebTransport session to ${url}: ${describe(e)}`, Code.Unavailable, undefined, undefined, e);
      }
      const opened = wt;
      // A session that never opens rejects `closed` as well as `ready`; with
      // nothing attached yet, Firefox reports that as an unhandled rejection
      // on the page. (Session attaches the real handler once it is open.)
      opened.closed.catch(() => {});
      try {
        await raceAbort(opened.ready, ctl.signal);
      } catch (e) {
        if (e instanceof ConnectError) throw e;
        throw new ConnectError(
          `could not open a WebTransport session to ${url}: ${describe(e)} (the server may be down, refuse this page's origin, ` +
            `or present a certificate that is not CA-signed and not among serverCertificateHashes)`,
          Code.Unavailable,
          undefined,
          undefined,
          e,
        );
      }
      return new Session(
        opened,
        url,
        version,
        () => {
          if (sessions.get(key) === self()) sessions.delete(key);
        },
      );
    } catch (e) {
      try {
        wt?.close();
      } catch {
        // never opened
      }
      if (sessions.get(key) === self()) sessions.delete(key);
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }

  function session(signal: AbortSignal): Promise<Session> {
    const sessions = pool();
    if (sessions === undefined) return Promise.reject(notSupported());
    let p = sessions.get(key);
    if (p === undefined) {
      const created: Promise<Session> = open(sessions, () => created);
      p = created;
      p.catch(() => {});
      sessions.set(key, p);
    }
    const hook = options.onSessionClose;
    if (hook !== undefined) p.then((s) => s.onClose(hook), () => {});
    return raceAbort(p, signal);
  }

  /**
   * A new bidirectional stream. The server grants streams a few at a time
   * (weir: 100 open calls per session); Chromium fails the creation instead
   * of waiting for credit, so a failure on a live session is retried with
   * backoff, for at most connectTimeoutMs (then UNAVAILABLE).
   */
  async function openStream(s: Session, signal: AbortSignal): Promise<WebTransportBidirectionalStream> {
    const start = Date.now();
    for (let delay = 5; ; delay = Math.min(delay * 2, 250)) {
      const created = s.wt.createBidirectionalStream();
      // Opened after we gave up: drop it.
      created.then(
        (st) => {
          if (signal.aborted) {
            st.readable.cancel(cancelReason()).catch(() => {});
            st.writable.abort(cancelReason()).catch(() => {});
          }
        },
        () => {},
      );
      try {
        return await raceAbort(created, signal);
      } catch (e) {
        if (signal.aborted) throw e;
        // Is the session still there? Its closed promise settles when it is not.
        await raceAbort(Promise.race([s.wt.closed.then(() => {}, () => {}), new Promise((r) => setTimeout(r, delay))]), signal);
        if (s.dead !== undefined) throw s.dead;
        if (Date.now() - start > connectTimeoutMs) {
          throw new ConnectError(
            `could not open a WebTransport stream for ${connectTimeoutMs} ms (${describe(e)}): too many calls open on the session?`,
            Code.Unavailable,
            undefined,
            undefined,
            e,
          );
        }
      }
    }
  }

  function headersFor(timeoutMs: number | undefined, header: HeadersInit | undefined): Headers {
    const h = new Headers(header);
    h.set("content-type", "application/grpc+proto");
    if (timeoutMs !== undefined) h.set("grpc-timeout", formatInterval(timeoutMs));
    else h.delete("grpc-timeout");
    return h;
  }

  function envelope<I extends DescMessage>(desc: I, msg: MessageShape<I>): Uint8Array {
    return envelopeMessage(desc, msg, writeMaxBytes);
  }

  async function call<I extends DescMessage, O extends DescMessage>(
    method: DescMethodUnary<I, O> | DescMethodStreaming<I, O>,
    reqHeader: Headers,
    signal: AbortSignal,
    input: AsyncIterable<MessageShape<I>>,
  ): Promise<CallParts<O>> {
    // Our own controller: aborted by the caller's signal (cancel, deadline),
    // a lost session, a failing request stream, or the end of the call.
    const { ctl, release } = callController(signal);
    let unwatch = () => {};
    let ended = false;
    const finish = () => {
      ended = true;
      unwatch();
      release();
    };
    const abortError = () => ConnectError.from(ctl.signal.reason, Code.Canceled);

    const kind = method.methodKind;
    // Unary and server streaming send exactly one message (§3.4): it is taken
    // before the stream opens, and no second one is ever asked for.
    const single = kind === "unary" || kind === "server_streaming";
    const it = input[Symbol.asyncIterator]();
    let head: Uint8Array;
    let only: Uint8Array | undefined;
    let s: Session;
    let stream: WebTransportBidirectionalStream;
    try {
      head = headerBlockFrame(reqHeader, [[":path", `/${method.parent.typeName}/${method.name}`]]);
      if (single) {
        const r = await raceAbort(it.next(), ctl.signal);
        if (r.done === true) throw new ConnectError("missing request message", Code.Internal);
        only = envelope(method.input, r.value);
      }
      s = await session(ctl.signal);
      stream = await openStream(s, ctl.signal);
    } catch (e) {
      const err = ctl.signal.aborted ? abortError() : ConnectError.from(e, Code.Unavailable);
      finish();
      throw err;
    }
    const session_ = s;
    const v2 = s.version === 2;
    unwatch = s.watch((err) => ctl.abort(err));

    const writer = stream.writable.getWriter();
    const reader = stream.readable.getReader();
    /** Nothing more is written: FIN queued, or the send side reset. */
    let sendEnded = false;
    /** The receive side finished (FIN) or was reset. */
    let readDone = false;
    /** A trailer block (or trailers-only block) was read: it decides the status (§5.2). */
    let statusSeen = false;
    // FIN. In version 2 after the response ended; the server may have sent
    // STOP_SENDING already, which makes close() reject.
    const closeSend = () => {
      if (sendEnded) return;
      sendEnded = true;
      writer.close().catch(() => {});
    };
    ctl.signal.addEventListener(
      "abort",
      () => {
        // The call is over. Before its response ended, that is a cancel
        // (§5.3): reset our send side and STOP_SENDING our receive side, both
        // CANCEL (version 2 kept the send side open for this). After it: FIN.
        if (!readDone) reader.cancel(cancelReason()).catch(() => {});
        if (statusSeen || readDone) closeSend();
        else if (!sendEnded) {
          sendEnded = true;
          writer.abort(cancelReason()).catch(() => {});
        }
      },
      { once: true },
    );
    const { aborted, stopped } = watchAbort(ctl.signal);

    // ---- send side: header block, messages, end of request; independent of
    // reading. The end of the request is the end-of-request frame in version
    // 2 (the send side stays open until the response ended), FIN in version 1.
    const fail = (e: unknown) => {
      if (!ended) ctl.abort(ConnectError.from(e, Code.Internal));
    };
    void (async () => {
      // A write fails when the server stops reading (STOP_SENDING) or resets:
      // writing stops, reading goes on; the receive side says how the call
      // ended (a trailer block, or a reset code).
      try {
        if (only !== undefined) {
          const first = new Uint8Array(head.length + only.length + (v2 ? END_OF_REQUEST.length : 0));
          first.set(head);
          first.set(only, head.length);
          if (v2) first.set(END_OF_REQUEST, head.length + only.length);
          await writer.write(first);
          if (!v2) closeSend();
          return;
        }
        await writer.write(head);
      } catch {
        return;
      }
      for (;;) {
        let bytes: Uint8Array | undefined;
        try {
          const r = await raceAbort(it.next(), ctl.signal);
          if (sendEnded) return;
          if (r.done !== true) bytes = envelope(method.input, r.value);
        } catch (e) {
          if (!ctl.signal.aborted) fail(e);
          return;
        }
        try {
          if (bytes !== undefined) {
            await writer.write(bytes);
            continue;
          }
          if (v2) await writer.write(END_OF_REQUEST.slice());
          else closeSend();
          return;
        } catch {
          return;
        }
      }
    })();

    // ---- receive side: header block, messages, trailer block, FIN.
    const parser = new FrameParser(readMaxBytes, { heartbeats: false, trailerEnds: false });
    const pending: Frame[] = [];
    const readError = async (e: unknown): Promise<ConnectError> => {
      if (ctl.signal.aborted) return abortError();
      const wte = e as { source?: string; streamErrorCode?: number | null };
      if (wte?.source === "stream") {
        // A session that is going away can show up as a reset stream first
        // (WT_SESSION_GONE carries no application code).
        if (wte.streamErrorCode === null || wte.streamErrorCode === undefined) {
          await Promise.race([session_.wt.closed.catch(() => {}), new Promise((r) => setTimeout(r, 100))]);
          if (session_.dead !== undefined) return session_.dead;
        }
        return streamErrorToConnectError(wte.streamErrorCode ?? null, "reset", e);
      }
      await Promise.race([session_.wt.closed.catch(() => {}), new Promise((r) => setTimeout(r, 100))]);
      return session_.dead ?? new ConnectError(`WebTransport stream failed: ${describe(e)}`, Code.Unavailable, undefined, undefined, e);
    };
    /** The frames of the next chunk, or null at FIN. */
    const readFrames = async (): Promise<Frame[] | null> => {
      let r: ReadableStreamReadResult<Uint8Array>;
      try {
        r = await Promise.race([reader.read(), aborted]);
      } catch (e) {
        if (!ctl.signal.aborted) readDone = true;
        // After the trailer block, a reset changes nothing: the status is in hand.
        if (statusSeen && !ctl.signal.aborted) return null;
        throw await readError(e);
      }
      if (r.done) {
        readDone = true;
        if (ctl.signal.aborted) throw abortError();
        parser.end();
        return null;
      }
      return parser.push(r.value);
    };
    const nextFrame = async (): Promise<Frame | null> => {
      while (pending.length === 0) {
        const frames = await readFrames();
        if (frames === null) return null;
        for (const f of frames) pending.push(f);
      }
      return pending.shift() as Frame;
    };

    let header: Headers;
    const trailer = new Headers();
    try {
      const first = await nextFrame();
      if (first === null) throw new ConnectError("protocol error: response stream ended without a header block (no grpc-status)", Code.Internal);
      if (first.flags !== FLAG_HEADER_BLOCK) {
        throw new ConnectError("protocol error: the response stream starts with a message, not a header block", Code.Internal);
      }
      header = decodeHeaderBlock(first.data);
      if (header.has("grpc-status")) {
        // Trailers-only: FIN must follow.
        statusSeen = true;
        if ((await nextFrame()) !== null) throw new ConnectError("protocol error: frame after a trailers-only response", Code.Internal);
        header.forEach((v, k) => trailer.append(k, v));
        validateTrailer(trailer, header);
        finish();
        return { header, trailer, message: (async function* () {})() };
      }
      const ct = header.get("content-type");
      if (ct !== null && !/^application\/grpc(?:\+proto)?(?:;.*)?$/i.test(ct)) {
        throw new ConnectError(`unexpected response content-type "${ct}"`, Code.Unknown, header);
      }
    } catch (e) {
      finish();
      throw ConnectError.from(e, Code.Internal);
    }

    const message = frameMessages<MessageShape<O>>({
      // First the frames that came with the header block, then chunk by chunk.
      read: () => (pending.length > 0 ? Promise.resolve(pending.splice(0)) : readFrames()),
      decode(f) {
        if (statusSeen) throw new ConnectError("protocol error: frame after the trailer block", Code.Internal);
        if (f.flags === FLAG_DATA) {
          try {
            return fromBinary(method.output, f.data);
          } catch (e) {
            throw new ConnectError(`failed to parse response message: ${describe(e)}`, Code.Internal);
          }
        }
        decodeHeaderBlock(f.data).forEach((v, k) => trailer.append(k, v));
        statusSeen = true;
        return undefined;
      },
      end() {
        if (!statusSeen) throw new ConnectError("protocol error: response stream ended without a trailer block (no grpc-status)", Code.Internal, header);
        validateTrailer(trailer, header);
      },
      check() {
        if (stopped()) throw abortError();
      },
      close: finish,
    });
    return { header, trailer, message };
  }

  const shell = createShell({
    baseUrl: methodBase,
    interceptors: options.interceptors,
    defaultTimeoutMs: options.defaultTimeoutMs,
    headersFor,
    call: (method, _url, reqHeader, signal, input) => call(method, reqHeader, signal, input),
  });
  const transport: WebTransportTransport = {
    unary: shell.unary.bind(shell),
    stream: shell.stream.bind(shell),

    async connect(signal?: AbortSignal): Promise<void> {
      await session(signal ?? new AbortController().signal);
    },

    close(reason = "closed by the application"): void {
      const p = pool()?.get(key);
      p?.then((s) => s.close(reason), () => {});
    },
  };
  return transport;
}

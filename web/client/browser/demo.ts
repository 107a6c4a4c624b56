// The demo page served by `weir demo` at `/`: every call type, same origin.

import { ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createFetchTransport, createWebTransportTransport, createXhrTransport, supportsWebTransport } from "../src/index.js";
import { TestService } from "../../interop/src/gen/grpc/testing/test_pb.js";

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

// One transport per choice of the controls, made on first use and kept, as an
// app would keep its transport.
const transports = new Map<string, Transport>();

function client() {
  const kind = $<HTMLSelectElement>("kind").value === "xhr" ? "xhr" : "fetch";
  const format = $<HTMLSelectElement>("format").value === "text" ? "text" : "binary";
  const heartbeat = $<HTMLInputElement>("heartbeat").checked;
  const key = `${kind} ${format} ${heartbeat}`;
  let transport = transports.get(key);
  if (transport === undefined) {
    const opts = { baseUrl: location.origin, format, heartbeat: heartbeat ? { interval: 1000 } : undefined } as const;
    transport =
      kind === "xhr"
        ? createXhrTransport(opts)
        : createFetchTransport({
            ...opts,
            // Browsers speak HTTP/2 only over TLS, and stream a request body
            // only over HTTP/2 or HTTP/3 (Chromium refuses it over HTTP/1.1:
            // ERR_ALPN_NEGOTIATION_FAILED, ERR_H2_OR_QUIC_REQUIRED). On an http:
            // page client streams go as one body without a refused try first.
            requestStreams: location.protocol === "https:" ? "auto" : "never",
          });
    transports.set(key, transport);
  }
  return createClient(TestService, transport);
}

function bind(id: string, run: (out: HTMLOutputElement) => Promise<string>) {
  $(id).addEventListener("click", async () => {
    const out = $<HTMLOutputElement>(`${id}-out`);
    out.textContent = "…";
    const t0 = performance.now();
    try {
      out.textContent = `${await run(out)} (${Math.round(performance.now() - t0)} ms)`;
    } catch (e) {
      const err = ConnectError.from(e);
      out.textContent = `error: ${err.message}`;
    }
  });
}

const kib = (n: number) => ({ body: new Uint8Array(n * 1024) });

bind("unary", async () => {
  const r = await client().unaryCall({ responseSize: 1024, payload: kib(1) });
  return `got ${r.payload?.body.length ?? 0} bytes`;
});

let stop: AbortController | undefined;
$("server-stop").addEventListener("click", () => stop?.abort());
bind("server", async (out) => {
  stop = new AbortController();
  const count = $("server-count");
  const button = $<HTMLButtonElement>("server-stop");
  button.disabled = false;
  let n = 0;
  try {
    const params = Array.from({ length: 100 }, () => ({ size: 8, intervalUs: 100_000 }));
    const stream = client().streamingOutputCall(
      { responseParameters: params },
      { signal: stop.signal, onHeader: (h) => (out.textContent = `headers: ${[...h.keys()].join(", ")}`) },
    );
    for await (const _ of stream) count.textContent = String(++n);
    return `done: ${n} messages`;
  } finally {
    button.disabled = true;
  }
});

bind("client", async () => {
  const r = await client().streamingInputCall(
    (async function* () {
      for (let i = 1; i <= 5; i++) yield { payload: kib(i) };
    })(),
  );
  return `server counted ${r.aggregatedPayloadSize} bytes`;
});

bind("half", async () => {
  const sizes: number[] = [];
  const answers = client().halfDuplexCall(
    (async function* () {
      for (const size of [10, 20, 30]) yield { responseParameters: [{ size }] };
    })(),
  );
  for await (const m of answers) sizes.push(m.payload?.body.length ?? 0);
  return `answers of ${sizes.join(", ")} bytes`;
});

// ---- full duplex over WebTransport -----------------------------------------

const note = $("duplex-note");
const duplexButtons = {
  start: $<HTMLButtonElement>("duplex-start"),
  ping: $<HTMLButtonElement>("duplex-ping"),
  end: $<HTMLButtonElement>("duplex-end"),
  cancel: $<HTMLButtonElement>("duplex-cancel"),
};
const duplexOut = $<HTMLOutputElement>("duplex-out");
const duplexLog = $<HTMLOutputElement>("duplex-log");

async function findWebTransport(): Promise<boolean> {
  if (!supportsWebTransport()) {
    note.textContent =
      "This browser has no WebTransport (a recent Chromium or Firefox has it, on http://localhost or https), so full duplex is not available here; the examples above work.";
    return false;
  }
  let res: Response;
  try {
    res = await fetch("/.well-known/weir/webtransport", { cache: "no-store" });
  } catch (e) {
    note.textContent = `Could not ask the server for its WebTransport endpoint: ${String(e)}`;
    return false;
  }
  if (res.status === 404 || res.status === 405) {
    note.textContent =
      "This weir demo runs without WebTransport. Restart it with --webtransport-listen 127.0.0.1:4433 to try full-duplex bidi streaming.";
    return false;
  }
  if (!res.ok) {
    note.textContent = `The WebTransport discovery document answered HTTP ${res.status}.`;
    return false;
  }
  const doc = (await res.json()) as { url?: string };
  note.textContent = `WebTransport endpoint: ${doc.url ?? "?"} (development certificate, hash from /.well-known/weir/webtransport).`;
  return true;
}

let duplex:
  | { send(size: number): void; end(): void; abort: AbortController }
  | undefined;

function setDuplexState(open: boolean): void {
  duplexButtons.start.disabled = open;
  duplexButtons.ping.disabled = !open;
  duplexButtons.end.disabled = !open;
  duplexButtons.cancel.disabled = !open;
}

function log(line: string): void {
  duplexLog.textContent = `${line}\n${duplexLog.textContent ?? ""}`.split("\n").slice(0, 50).join("\n");
}

duplexButtons.start.addEventListener("click", async () => {
  const transport = createWebTransportTransport({ baseUrl: location.origin });
  // The request stream: an async iterable fed by the buttons.
  const queue: (number | null)[] = [];
  let wake = () => {};
  const requests = (async function* () {
    for (;;) {
      while (queue.length === 0) await new Promise<void>((r) => (wake = r));
      const size = queue.shift();
      if (size === null || size === undefined) return;
      yield { responseParameters: [{ size }] };
    }
  })();
  const abort = new AbortController();
  const sentAt = new Map<number, number>();
  let sent = 0;
  let answers = 0;
  duplex = {
    send(size) {
      sentAt.set(sent++, performance.now());
      queue.push(size);
      wake();
    },
    end() {
      queue.push(null);
      wake();
      duplexButtons.ping.disabled = true;
      duplexButtons.end.disabled = true;
    },
    abort,
  };
  setDuplexState(true);
  $("duplex-count").textContent = "0";
  duplexLog.textContent = "";
  duplexOut.textContent = "opening the WebTransport session…";
  const t0 = performance.now();
  try {
    const answersStream = createClient(TestService, transport).fullDuplexCall(requests, {
      signal: abort.signal,
      onHeader: () => (duplexOut.textContent = `call open after ${Math.round(performance.now() - t0)} ms: press Ping`),
    });
    for await (const m of answersStream) {
      const rtt = Math.round(performance.now() - (sentAt.get(answers) ?? t0));
      answers++;
      $("duplex-count").textContent = String(answers);
      log(`answer ${answers}: ${m.payload?.body.length ?? 0} bytes, ${rtt} ms after its ping`);
    }
    duplexOut.textContent = `done: ${answers} answers, the server ended the call after the request stream ended`;
  } catch (e) {
    duplexOut.textContent = `error: ${ConnectError.from(e).message}`;
  } finally {
    duplex = undefined;
    setDuplexState(false);
  }
});
duplexButtons.ping.addEventListener("click", () => duplex?.send(16 + Math.floor(Math.random() * 1000)));
duplexButtons.end.addEventListener("click", () => duplex?.end());
duplexButtons.cancel.addEventListener("click", () => duplex?.abort.abort());

void findWebTransport().then((ok) => {
  duplexButtons.start.disabled = !ok;
});

// The command-line examples, for this server.
for (const el of document.querySelectorAll<HTMLElement>("[data-host]")) {
  el.textContent = (el.textContent ?? "").replaceAll(el.dataset.host ?? "", location.host);
}

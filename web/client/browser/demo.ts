// The demo page served by `weir demo` at `/`: every call type, same origin.

import { ConnectError, createClient } from "@connectrpc/connect";
import { createFetchTransport, createXhrTransport } from "../src/index.js";
import { TestService } from "../../interop/src/gen/grpc/testing/test_pb.js";

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

function client() {
  const opts = {
    baseUrl: location.origin,
    format: $<HTMLSelectElement>("format").value as "binary" | "text",
    heartbeat: $<HTMLInputElement>("heartbeat").checked ? { interval: 1000 } : undefined,
  };
  return createClient(TestService, $<HTMLSelectElement>("kind").value === "xhr" ? createXhrTransport(opts) : createFetchTransport(opts));
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

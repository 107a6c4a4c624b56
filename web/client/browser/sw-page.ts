// Page of the service-worker suite: registers sw.js, then offers calls that
// go through it (fetch transport) and messages the worker.

import { ConnectError, createClient } from "@connectrpc/connect";
import { createFetchTransport } from "../src/index.js";
import { TestService } from "../../interop/src/gen/grpc/testing/test_pb.js";

function ask<T>(msg: unknown): Promise<T> {
  const ch = new MessageChannel();
  const reply = new Promise<T>((ok) => (ch.port1.onmessage = (e) => ok(e.data as T)));
  const sw = navigator.serviceWorker.controller;
  if (sw === null) throw new Error("page is not controlled by the service worker");
  sw.postMessage(msg, [ch.port2]);
  return reply;
}

/** A stream of `count` messages `gapMs` apart; optionally aborted after `cancelAfter` messages. */
async function stream(baseUrl: string, count: number, gapMs: number, cancelAfter?: number) {
  const t0 = performance.now();
  const times: number[] = [];
  const abort = new AbortController();
  const client = createClient(TestService, createFetchTransport({ baseUrl }));
  try {
    const params = Array.from({ length: count }, (_, i) => ({ size: 4, intervalUs: i === 0 ? 0 : gapMs * 1000 }));
    for await (const _ of client.streamingOutputCall({ responseParameters: params }, { signal: abort.signal })) {
      times.push(Math.round(performance.now() - t0));
      if (times.length === cancelAfter) abort.abort();
    }
    return { code: 0, times, endAt: Math.round(performance.now() - t0) };
  } catch (e) {
    return { code: ConnectError.from(e).code, times, endAt: Math.round(performance.now() - t0) };
  }
}

const ready = (async () => {
  await navigator.serviceWorker.register("/sw.js", { scope: "/" });
  await navigator.serviceWorker.ready;
  if (navigator.serviceWorker.controller === null) {
    await new Promise((ok) => navigator.serviceWorker.addEventListener("controllerchange", ok, { once: true }));
  }
})();

Object.assign(window, {
  swSuite: {
    ready: () => ready.then(() => true),
    stream,
    passedThrough: () => ask<{ passedThrough: number }>({ op: "count" }).then((r) => r.passedThrough),
    callInWorker: (baseUrl: string, format: "binary" | "text") => ask({ op: "call", baseUrl, format }),
  },
});

// Service worker for the service-worker suite. It (1) passes every fetch
// through with respondWith(fetch(event.request)), counting gRPC requests, and
// (2) answers messages by making gRPC calls itself with @weir/client (no XHR,
// no window here).

import { ConnectError, createClient } from "@connectrpc/connect";
import { createFetchTransport } from "../src/index.js";
import { TestService } from "../../interop/src/gen/grpc/testing/test_pb.js";

// Minimal worker types (the webworker lib clashes with dom in one program).
interface ExtendableEvent extends Event {
  waitUntil(p: Promise<unknown>): void;
}
interface FetchEvent extends ExtendableEvent {
  request: Request;
  respondWith(r: Promise<Response>): void;
}
interface ExtendableMessageEvent extends ExtendableEvent {
  data: unknown;
  ports: readonly MessagePort[];
}
declare const self: {
  skipWaiting(): Promise<void>;
  clients: { claim(): Promise<void> };
  addEventListener(type: "install", f: (e: ExtendableEvent) => void): void;
  addEventListener(type: "activate", f: (e: ExtendableEvent) => void): void;
  addEventListener(type: "fetch", f: (e: FetchEvent) => void): void;
  addEventListener(type: "message", f: (e: ExtendableMessageEvent) => void): void;
};
let passedThrough = 0;

self.addEventListener("install", () => void self.skipWaiting());
self.addEventListener("activate", (e) => e.waitUntil(self.clients.claim()));

self.addEventListener("fetch", (event) => {
  if (event.request.url.includes("/grpc.testing.")) {
    passedThrough++;
    event.respondWith(fetch(event.request));
  }
});

self.addEventListener("message", (event) => {
  const port = event.ports[0];
  const data = event.data as { op: "count" } | { op: "call"; baseUrl: string; format: "binary" | "text" };
  if (port === undefined) return;
  if (data.op === "count") {
    port.postMessage({ passedThrough });
    return;
  }
  event.waitUntil(
    (async () => {
      const env = { hasXhr: typeof XMLHttpRequest !== "undefined", hasWindow: typeof window !== "undefined" };
      try {
        const client = createClient(TestService, createFetchTransport({ baseUrl: data.baseUrl, format: data.format }));
        const sizes: number[] = [];
        for await (const m of client.streamingOutputCall({ responseParameters: [{ size: 1 }, { size: 2 }, { size: 3 }] })) {
          sizes.push(m.payload?.body.length ?? -1);
        }
        const r = await client.unaryCall({ responseSize: 10 });
        port.postMessage({ ...env, code: 0, sizes, unary: r.payload?.body.length });
      } catch (e) {
        const err = ConnectError.from(e);
        port.postMessage({ ...env, code: err.code, message: err.message });
      }
    })(),
  );
});

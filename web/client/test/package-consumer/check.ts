// A TypeScript consumer of @weir/client as installed from its tarball: the
// package's .d.ts must resolve through its `exports` and type its API (an
// untyped import would make the @ts-expect-error lines below unused, which
// fails the check).

import type { Transport } from "@connectrpc/connect";
import { createFetchTransport, createXhrTransport, type FetchTransportOptions } from "@weir/client";

const options: FetchTransportOptions = { baseUrl: "https://api.example.com", format: "text" };
export const fetchTransport: Transport = createFetchTransport(options);
export const xhrTransport: Transport = createXhrTransport({ baseUrl: "https://api.example.com" });

// @ts-expect-error: not a format
createFetchTransport({ baseUrl: "https://api.example.com", format: "json" });
// @ts-expect-error: baseUrl is required
createXhrTransport({});

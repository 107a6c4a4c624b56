// What the upstream servers (grpc-js and the connect-node reference server)
// report about the calls they serve, one JSON object per stdout line, so the
// gateway suites can tell what reached the upstream:
//
//   {"event":"cancelled","method":"grpc.testing.TestService/StreamingOutputCall","id":"a1","reason":"..."}
//     the handler saw its call end (client cancel, reset, deadline) before it finished
//   {"event":"metadata","method":"...","id":"a1","headers":{"te":"trailers",...}}
//     the request carried `x-weir-test-dump-headers: 1`; every header as received,
//     pseudo-headers included
//   {"event":"message","method":"grpc.testing.TestService/StreamingInputCall","id":"a1","index":0}
//     the handler received request message number `index` (0-based) of a client
//     stream; printed only for calls that carry an `x-weir-test-id`, as each
//     message arrives (so a suite can tell an upload streamed, not buffered)
//
// `id` is the request's `x-weir-test-id` header (null without one).

export const DUMP_HEADERS_KEY = "x-weir-test-dump-headers";
export const TEST_ID_KEY = "x-weir-test-id";

export interface CancelledEvent {
  event: "cancelled";
  method: string;
  id: string | null;
  reason: string;
}

export interface MetadataEvent {
  event: "metadata";
  method: string;
  id: string | null;
  headers: Record<string, string>;
}

export interface MessageEvent {
  event: "message";
  method: string;
  id: string | null;
  index: number;
}

export type UpstreamEvent = CancelledEvent | MetadataEvent | MessageEvent;

export function emit(event: UpstreamEvent): void {
  process.stdout.write(`${JSON.stringify(event)}\n`);
}

/** Header values as one string each (repeated headers joined with ", "). */
export function flattenHeaders(headers: Record<string, string | string[] | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) {
    if (v === undefined) continue;
    out[k.toLowerCase()] = Array.isArray(v) ? v.join(", ") : String(v);
  }
  return out;
}

/** Every event found in a server's output so far. */
export function parseEvents(output: string): UpstreamEvent[] {
  const out: UpstreamEvent[] = [];
  for (const line of output.split("\n")) {
    const t = line.trim();
    if (!t.startsWith("{\"event\"")) continue;
    try {
      out.push(JSON.parse(t) as UpstreamEvent);
    } catch {
      // a line cut in the middle: the rest arrives later
    }
  }
  return out;
}

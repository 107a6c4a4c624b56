// The Connect `Transport` shell every weir transport shares: interceptors, timeouts and the
// unary-over-a-stream rule. A transport supplies only how one call goes over its wire.

import { type DescMessage, type DescMethodStreaming, type DescMethodUnary, type MessageShape, toBinary } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  type ContextValues,
  createContextValues,
  type Interceptor,
  type StreamResponse,
  type Transport,
  type UnaryResponse,
} from "@connectrpc/connect";
import { createMethodUrl, encodeEnvelope, runStreamingCall, runUnaryCall } from "@connectrpc/connect/protocol";
import { FLAG_DATA } from "./frames.js";

/** What one call over a transport's wire yields. */
export interface CallParts<O extends DescMessage> {
  header: Headers;
  trailer: Headers;
  message: AsyncIterable<MessageShape<O>>;
}

/** How a transport makes one call: request headers, then the whole call over its wire. */
export interface ShellWire {
  /** Base URL the method path is appended to (for the interceptors' `url`). */
  baseUrl: string;
  interceptors?: Interceptor[];
  defaultTimeoutMs?: number;
  /** The request headers of a call with this timeout and these user headers. */
  headersFor(timeoutMs: number | undefined, header: HeadersInit | undefined): Headers;
  call<I extends DescMessage, O extends DescMessage>(
    method: DescMethodUnary<I, O> | DescMethodStreaming<I, O>,
    url: string,
    reqHeader: Headers,
    signal: AbortSignal,
    input: AsyncIterable<MessageShape<I>>,
  ): Promise<CallParts<O>>;
}

/** One message as a data frame, refusing messages over `writeMaxBytes`. */
export function envelopeMessage<I extends DescMessage>(desc: I, msg: MessageShape<I>, writeMaxBytes: number): Uint8Array {
  const bytes = toBinary(desc, msg);
  if (bytes.length > writeMaxBytes) {
    throw new ConnectError(`message size ${bytes.length} is larger than configured writeMaxBytes ${writeMaxBytes}`, Code.ResourceExhausted);
  }
  return encodeEnvelope(FLAG_DATA, bytes);
}

/** The `unary` and `stream` methods of a Connect `Transport` over `wire`. */
export function createShell(wire: ShellWire): Transport {
  return {
    async unary<I extends DescMessage, O extends DescMessage>(
      method: DescMethodUnary<I, O>,
      signal: AbortSignal | undefined,
      timeoutMs: number | undefined,
      header: HeadersInit | undefined,
      input: MessageShape<I>,
      contextValues?: ContextValues,
    ): Promise<UnaryResponse<I, O>> {
      const t = timeoutMs ?? wire.defaultTimeoutMs;
      return runUnaryCall<I, O>({
        interceptors: wire.interceptors,
        signal,
        timeoutMs: t,
        req: {
          stream: false,
          service: method.parent,
          method,
          requestMethod: "POST",
          url: createMethodUrl(wire.baseUrl, method),
          header: wire.headersFor(t, header),
          contextValues: contextValues ?? createContextValues(),
          message: input,
        },
        next: async (req) => {
          const parts = await wire.call(method, req.url, req.header, req.signal, (async function* () {
            yield req.message;
          })());
          let message: MessageShape<O> | undefined;
          let count = 0;
          for await (const m of parts.message) {
            message = m;
            count++;
          }
          if (message === undefined) throw new ConnectError("protocol error: missing response message", Code.Unimplemented);
          if (count > 1) throw new ConnectError("protocol error: received extra messages for unary method", Code.Unimplemented);
          return { stream: false, service: method.parent, method, header: parts.header, trailer: parts.trailer, message };
        },
      });
    },

    async stream<I extends DescMessage, O extends DescMessage>(
      method: DescMethodStreaming<I, O>,
      signal: AbortSignal | undefined,
      timeoutMs: number | undefined,
      header: HeadersInit | undefined,
      input: AsyncIterable<MessageShape<I>>,
      contextValues?: ContextValues,
    ): Promise<StreamResponse<I, O>> {
      const t = timeoutMs ?? wire.defaultTimeoutMs;
      return runStreamingCall<I, O>({
        interceptors: wire.interceptors,
        signal,
        timeoutMs: t,
        req: {
          stream: true,
          service: method.parent,
          method,
          requestMethod: "POST",
          url: createMethodUrl(wire.baseUrl, method),
          header: wire.headersFor(t, header),
          contextValues: contextValues ?? createContextValues(),
          message: input,
        },
        next: async (req) => {
          const parts = await wire.call(method, req.url, req.header, req.signal, req.message);
          return { stream: true, service: method.parent, method, header: parts.header, trailer: parts.trailer, message: parts.message };
        },
      });
    },
  } as Transport;
}

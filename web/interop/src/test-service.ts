// The reference implementation of grpc.testing.TestService, written against
// @connectrpc/connect. It is the third-party peer the suites are validated
// against before they are pointed at weir.

import { setTimeout as sleep } from "node:timers/promises";
import { create, type DescService } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  type ConnectRouter,
  type HandlerContext,
  type ServiceImpl,
} from "@connectrpc/connect";
import { TestService, UnimplementedService } from "./gen/grpc/testing/test_pb.js";
import {
  type EchoStatus,
  PayloadSchema,
  type ResponseParameters,
  type StreamingOutputCallRequest,
  type StreamingOutputCallResponse,
  StreamingOutputCallResponseSchema,
} from "./gen/grpc/testing/messages_pb.js";
import { ECHO_INITIAL_KEY, ECHO_TRAILING_KEY } from "./interop-constants.js";
import { emit, TEST_ID_KEY } from "./upstream-events.js";

function payload(size: number) {
  if (size < 0) {
    throw new ConnectError(`negative payload size ${size}`, Code.InvalidArgument);
  }
  return create(PayloadSchema, { body: new Uint8Array(size) });
}

/** Echo the interop test metadata: initial as a header, -bin as a trailer. */
function echoMetadata(ctx: HandlerContext): void {
  const initial = ctx.requestHeader.get(ECHO_INITIAL_KEY);
  if (initial !== null) {
    ctx.responseHeader.set(ECHO_INITIAL_KEY, initial);
  }
  const trailing = ctx.requestHeader.get(ECHO_TRAILING_KEY);
  if (trailing !== null) {
    ctx.responseTrailer.set(ECHO_TRAILING_KEY, trailing);
  }
}

/** End the call with the requested status when it is not OK. */
function maybeFail(status: EchoStatus | undefined): void {
  if (status !== undefined && status.code !== 0) {
    throw new ConnectError(status.message, status.code as Code);
  }
}

/** Sleep; if the call ends first (deadline, cancel) end with the call's reason. */
async function pause(ms: number, signal: AbortSignal): Promise<void> {
  try {
    await sleep(ms, undefined, { signal });
  } catch (e) {
    if (signal.aborted) throw ConnectError.from(signal.reason);
    throw e;
  }
}

async function* answer(
  params: readonly ResponseParameters[],
  ctx: HandlerContext,
): AsyncGenerator<StreamingOutputCallResponse> {
  for (const p of params) {
    if (p.intervalUs > 0) {
      await pause(Math.ceil(p.intervalUs / 1000), ctx.signal);
    }
    yield create(StreamingOutputCallResponseSchema, { payload: payload(p.size) });
  }
}

export const testServiceImpl: ServiceImpl<typeof TestService> = {
  emptyCall(_req, ctx) {
    echoMetadata(ctx);
    return {};
  },

  unaryCall(req, ctx) {
    echoMetadata(ctx);
    maybeFail(req.responseStatus);
    return { payload: payload(req.responseSize) };
  },

  cacheableUnaryCall(req, ctx) {
    echoMetadata(ctx);
    maybeFail(req.responseStatus);
    return { payload: payload(req.responseSize) };
  },

  async *streamingOutputCall(req, ctx) {
    echoMetadata(ctx);
    yield* answer(req.responseParameters, ctx);
    maybeFail(req.responseStatus);
  },

  async streamingInputCall(reqs, ctx) {
    echoMetadata(ctx);
    let aggregatedPayloadSize = 0;
    for await (const req of reqs) {
      aggregatedPayloadSize += req.payload?.body.length ?? 0;
    }
    return { aggregatedPayloadSize };
  },

  async *fullDuplexCall(reqs, ctx) {
    echoMetadata(ctx);
    for await (const req of reqs) {
      maybeFail(req.responseStatus);
      yield* answer(req.responseParameters, ctx);
    }
  },

  async *halfDuplexCall(reqs, ctx) {
    echoMetadata(ctx);
    const all: StreamingOutputCallRequest[] = [];
    for await (const req of reqs) {
      all.push(req);
    }
    for (const req of all) {
      maybeFail(req.responseStatus);
      yield* answer(req.responseParameters, ctx);
    }
  },

  unimplementedCall() {
    throw new ConnectError("grpc.testing.TestService.UnimplementedCall is not implemented", Code.Unimplemented);
  },
};

/**
 * Reports (upstream-events.ts) each call whose handler sees its signal abort
 * (client cancel, stream reset, deadline) before the handler has finished.
 * connect also aborts the signal when a call completes normally; that is not
 * reported.
 */
export function reportCancellations<S extends DescService>(service: S, impl: ServiceImpl<S>): ServiceImpl<S> {
  const out: Record<string, unknown> = {};
  const fns = impl as unknown as Record<string, (req: unknown, ctx: HandlerContext) => unknown>;
  for (const m of service.methods) {
    const fn = fns[m.localName];
    if (fn === undefined) continue;
    const method = `${service.typeName}/${m.name}`;
    const watch = (ctx: HandlerContext) => {
      let done = false;
      const onAbort = () => {
        if (done) return;
        done = true;
        const reason: unknown = ctx.signal.reason;
        emit({
          event: "cancelled",
          method,
          id: ctx.requestHeader.get(TEST_ID_KEY),
          reason: reason instanceof Error ? reason.message : String(reason ?? "aborted"),
        });
      };
      ctx.signal.addEventListener("abort", onAbort, { once: true });
      return () => {
        done = true;
        ctx.signal.removeEventListener("abort", onAbort);
      };
    };
    if (m.methodKind === "server_streaming" || m.methodKind === "bidi_streaming") {
      out[m.localName] = async function* (req: unknown, ctx: HandlerContext) {
        const finish = watch(ctx);
        try {
          yield* fn(req, ctx) as AsyncIterable<unknown>;
        } finally {
          finish();
        }
      };
    } else {
      out[m.localName] = async (req: unknown, ctx: HandlerContext) => {
        const finish = watch(ctx);
        try {
          return await fn(req, ctx);
        } finally {
          finish();
        }
      };
    }
  }
  return out as ServiceImpl<S>;
}

export function registerTestServices(router: ConnectRouter): void {
  router.service(TestService, reportCancellations(TestService, testServiceImpl));
  router.service(
    UnimplementedService,
    reportCancellations(UnimplementedService, {
      unimplementedCall() {
        throw new ConnectError("grpc.testing.UnimplementedService is not implemented", Code.Unimplemented);
      },
    }),
  );
}

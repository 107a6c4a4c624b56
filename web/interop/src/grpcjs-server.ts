// grpc.testing.TestService on @grpc/grpc-js: a native gRPC (h2c) upstream for
// the gateway suites, written against a gRPC implementation that is neither
// weir nor connect.
//
//   grpcjs-server [--listen HOST:PORT]
//
// prints `listening on http://HOST:PORT` once it accepts connections and exits
// on SIGTERM/SIGINT. Messages are (de)serialized by protobuf-es with the
// generated schemas; the service definition is written out by hand from the
// generated service descriptors (no protoc, no proto loader).
//
// Besides the interop behaviours it reports, as JSON lines on stdout (see
// upstream-events.ts), every call whose handler sees the client go away, the
// raw HTTP/2 request headers of calls marked `x-weir-test-dump-headers: 1`, and
// each request message of client streams that carry an `x-weir-test-id`.
//
// It offers server reflection (grpc.reflection.v1 and v1alpha, @grpc/reflection)
// of the grpc.testing files, so `weir call` can learn the schema from it.

import http2 from "node:http2";
import { realpathSync } from "node:fs";
import { parseArgs } from "node:util";
import { pathToFileURL } from "node:url";
import * as grpc from "@grpc/grpc-js";
import { ReflectionService } from "@grpc/reflection";
import {
  create,
  type DescFile,
  type DescMessage,
  type DescService,
  fromBinary,
  type MessageShape,
  toBinary,
} from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { file_grpc_testing_test, TestService, UnimplementedService } from "./gen/grpc/testing/test_pb.js";
import {
  type EchoStatus,
  PayloadSchema,
  type ResponseParameters,
  type SimpleRequest,
  SimpleResponseSchema,
  type StreamingInputCallRequest,
  StreamingInputCallResponseSchema,
  type StreamingOutputCallRequest,
  type StreamingOutputCallResponse,
  StreamingOutputCallResponseSchema,
} from "./gen/grpc/testing/messages_pb.js";
import { EmptySchema } from "./gen/grpc/testing/empty_pb.js";
import { ECHO_INITIAL_KEY, ECHO_TRAILING_KEY } from "./interop-constants.js";
import { DUMP_HEADERS_KEY, emit, flattenHeaders, TEST_ID_KEY } from "./upstream-events.js";

// ---- raw request headers -------------------------------------------------
// grpc-js drops te, grpc-timeout, content-type, ... from the metadata it hands
// to handlers. To see what really arrived, watch the HTTP/2 server grpc-js
// creates (it calls require("http2").createServer, the object patched here).
const originalCreateServer = http2.createServer;
(http2 as { createServer: typeof http2.createServer }).createServer = ((...args: Parameters<typeof http2.createServer>) => {
  const server = originalCreateServer(...args);
  server.on("stream", (_stream, headers) => {
    if (headers[DUMP_HEADERS_KEY] !== "1") return;
    const id = headers[TEST_ID_KEY];
    emit({
      event: "metadata",
      method: String(headers[":path"] ?? "").replace(/^\//, ""),
      id: typeof id === "string" ? id : null,
      headers: flattenHeaders(headers),
    });
  });
  return server;
}) as typeof http2.createServer;

// ---- service definition from the generated descriptors --------------------

function codec<D extends DescMessage>(schema: D) {
  return {
    serialize: (m: MessageShape<D>) => Buffer.from(toBinary(schema, m)),
    deserialize: (b: Buffer) => fromBinary(schema, b),
  };
}

function serviceDefinition(service: DescService): grpc.ServiceDefinition {
  const def: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const m of service.methods) {
    const i = codec(m.input);
    const o = codec(m.output);
    def[m.localName] = {
      path: `/${service.typeName}/${m.name}`,
      requestStream: m.methodKind === "client_streaming" || m.methodKind === "bidi_streaming",
      responseStream: m.methodKind === "server_streaming" || m.methodKind === "bidi_streaming",
      requestSerialize: i.serialize as (v: unknown) => Buffer,
      requestDeserialize: i.deserialize,
      responseSerialize: o.serialize as (v: unknown) => Buffer,
      responseDeserialize: o.deserialize,
      originalName: m.name,
    };
  }
  return def;
}

// ---- behaviours -----------------------------------------------------------

type AnyCall = grpc.ServerUnaryCall<unknown, unknown> | grpc.ServerReadableStream<unknown, unknown> | grpc.ServerWritableStream<unknown, unknown> | grpc.ServerDuplexStream<unknown, unknown>;

/** Every call type is an EventEmitter ("cancelled", ...); the union's overloads do not combine. */
const emitter = (call: AnyCall) => call as unknown as NodeJS.EventEmitter;

class StatusError extends Error {
  constructor(
    readonly code: grpc.status,
    readonly details: string,
  ) {
    super(details);
  }
}

/** Reports the call as cancelled if it ends before the handler finished. */
function track(call: AnyCall, method: string): { done(): void; cancelled(): boolean } {
  let done = false;
  let cancelled = false;
  const id = call.metadata.get(TEST_ID_KEY)[0];
  emitter(call).on("cancelled", () => {
    cancelled = true;
    if (done) return;
    done = true;
    const deadline = call.getDeadline();
    const expired = deadline instanceof Date ? deadline.getTime() <= Date.now() : typeof deadline === "number" && deadline <= Date.now();
    emit({
      event: "cancelled",
      method: `grpc.testing.${method}`,
      id: typeof id === "string" ? id : null,
      reason: expired ? "deadline exceeded" : "cancelled by the client",
    });
  });
  return {
    done: () => (done = true),
    cancelled: () => cancelled || call.cancelled,
  };
}

function echoInitial(call: AnyCall): void {
  const initial = call.metadata.get(ECHO_INITIAL_KEY);
  if (initial.length > 0) {
    const md = new grpc.Metadata();
    md.set(ECHO_INITIAL_KEY, initial[0]!);
    call.sendMetadata(md);
  }
}

function echoTrailer(call: AnyCall): grpc.Metadata {
  const md = new grpc.Metadata();
  const trailing = call.metadata.get(ECHO_TRAILING_KEY);
  if (trailing.length > 0) md.set(ECHO_TRAILING_KEY, trailing[0]!);
  return md;
}

function payload(size: number) {
  if (size < 0) throw new StatusError(grpc.status.INVALID_ARGUMENT, `negative payload size ${size}`);
  return create(PayloadSchema, { body: new Uint8Array(size) });
}

function checkStatus(status: EchoStatus | undefined): void {
  if (status !== undefined && status.code !== 0) throw new StatusError(status.code as grpc.status, status.message);
}

function toServiceError(e: unknown, trailer: grpc.Metadata): grpc.ServerErrorResponse {
  const err = e instanceof StatusError ? e : new StatusError(grpc.status.UNKNOWN, String(e));
  return Object.assign(new Error(err.details), { code: err.code, details: err.details, metadata: trailer });
}

function sleep(ms: number, call: AnyCall): Promise<void> {
  return new Promise((resolve, reject) => {
    if (call.cancelled) {
      reject(new StatusError(grpc.status.CANCELLED, "cancelled"));
      return;
    }
    const onCancel = () => {
      clearTimeout(timer);
      reject(new StatusError(grpc.status.CANCELLED, "cancelled"));
    };
    const timer = setTimeout(() => {
      emitter(call).off("cancelled", onCancel);
      resolve();
    }, ms);
    emitter(call).once("cancelled", onCancel);
  });
}

/** Writes the responses one request's parameters ask for, pausing as asked. */
async function answer(
  params: readonly ResponseParameters[],
  call: grpc.ServerWritableStream<unknown, StreamingOutputCallResponse> | grpc.ServerDuplexStream<unknown, StreamingOutputCallResponse>,
): Promise<void> {
  for (const p of params) {
    if (p.intervalUs > 0) await sleep(Math.ceil(p.intervalUs / 1000), call);
    if (call.cancelled) throw new StatusError(grpc.status.CANCELLED, "cancelled");
    call.write(create(StreamingOutputCallResponseSchema, { payload: payload(p.size) }));
  }
}

function unary<Req, Res>(name: string, impl: (req: Req) => Res): grpc.handleUnaryCall<Req, Res> {
  return (call, callback) => {
    const t = track(call, name);
    echoInitial(call);
    const trailer = echoTrailer(call);
    try {
      const res = impl(call.request);
      t.done();
      callback(null, res, trailer);
    } catch (e) {
      t.done();
      callback(toServiceError(e, trailer));
    }
  };
}

function streamEnd(
  call: grpc.ServerWritableStream<unknown, unknown> | grpc.ServerDuplexStream<unknown, unknown>,
  t: ReturnType<typeof track>,
  work: Promise<void>,
): void {
  const trailer = echoTrailer(call);
  work.then(
    () => {
      t.done();
      if (!call.cancelled) call.end(trailer);
    },
    (e: unknown) => {
      t.done();
      if (!call.cancelled) call.emit("error", toServiceError(e, trailer));
    },
  );
}

/**
 * Every request message of a client stream (rejects if the call is cancelled).
 * Calls with an x-weir-test-id report each message as it arrives.
 */
function readAll<Req>(
  call: grpc.ServerReadableStream<Req, unknown> | grpc.ServerDuplexStream<Req, unknown>,
  method: string,
  onMessage?: (m: Req) => void,
): Promise<Req[]> {
  const id = call.metadata.get(TEST_ID_KEY)[0];
  return new Promise((resolve, reject) => {
    const all: Req[] = [];
    call.on("data", (m: Req) => {
      if (typeof id === "string") emit({ event: "message", method: `grpc.testing.${method}`, id, index: all.length });
      all.push(m);
      onMessage?.(m);
    });
    call.on("end", () => resolve(all));
    call.on("error", reject);
    call.on("cancelled", () => reject(new StatusError(grpc.status.CANCELLED, "cancelled")));
  });
}

const testServiceImpl: grpc.UntypedServiceImplementation = {
  emptyCall: unary("TestService/EmptyCall", () => create(EmptySchema, {})),

  unaryCall: unary("TestService/UnaryCall", (req: SimpleRequest) => {
    checkStatus(req.responseStatus);
    return create(SimpleResponseSchema, { payload: payload(req.responseSize) });
  }),

  cacheableUnaryCall: unary("TestService/CacheableUnaryCall", (req: SimpleRequest) => {
    checkStatus(req.responseStatus);
    return create(SimpleResponseSchema, { payload: payload(req.responseSize) });
  }),

  streamingOutputCall(call: grpc.ServerWritableStream<StreamingOutputCallRequest, StreamingOutputCallResponse>) {
    const t = track(call, "TestService/StreamingOutputCall");
    echoInitial(call);
    streamEnd(
      call,
      t,
      (async () => {
        await answer(call.request.responseParameters, call);
        checkStatus(call.request.responseStatus);
      })(),
    );
  },

  streamingInputCall(
    call: grpc.ServerReadableStream<StreamingInputCallRequest, unknown>,
    callback: grpc.sendUnaryData<unknown>,
  ) {
    const t = track(call, "TestService/StreamingInputCall");
    echoInitial(call);
    const trailer = echoTrailer(call);
    readAll(call, "TestService/StreamingInputCall").then(
      (reqs) => {
        t.done();
        const aggregatedPayloadSize = reqs.reduce((n, r) => n + (r.payload?.body.length ?? 0), 0);
        callback(null, create(StreamingInputCallResponseSchema, { aggregatedPayloadSize }), trailer);
      },
      (e: unknown) => {
        t.done();
        if (!call.cancelled) callback(toServiceError(e, trailer));
      },
    );
  },

  fullDuplexCall(call: grpc.ServerDuplexStream<StreamingOutputCallRequest, StreamingOutputCallResponse>) {
    const t = track(call, "TestService/FullDuplexCall");
    echoInitial(call);
    // Answer each request as it arrives, in order; a failing request ends the
    // call at once.
    const work = new Promise<void>((resolve, reject) => {
      let chain = Promise.resolve();
      const each = (req: StreamingOutputCallRequest) => {
        chain = chain.then(async () => {
          checkStatus(req.responseStatus);
          await answer(req.responseParameters, call);
        });
        chain.catch(reject);
      };
      readAll(call, "TestService/FullDuplexCall", each).then(() => chain).then(resolve, reject);
    });
    streamEnd(call, t, work);
  },

  halfDuplexCall(call: grpc.ServerDuplexStream<StreamingOutputCallRequest, StreamingOutputCallResponse>) {
    const t = track(call, "TestService/HalfDuplexCall");
    echoInitial(call);
    streamEnd(
      call,
      t,
      readAll(call, "TestService/HalfDuplexCall").then(async (reqs) => {
        for (const req of reqs) {
          checkStatus(req.responseStatus);
          await answer(req.responseParameters, call);
        }
      }),
    );
  },

  unimplementedCall: unary("TestService/UnimplementedCall", () => {
    throw new StatusError(grpc.status.UNIMPLEMENTED, "grpc.testing.TestService.UnimplementedCall is not implemented");
  }),
};

// ---- server reflection ---------------------------------------------------

/** `file` and everything it imports, encoded, imports first. */
function encodedFiles(file: DescFile, out = new Map<string, Buffer>()): Map<string, Buffer> {
  for (const dep of file.dependencies) encodedFiles(dep, out);
  if (!out.has(file.proto.name)) out.set(file.proto.name, Buffer.from(toBinary(FileDescriptorProtoSchema, file.proto)));
  return out;
}

/**
 * @grpc/reflection reads the descriptors from a @grpc/proto-loader package
 * definition: from every entry's `fileDescriptorProtos`. One entry carrying
 * the generated files' descriptors is all it needs.
 */
function reflectionService(): ReflectionService {
  type PackageDefinition = ConstructorParameters<typeof ReflectionService>[0];
  const fileDescriptorProtos = [...encodedFiles(file_grpc_testing_test).values()];
  return new ReflectionService({ "grpc.testing": { fileDescriptorProtos } } as unknown as PackageDefinition);
}

export function createGrpcJsServer(): grpc.Server {
  const server = new grpc.Server();
  server.addService(serviceDefinition(TestService), testServiceImpl);
  server.addService(serviceDefinition(UnimplementedService), {
    unimplementedCall: unary("UnimplementedService/UnimplementedCall", () => {
      throw new StatusError(grpc.status.UNIMPLEMENTED, "grpc.testing.UnimplementedService is not implemented");
    }),
  });
  reflectionService().addToServer(server);
  return server;
}

function main(): void {
  const { values } = parseArgs({
    options: { listen: { type: "string", default: "127.0.0.1:0" } },
    allowPositionals: false,
  });
  const server = createGrpcJsServer();
  server.bindAsync(values.listen, grpc.ServerCredentials.createInsecure(), (err, port) => {
    if (err !== null) {
      process.stderr.write(`grpc-js server: cannot listen on ${values.listen}: ${err.message}\n`);
      process.exit(1);
    }
    const host = values.listen.slice(0, values.listen.lastIndexOf(":"));
    process.stdout.write(`grpc-js server listening on http://${host}:${port}\n`);
  });
  const stop = () => {
    server.forceShutdown();
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href) {
  main();
}

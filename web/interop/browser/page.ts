// Test page for the browser suite: drives the official grpc-web runtime
// (GrpcWebClientBase + MethodDescriptor) with protobuf-es (de)serializers.
// Bundled by esbuild and loaded from an origin other than the gRPC server's.

import { GrpcWebClientBase, MethodDescriptor, MethodType, type Metadata, type RpcError, type Status } from "grpc-web";
import { create, fromBinary, toBinary, type DescMessage, type DescMethod, type MessageShape } from "@bufbuild/protobuf";
import { TestService, UnimplementedService } from "../src/gen/grpc/testing/test_pb.js";
import { SimpleRequestSchema, StreamingOutputCallRequestSchema } from "../src/gen/grpc/testing/messages_pb.js";
import { EmptySchema } from "../src/gen/grpc/testing/empty_pb.js";
import type { CallOutcome, CallSpec, InteropPage, ReceivedMessage, RequestSpec, StreamSpec, UnaryMethod } from "./protocol.js";

// grpc-web wants constructors for the request and response types but only
// calls the serializer and deserializer functions given with them.
class Unused {}

function descriptor<I extends DescMessage, O extends DescMessage>(
  method: DescMethod & { input: I; output: O },
): MethodDescriptor<MessageShape<I>, MessageShape<O>> {
  return new MethodDescriptor<MessageShape<I>, MessageShape<O>>(
    `/${method.parent.typeName}/${method.name}`,
    method.methodKind === "server_streaming" ? MethodType.SERVER_STREAMING : MethodType.UNARY,
    Unused as unknown as new () => MessageShape<I>,
    Unused as unknown as new () => MessageShape<O>,
    (req: MessageShape<I>) => toBinary(method.input, req),
    (bytes: Uint8Array) => fromBinary(method.output, bytes),
  );
}

const methods = {
  "TestService/EmptyCall": descriptor(TestService.method.emptyCall),
  "TestService/UnaryCall": descriptor(TestService.method.unaryCall),
  "TestService/UnimplementedCall": descriptor(TestService.method.unimplementedCall),
  "UnimplementedService/UnimplementedCall": descriptor(UnimplementedService.method.unimplementedCall),
  "TestService/StreamingOutputCall": descriptor(TestService.method.streamingOutputCall),
};

function payload(size: number | undefined) {
  return size === undefined ? undefined : { body: new Uint8Array(size) };
}

function simpleRequest(spec: RequestSpec = {}) {
  return create(SimpleRequestSchema, {
    responseSize: spec.responseSize ?? 0,
    payload: payload(spec.payloadSize),
    responseStatus: spec.responseStatus,
  });
}

function streamingRequest(spec: RequestSpec = {}) {
  return create(StreamingOutputCallRequestSchema, {
    responseParameters: spec.responseParameters ?? [],
    payload: payload(spec.payloadSize),
    responseStatus: spec.responseStatus,
  });
}

function received(msg: unknown): ReceivedMessage {
  const body = (msg as { payload?: { body: Uint8Array } }).payload?.body;
  if (body === undefined) return { size: -1, zero: true };
  return { size: body.length, zero: body.every((b) => b === 0) };
}

function metadataFor(spec: CallSpec): Metadata {
  const md: Metadata = { ...spec.metadata };
  if (spec.deadlineMs !== undefined) md["deadline"] = String(Date.now() + spec.deadlineMs);
  return md;
}

function client(spec: CallSpec): GrpcWebClientBase {
  return new GrpcWebClientBase({ format: spec.format });
}

const methodUrl = (spec: CallSpec, name: string) => `${spec.baseUrl.replace(/\/+$/, "")}${name}`;

function unary(method: UnaryMethod, spec: CallSpec): Promise<CallOutcome> {
  const desc = methods[method];
  const request = method === "TestService/UnaryCall" ? simpleRequest(spec.request) : create(EmptySchema);
  return new Promise((resolve) => {
    const out: CallOutcome = { code: -1, details: "", messages: [], headers: null, trailers: null };
    const stream = client(spec).rpcCall(
      methodUrl(spec, desc.getName()),
      request as never,
      metadataFor(spec),
      desc as MethodDescriptor<never, unknown>,
      (err: RpcError | null, response: unknown) => {
        if (err) {
          out.code = err.code;
          out.details = err.message;
          out.trailers ??= { ...err.metadata };
        } else {
          out.code = 0;
          out.messages.push(received(response));
        }
        // The 'status' listener below runs in this same turn; let it land.
        setTimeout(() => resolve(out), 0);
      },
    );
    stream.on("metadata", (md: Metadata) => {
      out.headers = { ...md };
    });
    stream.on("status", (status: Status) => {
      out.trailers = { ...status.metadata };
    });
  });
}

function serverStreaming(spec: StreamSpec): Promise<CallOutcome> {
  const desc = methods["TestService/StreamingOutputCall"];
  return new Promise((resolve) => {
    const out: CallOutcome = { code: -1, details: "", messages: [], headers: null, trailers: null };
    const stream = client(spec).serverStreaming(
      methodUrl(spec, desc.getName()),
      streamingRequest(spec.request),
      metadataFor(spec),
      desc,
    );
    let done = false;
    const finish = () => {
      if (!done) {
        done = true;
        setTimeout(() => resolve(out), 0);
      }
    };
    let cancelled = false;
    const after = (event: string) => {
      if (cancelled) (out.eventsAfterCancel ??= []).push(event);
    };
    stream.on("metadata", (md) => {
      after("metadata");
      out.headers = { ...md };
    });
    stream.on("data", (msg) => {
      after("data");
      out.messages.push(received(msg));
      if (spec.cancelAfterFirst && !cancelled) {
        cancelled = true;
        out.eventsAfterCancel = [];
        stream.cancel();
        // Anything the runtime still reports within a short while is recorded.
        setTimeout(finish, 500);
      }
    });
    stream.on("status", (status) => {
      after("status");
      out.trailers = { ...status.metadata };
      if (status.code !== 0) {
        out.code = status.code;
        out.details = status.details;
      }
    });
    stream.on("error", (err) => {
      after("error");
      out.code = err.code;
      out.details = err.message;
      if (!cancelled) finish();
    });
    stream.on("end", () => {
      after("end");
      if (out.code === -1) out.code = 0;
      if (!cancelled) finish();
    });
  });
}

window.interop = { unary, serverStreaming };
document.title = "weir interop page ready";

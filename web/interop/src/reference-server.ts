// Reference gRPC-Web / gRPC / Connect server for the interop suites, built on
// @connectrpc/connect-node. Same CLI contract as `weir demo`:
//
//   reference-server [--listen HOST:PORT] [--allow-origin ORIGIN]...
//
// prints `listening on http://HOST:PORT` once it accepts connections, serves
// HTTP/1.1 and cleartext HTTP/2 (prior knowledge) on the one port, and exits
// on SIGTERM/SIGINT. It reports cancelled calls and, on request, the headers
// it received, as JSON lines on stdout (see upstream-events.ts). Cross-origin requests are denied unless their origin was
// allowed with --allow-origin (repeatable, `*` allows every origin).

import * as http from "node:http";
import * as http2 from "node:http2";
import * as net from "node:net";
import { Duplex } from "node:stream";
import { parseArgs } from "node:util";
import { realpathSync } from "node:fs";
import { pathToFileURL } from "node:url";
import { Code, ConnectError, cors, createConnectRouter } from "@connectrpc/connect";
import { compressionBrotli, compressionGzip, universalRequestFromNodeRequest, universalResponseToNodeResponse } from "@connectrpc/connect-node";
import { binaryResponseToText, isGrpcWebText, textRequestToBinary } from "./grpc-web-text.js";
import { registerTestServices } from "./test-service.js";
import { ECHO_INITIAL_KEY, ECHO_TRAILING_KEY } from "./interop-constants.js";
import { DUMP_HEADERS_KEY, emit, flattenHeaders, TEST_ID_KEY } from "./upstream-events.js";

type Request = http.IncomingMessage | http2.Http2ServerRequest;
type Response = http.ServerResponse | http2.Http2ServerResponse;
type Handler = (req: Request, res: Response) => void;

const ALLOW_HEADERS = [...cors.allowedHeaders, ECHO_INITIAL_KEY, ECHO_TRAILING_KEY].join(", ");
const EXPOSE_HEADERS = [...cors.exposedHeaders, ECHO_INITIAL_KEY, ECHO_TRAILING_KEY].join(", ");

/** CORS in front of the gRPC handler: only listed origins get CORS headers. */
export function withCors(allowedOrigins: readonly string[], next: Handler): Handler {
  const allowAll = allowedOrigins.includes("*");
  return (req, res) => {
    const origin = req.headers.origin;
    if (typeof origin !== "string") {
      next(req, res);
      return;
    }
    const allowed = allowAll || allowedOrigins.includes(origin);
    const preflight = req.method === "OPTIONS" && req.headers["access-control-request-method"] !== undefined;
    if (!allowed) {
      if (preflight) {
        res.statusCode = 403;
        res.end();
      } else {
        // Served, but without CORS headers: the browser keeps the response
        // from the page.
        next(req, res);
      }
      return;
    }
    res.setHeader("Access-Control-Allow-Origin", origin);
    res.setHeader("Vary", "Origin");
    if (preflight) {
      res.statusCode = 204;
      res.setHeader("Access-Control-Allow-Methods", cors.allowedMethods.join(", "));
      res.setHeader("Access-Control-Allow-Headers", ALLOW_HEADERS);
      res.setHeader("Access-Control-Max-Age", "600");
      res.end();
      return;
    }
    res.setHeader("Access-Control-Expose-Headers", EXPOSE_HEADERS);
    next(req, res);
  };
}

/**
 * The TestService handlers (Connect, gRPC, binary gRPC-Web from
 * connect-node), plus gRPC-Web text mode translated in front of them.
 */
export function createGrpcHandler(): Handler {
  const router = createConnectRouter({ acceptCompression: [compressionGzip, compressionBrotli] });
  registerTestServices(router);
  const paths = new Map(router.handlers.map((h) => [h.requestPath, h]));
  return (req, res) => {
    const handler = paths.get((req.url ?? "").split("?", 1)[0] ?? "");
    if (handler === undefined) {
      res.statusCode = 404;
      res.end();
      return;
    }
    if (req.headers[DUMP_HEADERS_KEY] === "1") {
      const id = req.headers[TEST_ID_KEY];
      emit({
        event: "metadata",
        method: `${handler.service.typeName}/${handler.method.name}`,
        id: typeof id === "string" ? id : null,
        headers: flattenHeaders(req.headers),
      });
    }
    const text = isGrpcWebText(req.headers["content-type"] ?? null);
    let uReq = universalRequestFromNodeRequest(req, res, undefined, undefined);
    if (text) uReq = textRequestToBinary(uReq);
    handler(uReq)
      .then((uRes) => universalResponseToNodeResponse(text ? binaryResponseToText(uRes) : uRes, res))
      .catch((reason: unknown) => {
        if (ConnectError.from(reason).code === Code.Aborted) return;
        console.error(`handler for ${handler.service.typeName}/${handler.method.name} failed`, reason);
      });
  };
}

const H2_PREFACE_START = Buffer.from("PRI * HTTP/2.0");

/**
 * A connection whose first bytes were already read off the socket. Node's
 * HTTP/1 server would otherwise read the socket's handle directly and never
 * see bytes handed back with `unshift`; it accepts any Duplex instead.
 */
class PrefixedConnection extends Duplex {
  constructor(
    private readonly socket: net.Socket,
    head: Buffer,
  ) {
    super();
    this.push(head);
    socket.on("data", (chunk: Buffer) => {
      if (!this.push(chunk)) socket.pause();
    });
    socket.on("end", () => this.push(null));
    socket.on("error", (err) => this.destroy(err));
    socket.on("close", () => this.destroy());
  }
  get remoteAddress() {
    return this.socket.remoteAddress;
  }
  get remotePort() {
    return this.socket.remotePort;
  }
  override _read(): void {
    this.socket.resume();
  }
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.socket.write(chunk, cb);
  }
  override _final(cb: (err?: Error | null) => void): void {
    this.socket.end(cb);
  }
  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.socket.destroy(err ?? undefined);
    cb(err);
  }
}

/**
 * One TCP listener for HTTP/1.1 and h2c with prior knowledge: the first bytes
 * of a connection decide which server gets it.
 */
export function createDualServer(handler: Handler): net.Server {
  const h1 = http.createServer(handler);
  const h2 = http2.createServer({}, handler);
  return net.createServer((socket) => {
    let seen = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      seen = Buffer.concat([seen, chunk]);
      const n = Math.min(seen.length, H2_PREFACE_START.length);
      const isH2 = seen.subarray(0, n).equals(H2_PREFACE_START.subarray(0, n));
      if (isH2 && n < H2_PREFACE_START.length) {
        return; // undecided, wait for more bytes
      }
      socket.off("data", onData);
      socket.pause();
      if (isH2) {
        // The HTTP/2 session takes bytes already buffered on the socket first.
        socket.unshift(seen);
        h2.emit("connection", socket);
      } else {
        h1.emit("connection", new PrefixedConnection(socket, seen));
      }
    };
    socket.on("data", onData);
    socket.on("error", () => socket.destroy());
  });
}

function main(): void {
  const { values } = parseArgs({
    options: {
      listen: { type: "string", default: "127.0.0.1:0" },
      "allow-origin": { type: "string", multiple: true, default: [] },
    },
    allowPositionals: false,
  });
  const listen = values.listen;
  const sep = listen.lastIndexOf(":");
  if (sep < 0) {
    throw new Error(`--listen wants HOST:PORT, got ${listen}`);
  }
  const host = listen.slice(0, sep).replace(/^\[(.*)\]$/, "$1");
  const port = Number(listen.slice(sep + 1));

  const server = createDualServer(withCors(values["allow-origin"], createGrpcHandler()));
  const sockets = new Set<net.Socket>();
  server.on("connection", (s: net.Socket) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  server.listen(port, host, () => {
    const addr = server.address() as net.AddressInfo;
    const shownHost = addr.family === "IPv6" ? `[${addr.address}]` : addr.address;
    process.stdout.write(`reference server (connect-node) listening on http://${shownHost}:${addr.port}\n`);
  });
  const stop = () => {
    server.close();
    for (const s of sockets) s.destroy();
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href) {
  main();
}

// application/grpc-web-text support for the reference server: connect-node
// speaks binary gRPC-Web only, so text requests are base64-decoded on the way
// in and responses base64-encoded (progressively) on the way out.

import { assertByteStreamRequest, type UniversalServerRequest, type UniversalServerResponse } from "@connectrpc/connect/protocol";

export const TEXT_CONTENT_TYPE = /^application\/grpc-web-text(\+proto)?(;.*)?$/i;

export function isGrpcWebText(contentType: string | null): boolean {
  return contentType !== null && TEXT_CONTENT_TYPE.test(contentType.trim());
}

/** Base64 text (possibly several padded segments, split anywhere) to bytes. */
export async function* decodeBase64Stream(body: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  let pending = "";
  for await (const chunk of body) {
    pending += Buffer.from(chunk).toString("latin1").replace(/\s+/g, "");
    const whole = pending.length - (pending.length % 4);
    if (whole > 0) {
      yield decodeQuads(pending.slice(0, whole));
      pending = pending.slice(whole);
    }
  }
  if (pending.length > 0) {
    throw new Error(`grpc-web-text body ends with ${pending.length} stray base64 characters`);
  }
}

/** Decodes groups of 4 characters; padding may appear at the end of any group. */
function decodeQuads(text: string): Uint8Array {
  if (!/^[A-Za-z0-9+/=]*$/.test(text)) throw new Error("grpc-web-text body is not base64");
  if (!text.includes("=")) return Buffer.from(text, "base64");
  const parts: Buffer[] = [];
  for (let i = 0; i < text.length; i += 4) parts.push(Buffer.from(text.slice(i, i + 4), "base64"));
  return Buffer.concat(parts);
}

/**
 * Bytes to base64, each chunk encoded (and padded) on its own as it arrives,
 * as weir does per frame. Carrying the last 1–2 bytes of a chunk over to the
 * next one would hold every message back until the next one is written (an
 * idle stream's last message until the stream ends).
 */
export async function* encodeBase64Stream(body: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  for await (const chunk of body) {
    if (chunk.length > 0) yield Buffer.from(Buffer.from(chunk).toString("base64"), "latin1");
  }
}

/** Present a text request to the binary handler. */
export function textRequestToBinary(req: UniversalServerRequest): UniversalServerRequest {
  const header = new Headers(req.header);
  header.set("content-type", "application/grpc-web+proto");
  header.delete("content-length");
  assertByteStreamRequest(req);
  return { ...req, header, body: decodeBase64Stream(req.body) };
}

/** Turn the binary handler's response into a text response. */
export function binaryResponseToText(res: UniversalServerResponse): UniversalServerResponse {
  const header = new Headers(res.header);
  if (header.has("content-type")) header.set("content-type", "application/grpc-web-text+proto");
  header.delete("content-length");
  return res.body === undefined ? { ...res, header } : { ...res, header, body: encodeBase64Stream(res.body) };
}

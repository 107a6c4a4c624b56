// The wire format of gRPC over WebTransport (docs/protocol/webtransport.md):
// header blocks (§3.2), the request header block (§3.3), the end-of-request
// frame (§3.4), stream error codes and what they mean to the client (§5), the
// discovery document (§7) and the choice of mapping version (§8). No I/O
// here, so all of it is unit-tested in Node.

import { Code, ConnectError } from "@connectrpc/connect";
import { FLAG_TRAILER } from "./frames.js";

/** Flags of a header-block frame (§3.1). */
export const FLAG_HEADER_BLOCK = FLAG_TRAILER;

/** Stream error codes (§5), on RESET_STREAM and STOP_SENDING. */
export const StreamErrorCode = {
  CANCEL: 0x0,
  PROTOCOL_ERROR: 0x1,
  REFUSED: 0x2,
} as const;

/** The mapping versions this client speaks (the `v` query parameter, §8). */
export type MappingVersion = 1 | 2;

/** The newest mapping version, spoken unless the server names version 1 (§8). */
export const MAPPING_VERSION: MappingVersion = 2;

/** The format version of the discovery document (§7; not the mapping's). */
export const DISCOVERY_VERSION = 1;

/**
 * The end-of-request frame of version 2 (§3.4): an empty header block. The
 * client writes it instead of finishing its send side, which it keeps open
 * so that it can still reset it to cancel the call.
 */
export const END_OF_REQUEST: Uint8Array = new Uint8Array([FLAG_TRAILER, 0, 0, 0, 0]);

/**
 * The session URL to open and the version to speak on it (§8), from a URL
 * given by the application or named by the discovery document. The version
 * is the one its `v` parameter names when this client speaks it (1 or 2);
 * otherwise (none, or a newer one) it is version 2 and `v` is set to 2.
 */
export function chooseVersion(url: string): { url: string; version: MappingVersion } {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return { url, version: MAPPING_VERSION };
  }
  const v = u.searchParams.get("v");
  if (v === "1" || v === "2") return { url, version: Number(v) as MappingVersion };
  u.searchParams.set("v", String(MAPPING_VERSION));
  return { url: u.href, version: MAPPING_VERSION };
}

/** Path of the discovery document on the server's HTTP listener (§7). */
export const DISCOVERY_PATH = "/.well-known/weir/webtransport";

const NAME = /^[!#$%&'*+\-.^_`|~0-9a-z]+$/;
// Printable ASCII and space (base64 for -bin names is a subset).
const VALUE = /^[\x20-\x7e]*$/;
// A -bin value: base64, padded or not, several joined by commas (§3.2).
const BIN_VALUE = /^(?:[A-Za-z0-9+/]*={0,2})(?:\s*,\s*[A-Za-z0-9+/]*={0,2})*$/;
const encoder = new TextEncoder();

function frame(flags: number, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(5 + payload.length);
  out[0] = flags;
  new DataView(out.buffer).setUint32(1, payload.length);
  out.set(payload, 5);
  return out;
}

/** `-bin` values go without base64 padding (senders SHOULD omit it, §3.2). */
function wireValue(name: string, value: string): string {
  if (!name.endsWith("-bin")) return value;
  return value
    .split(",")
    .map((v) => v.trim().replace(/=+$/, ""))
    .join(",");
}

/**
 * Encodes a header block payload: `name: value` lines ended by CRLF.
 * `pseudo` lines (`:path`) come first. Throws INTERNAL for a name or value
 * that cannot travel (a CR or LF would end the line early).
 */
export function encodeHeaderBlock(headers: Headers, pseudo: [string, string][] = []): Uint8Array {
  let text = "";
  for (const [name, value] of pseudo) {
    if (!VALUE.test(value)) throw new ConnectError(`invalid value for ${name}: ${JSON.stringify(value)}`, Code.Internal);
    text += `${name}: ${value}\r\n`;
  }
  headers.forEach((value, name) => {
    // Headers has already lowercased and validated the name; values may
    // hold characters a header line cannot carry.
    if (!NAME.test(name)) throw new ConnectError(`invalid metadata name ${JSON.stringify(name)}`, Code.Internal);
    if (!VALUE.test(value)) {
      throw new ConnectError(
        `invalid value for metadata ${name}: only printable ASCII travels (use a "-bin" name for binary values)`,
        Code.Internal,
      );
    }
    text += `${name}: ${wireValue(name, value)}\r\n`;
  });
  return encoder.encode(text);
}

/** A whole header-block frame (flags 0x80, length, payload). */
export function headerBlockFrame(headers: Headers, pseudo: [string, string][] = []): Uint8Array {
  return frame(FLAG_HEADER_BLOCK, encodeHeaderBlock(headers, pseudo));
}

/**
 * Decodes a header block payload. Accepts `name:value` without the space and
 * lines ended by a bare LF (§3.2); repeated names are appended. Throws
 * INTERNAL for a malformed block: a name that is not lowercase, a
 * pseudo-header (none is defined for responses), a value outside gRPC's
 * metadata rules (printable ASCII; base64 for `-bin` names).
 */
export function decodeHeaderBlock(payload: Uint8Array): Headers {
  const out = new Headers();
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(payload);
  } catch {
    throw new ConnectError("protocol error: header block is not valid text", Code.Internal);
  }
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    let line = lines[i] as string;
    if (line.endsWith("\r")) line = line.slice(0, -1);
    if (line === "") {
      // Only the end of the block may be empty (after the last line ending).
      if (i === lines.length - 1) continue;
      throw new ConnectError(`protocol error: empty line in header block`, Code.Internal);
    }
    if (i === lines.length - 1) {
      throw new ConnectError(`protocol error: header block line without a line ending: ${JSON.stringify(line)}`, Code.Internal);
    }
    const colon = line.indexOf(":", line.startsWith(":") ? 1 : 0);
    if (colon <= 0) throw new ConnectError(`protocol error: header block line without a name: ${JSON.stringify(line)}`, Code.Internal);
    const name = line.slice(0, colon);
    let value = line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    value = value.trim();
    if (name.startsWith(":")) throw new ConnectError(`protocol error: pseudo-header ${JSON.stringify(name)} in a response header block`, Code.Internal);
    if (name !== name.toLowerCase()) throw new ConnectError(`protocol error: header name ${JSON.stringify(name)} in a header block is not lowercase`, Code.Internal);
    if (!NAME.test(name)) throw new ConnectError(`protocol error: invalid header name in header block: ${JSON.stringify(name)}`, Code.Internal);
    if (!VALUE.test(value) || (name.endsWith("-bin") && !BIN_VALUE.test(value))) {
      throw new ConnectError(`protocol error: invalid value for ${name} in header block`, Code.Internal);
    }
    out.append(name, value);
  }
  return out;
}

/**
 * What a stream error code from the server means for the call (§5.1, client
 * side). `null` is a reset that carries no application code (a code outside
 * the WebTransport range, e.g. WT_SESSION_GONE, reads as null in browsers):
 * UNKNOWN, unless the session is gone (the caller checks that first).
 */
export function codeFromStreamError(streamErrorCode: number | null): Code {
  switch (streamErrorCode) {
    case StreamErrorCode.CANCEL:
      return Code.Canceled;
    case StreamErrorCode.PROTOCOL_ERROR:
      return Code.Internal;
    case StreamErrorCode.REFUSED:
      return Code.Unavailable;
    default:
      return Code.Unknown;
  }
}

const CODE_NAMES: Record<number, string> = { 0: "CANCEL", 1: "PROTOCOL_ERROR", 2: "REFUSED" };

/** The ConnectError for a stream the server reset (`how`: "reset" or "STOP_SENDING"). */
export function streamErrorToConnectError(streamErrorCode: number | null, how: string, cause?: unknown): ConnectError {
  const name = streamErrorCode === null ? "no code" : (CODE_NAMES[streamErrorCode] ?? `unknown code 0x${streamErrorCode.toString(16)}`);
  const retry = streamErrorCode === StreamErrorCode.REFUSED ? "; the server did not start the call, it may be retried" : "";
  return new ConnectError(`WebTransport stream ${how} by the server (${name})${retry}`, codeFromStreamError(streamErrorCode), undefined, undefined, cause);
}

/** Lowercase or uppercase hex → bytes; throws on anything else. */
export function hexToBytes(hex: string): Uint8Array {
  if (hex.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(hex)) throw new Error(`invalid hex string ${JSON.stringify(hex)}`);
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

export interface Discovery {
  url: string;
  serverCertificateHashes: { algorithm: string; value: Uint8Array }[];
}

/** Validates the discovery document (§7); hashes come back as bytes. */
export function parseDiscovery(doc: unknown, base?: string): Discovery {
  const d = doc as { version?: unknown; url?: unknown; certificateHashes?: unknown };
  if (typeof d !== "object" || d === null) throw new Error("discovery document is not a JSON object");
  if (d.version !== DISCOVERY_VERSION) {
    throw new Error(`discovery document has format version ${JSON.stringify(d.version)}, this client reads ${DISCOVERY_VERSION}`);
  }
  if (typeof d.url !== "string") throw new Error("discovery document has no url");
  const hashes = d.certificateHashes ?? [];
  if (!Array.isArray(hashes)) throw new Error("discovery document: certificateHashes is not an array");
  return {
    url: new URL(d.url, base).href,
    serverCertificateHashes: hashes.map((h: { algorithm?: unknown; value?: unknown }) => {
      if (typeof h?.algorithm !== "string" || typeof h.value !== "string") throw new Error("discovery document: malformed certificate hash");
      return { algorithm: h.algorithm, value: hexToBytes(h.value) };
    }),
  };
}

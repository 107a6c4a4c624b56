// Incremental base64 decoder for grpc-web-text bodies. Servers may pad at the
// end of any 4-character group (each frame encoded on its own), so padding is
// accepted at the end of every group, not only at the end of the body.

import { Code, ConnectError } from "@connectrpc/connect";

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const TABLE = new Int16Array(256).fill(-1);
for (let i = 0; i < ALPHABET.length; i++) TABLE[ALPHABET.charCodeAt(i)] = i;
const PAD = 0x3d; // '='

export class Base64Decoder {
  private readonly group = new Uint8Array(4);
  private groupLen = 0;
  private offset = 0;

  /** Decodes ASCII bytes (chunks may split groups anywhere). */
  push(chunk: Uint8Array): Uint8Array {
    const out = new Uint8Array(Math.floor((this.groupLen + chunk.length) / 4) * 3);
    let o = 0;
    for (let i = 0; i < chunk.length; i++) {
      this.group[this.groupLen++] = chunk[i] as number;
      if (this.groupLen === 4) {
        o = this.decodeGroup(out, o);
        this.groupLen = 0;
        this.offset += 4;
      }
    }
    return out.subarray(0, o);
  }

  /** Throws if the text ended inside a group. */
  end(): void {
    if (this.groupLen !== 0) {
      throw new ConnectError(
        `protocol error: grpc-web-text body ends inside a base64 group (${this.groupLen} characters at offset ${this.offset})`,
        Code.Internal,
      );
    }
  }

  private decodeGroup(out: Uint8Array, o: number): number {
    const g = this.group;
    const a = TABLE[g[0] as number] as number;
    const b = TABLE[g[1] as number] as number;
    const c3 = g[2] as number;
    const d4 = g[3] as number;
    const c = c3 === PAD ? -2 : (TABLE[c3] as number);
    const d = d4 === PAD ? -2 : (TABLE[d4] as number);
    if (a < 0 || b < 0 || c === -1 || d === -1 || (c === -2 && d !== -2)) {
      throw new ConnectError(`protocol error: invalid base64 in grpc-web-text body at offset ${this.offset}`, Code.Internal);
    }
    out[o++] = (a << 2) | (b >> 4);
    if (c >= 0) {
      out[o++] = ((b & 15) << 4) | (c >> 2);
      if (d >= 0) out[o++] = ((c & 3) << 6) | d;
    }
    return o;
  }
}

/** Standard padded base64 of bytes (request bodies in text mode, -bin metadata). */
export function encodeBase64(bytes: Uint8Array): string {
  let s = "";
  let i = 0;
  for (; i + 2 < bytes.length; i += 3) {
    const n = ((bytes[i] as number) << 16) | ((bytes[i + 1] as number) << 8) | (bytes[i + 2] as number);
    s += ALPHABET[n >> 18]! + ALPHABET[(n >> 12) & 63]! + ALPHABET[(n >> 6) & 63]! + ALPHABET[n & 63]!;
  }
  const rest = bytes.length - i;
  if (rest === 1) {
    const n = (bytes[i] as number) << 16;
    s += ALPHABET[n >> 18]! + ALPHABET[(n >> 12) & 63]! + "==";
  } else if (rest === 2) {
    const n = ((bytes[i] as number) << 16) | ((bytes[i + 1] as number) << 8);
    s += ALPHABET[n >> 18]! + ALPHABET[(n >> 12) & 63]! + ALPHABET[(n >> 6) & 63]! + "=";
  }
  return s;
}

// Incremental gRPC-Web frame parser. It holds at most one partial frame: the
// 5-byte prefix, then a buffer of exactly the announced length (checked
// against readMaxBytes before it is allocated). It never keeps the body.

import { Code, ConnectError } from "@connectrpc/connect";

export const FLAG_DATA = 0x00;
export const FLAG_COMPRESSED = 0x01;
export const FLAG_HEARTBEAT = 0x40;
export const FLAG_TRAILER = 0x80;

export interface Frame {
  flags: number;
  data: Uint8Array;
}

export interface FrameParserOptions {
  /** Accept empty heartbeat frames (0x40), a weir gRPC-Web extension. Default true. */
  heartbeats?: boolean;
  /**
   * gRPC-Web: the first 0x80 frame is the trailer and ends the body, so any
   * byte after it is an error. Default true; WebTransport streams carry two
   * header blocks (headers and trailers) and check the order themselves.
   */
  trailerEnds?: boolean;
}

export class FrameParser {
  private readonly prefix = new Uint8Array(5);
  private prefixLen = 0;
  private payload: Uint8Array | undefined;
  private payloadLen = 0;
  private flags = 0;
  private sawTrailer = false;
  /** Bytes taken in so far (for error messages). */
  private offset = 0;

  private readonly heartbeats: boolean;
  private readonly trailerEnds: boolean;

  constructor(
    private readonly readMaxBytes: number,
    options: FrameParserOptions = {},
  ) {
    this.heartbeats = options.heartbeats ?? true;
    this.trailerEnds = options.trailerEnds ?? true;
  }

  /** Feeds a chunk; returns the frames it completed, in order. Throws ConnectError on bad input. */
  push(chunk: Uint8Array): Frame[] {
    const out: Frame[] = [];
    const end = chunk.length;
    let i = 0;
    while (i < end) {
      if (this.sawTrailer) {
        throw new ConnectError(`protocol error: ${end - i} bytes after the trailer frame`, Code.Internal);
      }
      if (this.payload === undefined && this.prefixLen === 0 && end - i >= 5) {
        // Fast path, the usual case: the whole prefix is in this chunk (and, for
        // small messages, the whole payload): no prefix copy, one copy of the payload.
        const flags = chunk[i] as number;
        const len = (((chunk[i + 1] as number) << 24) | ((chunk[i + 2] as number) << 16) | ((chunk[i + 3] as number) << 8) | (chunk[i + 4] as number)) >>> 0;
        this.check(flags, len, this.offset);
        i += 5;
        this.offset += 5;
        if (end - i >= len) {
          // A copy, not a view: a message that keeps a bytes field keeps its frame, not the chunk.
          out.push(this.frame(flags, chunk.slice(i, i + len)));
          i += len;
          this.offset += len;
          continue;
        }
        this.flags = flags;
        this.payload = new Uint8Array(len);
        this.payload.set(chunk.subarray(i), 0);
        this.payloadLen = end - i;
        this.prefixLen = 5;
        this.offset += end - i;
        break;
      }
      if (this.payload === undefined) {
        const n = Math.min(5 - this.prefixLen, end - i);
        this.prefix.set(chunk.subarray(i, i + n), this.prefixLen);
        this.prefixLen += n;
        i += n;
        this.offset += n;
        if (this.prefixLen < 5) break;
        if (this.startFrame().length === 0) out.push(this.finishFrame());
        continue;
      }
      const p = this.payload;
      const n = Math.min(p.length - this.payloadLen, end - i);
      p.set(chunk.subarray(i, i + n), this.payloadLen);
      this.payloadLen += n;
      i += n;
      this.offset += n;
      if (this.payloadLen === p.length) out.push(this.finishFrame());
    }
    return out;
  }

  /** Call at the end of the body: throws if it ended inside a frame. */
  end(): void {
    if (this.prefixLen > 0 && this.payload === undefined) {
      throw new ConnectError(`protocol error: body ended inside a frame header (${this.prefixLen} of 5 bytes)`, Code.Internal);
    }
    if (this.payload !== undefined) {
      throw new ConnectError(
        `protocol error: body ended inside a frame (${this.payloadLen} of ${this.payload.length} bytes)`,
        Code.Internal,
      );
    }
  }

  /** True once a trailer frame was parsed. */
  get trailerSeen(): boolean {
    return this.sawTrailer;
  }

  private startFrame(): Uint8Array {
    const p = this.prefix;
    const flags = p[0] as number;
    const len = (((p[1] as number) << 24) | ((p[2] as number) << 16) | ((p[3] as number) << 8) | (p[4] as number)) >>> 0;
    this.check(flags, len, this.offset - 5);
    this.flags = flags;
    this.payload = new Uint8Array(len);
    this.payloadLen = 0;
    return this.payload;
  }

  /** Checks a frame's prefix (the frame starts at byte `at`) before anything is allocated for it. */
  private check(flags: number, len: number, at: number): void {
    if ((flags & ~(FLAG_COMPRESSED | FLAG_TRAILER | (this.heartbeats ? FLAG_HEARTBEAT : 0))) !== 0) {
      throw new ConnectError(`protocol error: unknown frame flags 0x${flags.toString(16)} at byte ${at}`, Code.Internal);
    }
    if (flags & FLAG_COMPRESSED) {
      throw new ConnectError(`protocol error: compressed frame at byte ${at}, but no compression was negotiated`, Code.Internal);
    }
    if (flags === FLAG_HEARTBEAT && len !== 0) {
      throw new ConnectError(`protocol error: heartbeat frame with a ${len}-byte payload at byte ${at}`, Code.Internal);
    }
    if (flags !== FLAG_DATA && flags !== FLAG_HEARTBEAT && flags !== FLAG_TRAILER) {
      throw new ConnectError(`protocol error: invalid frame flags 0x${flags.toString(16)} at byte ${at}`, Code.Internal);
    }
    if (len > this.readMaxBytes) {
      throw new ConnectError(
        `message size ${len} is larger than configured readMaxBytes ${this.readMaxBytes}`,
        Code.ResourceExhausted,
      );
    }
  }

  private finishFrame(): Frame {
    const frame = this.frame(this.flags, this.payload as Uint8Array);
    this.payload = undefined;
    this.prefixLen = 0;
    this.payloadLen = 0;
    return frame;
  }

  private frame(flags: number, data: Uint8Array): Frame {
    if (flags === FLAG_TRAILER && this.trailerEnds) this.sawTrailer = true;
    return { flags, data };
  }
}

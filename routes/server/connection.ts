/**
 * One HTTP/1.1 connection: requests one after another (keep-alive), each turned into a web
 * `Request` for the handler and its `Response` written back, under three deadlines:
 *
 * - header timeout: a new connection must send a whole request head within it (a kept-alive one,
 *   from the first byte of its next request): slowloris clients are closed (408);
 * - idle timeout: a kept-alive connection with no next request is closed after it;
 * - body timeout: the whole request body must arrive within it (408), and a response write that
 *   stalls that long (a client that stopped reading) closes the connection.
 *
 * The request's `signal` aborts when the client goes away (its side closed or reset, or a write
 * failed) and a streamed response body is then cancelled, so the generation behind it stops. A body
 * that ends early or is malformed errors the request's body stream with a {@linkcode BodyError}.
 *
 * @module
 */
import {
  BodyError,
  type BodyFraming,
  bodyFraming,
  chunk,
  errorResponse,
  fieldList,
  headEnd,
  httpDate,
  LAST_CHUNK,
  latin1,
  MAX_HEAD_BYTES,
  parseHead,
  ProtocolError,
  type RequestHead,
  responseHead,
  wantsKeepAlive,
} from "./http1.ts";
import { ConnReader, ReadTimeout } from "./reader.ts";

/** Something the operator may want to count or log. */
export type ConnectionEvent =
  | "header_timeout"
  | "idle_timeout"
  | "body_timeout"
  | "write_timeout"
  | "bad_request"
  | "body_error";

/** What a connection needs from its server. */
export interface ConnectionOptions {
  readonly handler: (request: Request) => Response | Promise<Response>;
  readonly headerTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly bodyTimeoutMs: number;
  /** `host:port` for request URLs when the Host field is missing or unusable. */
  readonly authority: string;
  /** True once the server shuts down: finish the current response, then close. */
  readonly closing: () => boolean;
  readonly onEvent?: (event: ConnectionEvent, detail: string) => void;
}

const encoder = new TextEncoder();
const CONTINUE = encoder.encode("HTTP/1.1 100 Continue\r\n\r\n");
/** Responses up to this size get a Content-Length (one write); larger or streamed ones are chunked. */
const BUFFER_RESPONSE = 1 << 20;
/** Unread request body a kept-alive connection may skip after the response; more closes it. */
const DRAIN_MAX = 64 * 1024;
/** How long a closing connection keeps reading (and dropping) what the client still sends. */
const LINGER_MS = 1000;
const HOST = /^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;
const SKIPPED_HEADERS = new Set(["connection", "keep-alive", "transfer-encoding", "content-length", "date"]);

/** The state of one request's body as the handler and the connection read it. */
interface Body {
  /** The next piece of the body, or null at its end. */
  next(): Promise<Uint8Array | null>;
  /** Reading has begun (a 100 Continue went out, if the client asked for one). */
  started: boolean;
  done: boolean;
  broken: boolean;
}

/** Serves one accepted connection until it closes; `done` resolves then. */
export class Connection {
  readonly done: Promise<void>;
  readonly #conn: Deno.Conn;
  readonly #reader: ConnReader;
  readonly #opts: ConnectionOptions;
  #idle = true;
  #closed = false;
  /** Called when the client is found gone while a request runs. */
  #onGone: (() => void) | null = null;

  constructor(conn: Deno.Conn, options: ConnectionOptions) {
    this.#conn = conn;
    this.#reader = new ConnReader(conn);
    this.#opts = options;
    this.done = this.#run();
  }

  /** Whether it waits for a request (no request being read or answered). */
  get idle(): boolean {
    return this.#idle;
  }

  /** Closes it now if idle; a busy connection closes after its response (see `closing`). */
  closeIfIdle(): void {
    if (this.#idle) this.#close();
  }

  async #run(): Promise<void> {
    const acceptedAt = performance.now();
    let first = true;
    try {
      for (;;) {
        const head = await this.#readHead(first ? acceptedAt : null);
        if (!head) return;
        first = false;
        this.#idle = false;
        const keep = await this.#exchange(head);
        this.#idle = true;
        if (!keep || this.#opts.closing()) return;
      }
    } catch (e) {
      if (e instanceof ProtocolError) {
        this.#opts.onEvent?.("bad_request", e.message);
        await this.#send(errorResponse(e.status, `Bad request: ${e.message}`, "bad_request")).catch(() => {});
        await this.#linger();
      }
      // anything else is the connection failing (reset, closed at shutdown): nothing to answer
    } finally {
      this.#close();
    }
  }

  /** The next request head, or null when the connection should close without an answer. */
  async #readHead(acceptedAt: number | null): Promise<RequestHead | null> {
    const r = this.#reader, o = this.#opts;
    if (!r.buffered) {
      const deadline = acceptedAt === null
        ? performance.now() + o.idleTimeoutMs
        : acceptedAt + o.headerTimeoutMs;
      try {
        if (!(await r.fill(deadline))) return null;
      } catch (e) {
        if (!(e instanceof ReadTimeout)) throw e;
        o.onEvent?.(acceptedAt === null ? "idle_timeout" : "header_timeout", "no request");
        return null;
      }
    }
    const deadline = (acceptedAt ?? performance.now()) + o.headerTimeoutMs;
    for (;;) {
      const bytes = r.peek(MAX_HEAD_BYTES + 4);
      if (bytes.length >= 2 && bytes[0] === 13 && bytes[1] === 10) { // empty lines before a request
        r.skip(2);
        continue;
      }
      const end = headEnd(bytes);
      if (end >= 0) {
        const head = parseHead(bytes.subarray(0, end));
        r.skip(end + 4);
        return head;
      }
      if (bytes.length > MAX_HEAD_BYTES) {
        throw new ProtocolError(431, "the request head is larger than 16 KiB");
      }
      try {
        if (!(await r.fill(deadline))) return null; // closed mid-head: nobody to answer
      } catch (e) {
        if (!(e instanceof ReadTimeout)) throw e;
        o.onEvent?.("header_timeout", `${latin1(bytes.subarray(0, 64)).split("\r\n")[0]}...`);
        const msg = `The request head did not arrive within ${o.headerTimeoutMs / 1000} s`;
        await this.#send(errorResponse(408, msg, "request_timeout")).catch(() => {});
        return null;
      }
    }
  }

  /** Runs one request; resolves whether the connection stays open. */
  async #exchange(head: RequestHead): Promise<boolean> {
    const framing = bodyFraming(head);
    const expect = fieldList(head, "expect").map((v) => v.toLowerCase());
    if (expect.length && (expect.length > 1 || expect[0] !== "100-continue")) {
      throw new ProtocolError(417, `Expect ${expect.join(", ")} is not supported`);
    }
    let headers: Headers;
    try {
      headers = new Headers(head.fields as [string, string][]);
    } catch (e) {
      throw new ProtocolError(400, `header fields: ${(e as Error).message}`);
    }
    const url = this.#url(head, headers);
    const ac = new AbortController();
    let gone = false;
    let cancelResponse = () => {};
    this.#onGone = () => {
      if (gone) return;
      gone = true;
      ac.abort(new DOMException("The client closed the connection", "AbortError"));
      cancelResponse();
    };
    const body = framing.kind === "none" ? null : this.#body(framing, expect.length > 0, () => this.#watch());
    const bodyless = head.method === "GET" || head.method === "HEAD";
    if (!body) this.#watch();
    let request: Request;
    try {
      request = new Request(url, {
        method: head.method,
        headers,
        body: body && !bodyless ? this.#stream(body) : null,
        signal: ac.signal,
        // @ts-ignore: a streamed request body needs duplex "half" (not in every lib.dom yet)
        duplex: "half",
      });
    } catch (e) {
      throw new ProtocolError(400, (e as Error).message);
    }
    let response: Response;
    try {
      response = await this.#opts.handler(request);
    } catch {
      response = new Response(INTERNAL_ERROR, {
        status: 500,
        headers: { "content-type": "application/json" },
      });
    }
    let keep = wantsKeepAlive(head) && !this.#opts.closing();
    // what the handler left of the body is skipped (a little of it) or the connection closes; a body
    // the client was told to hold back (Expect: 100-continue) is never invited
    if (body && !body.done) keep &&= body.started && !body.broken && await this.#drain(body);
    const open = await this.#respond(head, response, keep, (f) => (cancelResponse = f));
    this.#onGone = null;
    if (gone) return false;
    if (!open) await this.#linger();
    return open;
  }

  /** The request URL: origin-form targets on the Host field (or the listen address). */
  #url(head: RequestHead, headers: Headers): string {
    const t = head.target;
    if (t.startsWith("/")) {
      const host = headers.get("host");
      const authority = host && HOST.test(host) ? host : this.#opts.authority;
      return `http://${authority}${t}`;
    }
    if (/^https?:\/\//i.test(t)) {
      try {
        return new URL(t).href;
      } catch { /* below */ }
    }
    throw new ProtocolError(400, "the request target is neither a path nor an absolute URL");
  }

  /** Watches for the client going away while the handler runs (one read; pipelined bytes stay queued). */
  #watch(): void {
    if (this.#reader.eof) return this.#onGone?.();
    this.#reader.watch().then(
      (got) => got === null && this.#onGone?.(),
      () => this.#onGone?.(),
    );
  }

  /** The body reader for `framing`; `onEnd` runs once it has all been read. */
  #body(framing: BodyFraming, expectContinue: boolean, onEnd: () => void): Body {
    const r = this.#reader, o = this.#opts;
    const deadline = performance.now() + o.bodyTimeoutMs;
    let continued = !expectContinue;
    let left = framing.kind === "length" ? framing.length : 0, read = 0;
    let state: "size" | "data" | "crlf" | "trailer" = "size";
    const fill = async (what: string) => {
      b.started = true;
      if (!continued) {
        continued = true;
        await this.#send(CONTINUE);
      }
      try {
        if (await r.fill(deadline)) return;
      } catch (e) {
        if (e instanceof ReadTimeout) {
          o.onEvent?.("body_timeout", `${read} bytes read`);
          throw new BodyError(408, `The request body did not arrive within ${o.bodyTimeoutMs / 1000} s`);
        }
        throw new BodyError(
          400,
          `The connection failed while the request body was read: ${(e as Error).message}`,
        );
      }
      throw new BodyError(400, `The request body ended early: ${what}`);
    };
    const line = async (max: number): Promise<string> => {
      for (;;) {
        const bytes = r.peek(max + 2);
        const at = bytes.indexOf(10);
        if (at >= 0) {
          if (at === 0 || bytes[at - 1] !== 13) throw new BodyError(400, "Malformed chunked body: bare LF");
          r.skip(at + 1);
          return latin1(bytes.subarray(0, at - 1));
        }
        if (bytes.length > max) throw new BodyError(400, "Malformed chunked body: a line is too long");
        await fill(`${read} bytes arrived, then the connection closed inside the chunked body`);
      }
    };
    const take = async (n: number) => {
      if (!r.buffered) {
        await fill(
          framing.kind === "length"
            ? `${read} of ${framing.length} bytes arrived`
            : `${read} bytes arrived, then the connection closed inside a chunk`,
        );
      }
      const got = r.take(n);
      read += got.length;
      return got;
    };
    const b: Body = {
      started: false,
      done: false,
      broken: false,
      next: async () => {
        if (b.done) return null;
        try {
          if (framing.kind === "length") {
            if (left === 0) return end();
            const got = await take(left);
            left -= got.length;
            return got;
          }
          for (;;) {
            if (state === "data") {
              if (left > 0) {
                const got = await take(left);
                left -= got.length;
                return got;
              }
              state = "crlf";
            }
            if (state === "crlf") {
              if ((await line(0)) !== "") {
                throw new BodyError(400, "Malformed chunked body: no CRLF after a chunk");
              }
              state = "size";
            }
            if (state === "size") {
              const m = /^([0-9A-Fa-f]{1,8})(?:[ \t]*;.*)?$/.exec(await line(1024));
              if (!m) throw new BodyError(400, "Malformed chunked body: bad chunk size line");
              left = parseInt(m[1], 16);
              state = left ? "data" : "trailer";
            }
            if (state === "trailer") {
              for (let n = 0; (await line(8192)) !== ""; n++) {
                if (n >= 32) throw new BodyError(400, "Malformed chunked body: too many trailer fields");
              }
              return end();
            }
          }
        } catch (e) {
          b.broken = true;
          if (!(e instanceof BodyError)) throw new BodyError(400, `The request body could not be read: ${e}`);
          if (e.status === 400) o.onEvent?.("body_error", e.message);
          throw e;
        }
      },
    };
    const end = () => {
      b.done = true;
      onEnd();
      return null;
    };
    return b;
  }

  /** The body as the pull-based stream a `Request` holds. */
  #stream(body: Body): ReadableStream<Uint8Array> {
    return new ReadableStream<Uint8Array>({
      async pull(controller) {
        try {
          const got = await body.next();
          if (got) controller.enqueue(got);
          else controller.close();
        } catch (e) {
          controller.error(e);
        }
      },
    }, { highWaterMark: 0 });
  }

  /** Reads and drops what the handler left of the body (at most DRAIN_MAX); whether it all went. */
  async #drain(body: Body): Promise<boolean> {
    let dropped = 0;
    try {
      for (let got = await body.next(); got; got = await body.next()) {
        dropped += got.length;
        if (dropped > DRAIN_MAX) return false;
      }
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Writes the response (`keep`: the connection may stay open); resolves whether it stays open: false
   * when it was asked to close, when the body is delimited by the close (a stream to an HTTP/1.0
   * client) or when the client went away.
   */
  async #respond(
    head: RequestHead,
    res: Response,
    keep: boolean,
    onCancel: (cancel: () => void) => void,
  ): Promise<boolean> {
    const status = res.status;
    const noBody = head.method === "HEAD" || status === 204 || status === 304 || status < 200;
    const fields: [string, string][] = [];
    for (const [k, v] of res.headers) if (!SKIPPED_HEADERS.has(k)) fields.push([k, v]);
    fields.push(["date", httpDate()]);
    const reader = res.body?.getReader();
    onCancel(() => reader?.cancel().catch(() => {}));
    const conn = (k: boolean): [string, string][] =>
      k ? (head.minor === 0 ? [["connection", "keep-alive"]] : []) : [["connection", "close"]];
    try {
      if (noBody || !reader) {
        await reader?.cancel();
        const length: [string, string][] = noBody ? [] : [["content-length", "0"]];
        await this.#send(responseHead(status, [...fields, ...length, ...conn(keep)]));
        return keep;
      }
      const streamed = (res.headers.get("content-type") ?? "").startsWith("text/event-stream");
      const parts: Uint8Array[] = [];
      let size = 0;
      if (!streamed) {
        for (;;) {
          const r = await reader.read();
          if (r.done) {
            const all = concat(
              responseHead(status, [...fields, ["content-length", String(size)], ...conn(keep)]),
              parts,
            );
            await this.#send(all);
            return keep;
          }
          parts.push(r.value);
          size += r.value.length;
          if (size > BUFFER_RESPONSE) break;
        }
      }
      // streamed: chunked on HTTP/1.1, delimited by the close on HTTP/1.0
      const chunked = head.minor === 1;
      const framing: [string, string][] = chunked ? [["transfer-encoding", "chunked"]] : [];
      const k = keep && chunked;
      await this.#send(
        concat(
          responseHead(status, [...fields, ...framing, ...conn(k)]),
          parts.map((p) => chunked ? chunk(p) : p),
        ),
      );
      for (;;) {
        const r = await reader.read();
        if (this.#closed) return false;
        if (r.done) break;
        if (r.value.length) await this.#send(chunked ? chunk(r.value) : r.value);
      }
      if (chunked) await this.#send(LAST_CHUNK);
      return k;
    } catch {
      // the client went away (a failed or stalled write), or the body failed mid-stream
      this.#onGone?.();
      await reader?.cancel().catch(() => {});
      return false;
    }
  }

  /** Writes all of `bytes`; a write that stalls for the body timeout closes the connection. */
  async #send(bytes: Uint8Array): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const stall = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        this.#opts.onEvent?.("write_timeout", `${bytes.length} bytes unsent`);
        this.#close();
        reject(new Error("write stalled"));
      }, this.#opts.bodyTimeoutMs);
    });
    stall.catch(() => {});
    try {
      for (let at = 0; at < bytes.length;) {
        at += await Promise.race([this.#conn.write(bytes.subarray(at)), stall]);
      }
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Closes the write side and drops what the client still sends for a moment before closing: an
   * immediate close with unread input resets the connection, and the client may lose the answer.
   */
  async #linger(): Promise<void> {
    if (this.#closed) return;
    try {
      await this.#conn.closeWrite();
      const until = performance.now() + LINGER_MS;
      for (let n = 0; n < 64; n++) {
        this.#reader.skip(this.#reader.buffered);
        if (!(await this.#reader.fill(until))) return;
      }
    } catch { /* timed out or reset: close */ }
  }

  #close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#onGone?.();
    try {
      this.#conn.close();
    } catch { /* already closed */ }
  }
}

function concat(first: Uint8Array, rest: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(first.length + rest.reduce((n, p) => n + p.length, 0));
  out.set(first);
  let at = first.length;
  for (const p of rest) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

const INTERNAL_ERROR = JSON.stringify({
  error: { message: "Internal server error", type: "server_error", param: null, code: "internal_error" },
});

/**
 * HTTP/1.1 wire format for the server (RFC 9112), strict where leniency lets a request be read two
 * ways behind a proxy: the request head (request line and header fields), the body's framing, a
 * chunked-body decoder, and response heads. Pure functions over bytes; no I/O.
 *
 * @module
 */

/** A request head as read from the wire. */
export interface RequestHead {
  readonly method: string;
  /** The request target as sent (origin-form `/path?query`, or absolute-form). */
  readonly target: string;
  /** 0 for HTTP/1.0, 1 for HTTP/1.1. */
  readonly minor: 0 | 1;
  /** Field lines in order, names lowercased, values trimmed (bytes as Latin-1 characters). */
  readonly fields: readonly (readonly [string, string])[];
}

/** How the request body is delimited. */
export type BodyFraming =
  | { readonly kind: "none" }
  | { readonly kind: "length"; readonly length: number }
  | { readonly kind: "chunked" };

/** A request the server answers with `status` and closes the connection (the framing may be lost). */
export class ProtocolError extends Error {
  override name = "ProtocolError";
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

/** Most bytes of a request head (request line and fields). */
export const MAX_HEAD_BYTES = 16 * 1024;
/** Most header field lines. */
export const MAX_FIELDS = 100;

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
// field values: visible Latin-1 characters, spaces and tabs (no NUL, CR, LF or other controls)
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

/** Index of the CRLF CRLF that ends a head in `bytes`, or -1. */
export function headEnd(bytes: Uint8Array, from = 0): number {
  for (let i = Math.max(0, from - 3); i + 3 < bytes.length; i++) {
    if (bytes[i] === 13 && bytes[i + 1] === 10 && bytes[i + 2] === 13 && bytes[i + 3] === 10) return i;
  }
  return -1;
}

/** Bytes as Latin-1 characters (one character per byte: what a ByteString header holds). */
export function latin1(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 8192) {
    s += String.fromCharCode(...bytes.subarray(i, Math.min(i + 8192, bytes.length)));
  }
  return s;
}

/**
 * Parses a request head (without its final CRLF CRLF).
 *
 * @throws {ProtocolError} 400 for a malformed line or field, 505 for another HTTP version, 431 for
 * too many fields
 */
export function parseHead(bytes: Uint8Array): RequestHead {
  const text = latin1(bytes);
  const lines = text.split("\r\n");
  for (const line of lines) {
    if (line.includes("\n") || line.includes("\r")) throw new ProtocolError(400, "bare CR or LF in the head");
  }
  const m = /^([^ ]+) ([^ ]+) HTTP\/(\d)\.(\d)$/.exec(lines[0]);
  if (!m) throw new ProtocolError(400, "malformed request line");
  const [, method, target, major, minor] = m;
  if (!TOKEN.test(method)) throw new ProtocolError(400, "malformed method");
  if (major !== "1" || (minor !== "0" && minor !== "1")) {
    throw new ProtocolError(505, `HTTP/${major}.${minor} is not supported (HTTP/1.1 and HTTP/1.0 are)`);
  }
  if (!/^[\x21-\x7e]+$/.test(target)) throw new ProtocolError(400, "malformed request target");
  if (lines.length - 1 > MAX_FIELDS) throw new ProtocolError(431, `more than ${MAX_FIELDS} header fields`);
  const fields: [string, string][] = [];
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i];
    if (line[0] === " " || line[0] === "\t") throw new ProtocolError(400, "obsolete line folding in a field");
    const colon = line.indexOf(":");
    const name = line.slice(0, colon);
    if (colon <= 0 || !TOKEN.test(name)) throw new ProtocolError(400, "malformed header field name");
    const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, "");
    if (!FIELD_VALUE.test(value)) throw new ProtocolError(400, `control character in header field ${name}`);
    fields.push([name.toLowerCase(), value]);
  }
  return { method, target, minor: minor === "1" ? 1 : 0, fields };
}

/** The values of field `name` (lowercase), comma-joined lists split. */
export function fieldList(head: RequestHead, name: string): string[] {
  return head.fields.filter(([n]) => n === name).flatMap(([, v]) => v.split(","))
    .map((v) => v.trim()).filter(Boolean);
}

/**
 * The body framing of a request: refuses what could be read two ways (Content-Length with
 * Transfer-Encoding, differing lengths) and codings other than chunked.
 *
 * @throws {ProtocolError} 400 or 501
 */
export function bodyFraming(head: RequestHead): BodyFraming {
  const te = fieldList(head, "transfer-encoding").map((v) => v.toLowerCase());
  const lengths = head.fields.filter(([n]) => n === "content-length").map(([, v]) => v);
  if (te.length) {
    if (lengths.length) throw new ProtocolError(400, "both Transfer-Encoding and Content-Length");
    if (head.minor === 0) throw new ProtocolError(400, "Transfer-Encoding in an HTTP/1.0 request");
    if (te.length !== 1 || te[0] !== "chunked") {
      throw new ProtocolError(501, `Transfer-Encoding ${te.join(", ")} is not supported (chunked is)`);
    }
    return { kind: "chunked" };
  }
  if (!lengths.length) return { kind: "none" };
  const values = new Set(lengths.flatMap((v) => v.split(",")).map((v) => v.trim()));
  const [only] = values;
  if (values.size !== 1 || !/^\d{1,15}$/.test(only)) throw new ProtocolError(400, "malformed Content-Length");
  const length = Number(only);
  return length ? { kind: "length", length } : { kind: "none" };
}

/** Whether the connection may stay open after this request (HTTP/1.1 default, 1.0 on request). */
export function wantsKeepAlive(head: RequestHead): boolean {
  const conn = fieldList(head, "connection").map((v) => v.toLowerCase());
  return head.minor === 1 ? !conn.includes("close") : conn.includes("keep-alive");
}

const REASONS: Record<number, string> = {
  100: "Continue",
  200: "OK",
  201: "Created",
  204: "No Content",
  304: "Not Modified",
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  408: "Request Timeout",
  413: "Content Too Large",
  415: "Unsupported Media Type",
  417: "Expectation Failed",
  429: "Too Many Requests",
  431: "Request Header Fields Too Large",
  499: "Client Closed Request",
  500: "Internal Server Error",
  501: "Not Implemented",
  503: "Service Unavailable",
  504: "Gateway Timeout",
  505: "HTTP Version Not Supported",
};

const encoder = new TextEncoder();

/** A response head: status line and `headers` (each value on its own line), then CRLF CRLF. */
export function responseHead(status: number, headers: Iterable<readonly [string, string]>): Uint8Array {
  let s = `HTTP/1.1 ${status} ${REASONS[status] ?? "Unknown"}\r\n`;
  for (const [k, v] of headers) s += `${k}: ${v}\r\n`;
  return encoder.encode(s + "\r\n");
}

/** `data` as one chunk of a chunked body. */
export function chunk(data: Uint8Array): Uint8Array {
  const size = encoder.encode(`${data.length.toString(16)}\r\n`);
  const out = new Uint8Array(size.length + data.length + 2);
  out.set(size);
  out.set(data, size.length);
  out.set([13, 10], size.length + data.length);
  return out;
}

/** The end of a chunked body (no trailers). */
export const LAST_CHUNK: Uint8Array = encoder.encode("0\r\n\r\n");

/**
 * A small error response that needs no application: JSON in OpenAI's error shape, closing the
 * connection (for requests the server cannot read, and connections it cannot take).
 */
export function errorResponse(
  status: number,
  message: string,
  code: string,
  extra: Record<string, string> = {},
): Uint8Array {
  const type = status >= 500 ? "server_error" : "invalid_request_error";
  const body = encoder.encode(JSON.stringify({ error: { message, type, param: null, code } }));
  const head = responseHead(status, [
    ["content-type", "application/json"],
    ["content-length", String(body.length)],
    ["connection", "close"],
    ...Object.entries(extra),
  ]);
  const out = new Uint8Array(head.length + body.length);
  out.set(head);
  out.set(body, head.length);
  return out;
}

/**
 * A request body that could not be read: it ended early, its chunked framing is malformed, it did
 * not arrive in time (408), or the connection failed. The request is answered with `status` (if
 * the client is still there to read it) and the connection closed.
 */
export class BodyError extends Error {
  override name = "BodyError";
  constructor(readonly status: 400 | 408, message: string) {
    super(message);
  }
}

/** The HTTP date of `now` (IMF-fixdate), as the Date header wants it. */
export function httpDate(now = Date.now()): string {
  return new Date(now).toUTCString();
}

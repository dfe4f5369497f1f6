/**
 * Reads a request body and validates it as JSON with a zod schema; every failure is a 400 that
 * names the offending field as `param` (`messages[0].content`), and a body that cannot be read (it
 * ends early, its chunked framing is malformed, the client aborts the upload) is a 400 too (408
 * when it did not arrive in time), never a 500.
 *
 * @module
 */
import type { Context } from "hono";
import type { z } from "zod";
import { ApiError, bodyReadError } from "./errors.ts";

const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false });

/** `["messages", 0, "content"]` -> `"messages[0].content"`. */
export function paramName(path: readonly PropertyKey[]): string | null {
  let out = "";
  for (const key of path) {
    out += typeof key === "number" ? `[${key}]` : `${out ? "." : ""}${String(key)}`;
  }
  return out || null;
}

/** The 400 for the first problem zod found. */
export function fromZodError(error: z.ZodError): ApiError {
  const issue = error.issues[0];
  const param = paramName(issue.path);
  const message = issue.message;
  return ApiError.badRequest(
    param ? `Invalid '${param}': ${message}` : `Invalid request body: ${message}`,
    param,
  );
}

/**
 * Parses the body as strict UTF-8 JSON matching `schema`; unknown fields are dropped. `inspect`
 * sees the parsed JSON before the schema does (to refuse or log fields the schema drops).
 *
 * @example
 * ```ts ignore
 * const body = await readJson(c, TokenizeRequest); // throws ApiError(400) on bad input
 * ```
 */
export async function readJson<S extends z.ZodType>(
  c: Context,
  schema: S,
  inspect?: (json: unknown) => void,
): Promise<z.infer<S>> {
  const bytes = await readBody(c.req.raw);
  let text: string;
  try {
    text = strictUtf8.decode(bytes);
  } catch {
    throw ApiError.badRequest("The request body is not valid UTF-8", null, "invalid_body");
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    const why = (e as Error).message.slice(0, 200);
    throw ApiError.badRequest(`The request body is not valid JSON: ${why}`, null, "invalid_json");
  }
  inspect?.(json);
  const result = schema.safeParse(json);
  if (!result.success) throw fromZodError(result.error);
  return result.data;
}

/**
 * The whole body of `request` (empty when it has none). Over `maxBytes` is a 413; a body that
 * cannot be read is the 400 (or 408) of {@linkcode bodyReadError}.
 */
export async function readBody(request: Request, maxBytes = Infinity): Promise<Uint8Array<ArrayBuffer>> {
  if (!request.body) return new Uint8Array(0);
  const reader = request.body.getReader();
  const parts: Uint8Array[] = [];
  let size = 0;
  try {
    for (;;) {
      const r = await reader.read();
      if (r.done) break;
      size += r.value.length;
      if (size > maxBytes) {
        reader.cancel().catch(() => {});
        throw tooLarge(maxBytes);
      }
      parts.push(r.value);
    }
  } catch (e) {
    throw e instanceof ApiError ? e : bodyReadError(e);
  }
  const out = new Uint8Array(size);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** The 413 for a body over `maxBytes`. */
export const tooLarge = (maxBytes: number): ApiError =>
  new ApiError(413, "invalid_request_error", `The request body is larger than ${maxBytes} bytes`, {
    code: "request_too_large",
  });

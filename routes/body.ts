/**
 * Reads a JSON request body and validates it with a zod schema; every failure is a 400 that names
 * the offending field as `param` (`messages[0].content`).
 *
 * @module
 */
import type { Context } from "hono";
import type { z } from "zod";
import { ApiError } from "./errors.ts";

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
  const bytes = new Uint8Array(await c.req.arrayBuffer());
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

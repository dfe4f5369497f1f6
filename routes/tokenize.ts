/**
 * `POST /tokenize` and `POST /detokenize` in llama-server's shapes: `content` -> `tokens` (ids, or
 * `{id, piece}` with `with_pieces`, a piece being a string or, when not valid UTF-8, its bytes);
 * `tokens` -> `content`.
 *
 * @module
 */
import { Hono } from "hono";
import { readJson } from "./body.ts";
import type { AppEnv } from "./context.ts";
import { checkIds } from "./generation.ts";
import { DetokenizeRequest, TokenizeRequest } from "./schemas.ts";

/** The tokenizer routes. */
export function tokenizeRoutes(): Hono<AppEnv> {
  return new Hono<AppEnv>()
    .post("/tokenize", async (c) => {
      const body = await readJson(c, TokenizeRequest);
      const tok = c.get("engine").tokenizer;
      const ids = tok.encode(body.content, {
        addBos: body.add_special ?? false,
        parseSpecial: body.parse_special ?? true,
      });
      return c.json({ tokens: body.with_pieces ? ids.map((id) => ({ id, piece: tok.piece(id) })) : ids });
    })
    .post("/detokenize", async (c) => {
      const body = await readJson(c, DetokenizeRequest);
      const engine = c.get("engine");
      checkIds(engine, body.tokens, "tokens");
      return c.json({ content: engine.tokenizer.decode(body.tokens) });
    });
}

/**
 * A synthetic model whose greedy output is an HTML payload, so the browser test gets markup
 * through the real server's output stream. The tiny model is edited in two places:
 *
 * - `output_norm.weight` is all zeros: the final hidden state is 0, every logit is exactly 0, and a
 *   greedy sampler picks the lowest id (ties go to the lowest id), token 0, at every step;
 * - token 0's text becomes the payload (and the byte token it held moves to the last id, a reserved
 *   special before, so the vocabulary keeps every byte and the tokenizer loads as usual).
 *
 * The model then writes the payload again and again until `max_tokens` (it never samples an end
 * token at temperature 0), one SSE chunk per token.
 */
import { BYTE_TO_CHAR } from "../../engine/text/byte_unicode.ts";
import { TokenType } from "../../engine/text/tokenizer.ts";
import { openGguf } from "../../engine/format/gguf.ts";
import { rewriteGguf } from "../_gguf_edit.ts";
import { tinyModel } from "../_models.ts";
import type { SynthOptions } from "../../scripts/synth_model.ts";

/** Byte-level BPE text of `s` (as `tokenizer.ggml.tokens` stores normal tokens). */
const byteLevel = (s: string) => Array.from(new TextEncoder().encode(s), (b) => BYTE_TO_CHAR[b]).join("");

/** Writes the edited model to `out` and returns its path. */
export async function htmlModel(
  payload: string,
  out: string,
  opts: Partial<Omit<SynthOptions, "out">> = {},
): Promise<string> {
  const src = await tinyModel(opts);
  const g = openGguf(src);
  const tokens = [...g.metadata.get("tokenizer.ggml.tokens") as string[]];
  const types = Int32Array.from(g.metadata.get("tokenizer.ggml.token_type") as ArrayLike<number>);
  const last = tokens.length - 1;
  if (types[0] !== TokenType.NORMAL || types[last] !== TokenType.CONTROL) {
    throw new Error(`${src}: expected a normal token at id 0 and a control token at id ${last}`);
  }
  tokens[last] = tokens[0];
  types[last] = TokenType.NORMAL;
  tokens[0] = byteLevel(payload);
  return rewriteGguf(
    src,
    out,
    (tensors) => {
      const norm = tensors.find((t) => t.name === "output_norm.weight");
      if (!norm) throw new Error(`${src} has no output_norm.weight`);
      norm.data.fill(0);
      return tensors;
    },
    [
      ["tokenizer.ggml.tokens", { type: "array", elem: "string", value: tokens }],
      ["tokenizer.ggml.token_type", { type: "array", elem: "i32", value: types }],
    ],
  );
}

/**
 * Incremental detokenization for streaming: token ids in, complete UTF-8 text out.
 *
 * A byte-level token can end in the middle of a character (an emoji is often three or four byte
 * tokens); the decoder holds such bytes back until the character is complete, so a streamed delta is
 * never a broken sequence. The concatenation of all deltas plus {@linkcode IncrementalDecoder.flush}
 * equals `tokenizer.decode(allIds, options)`: bytes that can never form a character become U+FFFD
 * (the WHATWG decoder's rule), and so does a partial sequence cut off by a rendered special token or
 * by the end of the stream.
 *
 * @module
 */

import { type DecodeOptions, Tokenizer, TokenType } from "./tokenizer.ts";

/**
 * Turns a stream of token ids into text deltas that are always complete UTF-8.
 *
 * @example
 * ```ts
 * import { IncrementalDecoder } from "./detokenizer.ts";
 * import type { Tokenizer } from "./tokenizer.ts";
 * declare const tok: Tokenizer;
 * const dec = new IncrementalDecoder(tok, { skipSpecial: true });
 * const ids = tok.encode("I 👍🏽 it", { addBos: false });
 * const text = ids.map((id) => dec.push(id)).join("") + dec.flush(); // "I 👍🏽 it"
 * ```
 */
export class IncrementalDecoder {
  readonly #tokenizer: Tokenizer;
  readonly #skipSpecial: boolean;
  #utf8 = new TextDecoder("utf-8", { ignoreBOM: true }); // a leading U+FEFF is text, not a BOM

  constructor(tokenizer: Tokenizer, options: DecodeOptions = {}) {
    this.#tokenizer = tokenizer;
    this.#skipSpecial = options.skipSpecial ?? false;
  }

  /** Adds one token; returns the text it completes (possibly ""). */
  push(id: number): string {
    const tok = this.#tokenizer;
    const type = tok.tokenType(id);
    if ((type === TokenType.CONTROL && this.#skipSpecial) || type === TokenType.UNUSED) return "";
    if (tok.isSpecial(id)) return this.#utf8.decode() + tok.tokenString(id);
    return this.#utf8.decode(tok.tokenBytes(id), { stream: true });
  }

  /** Ends the stream: returns U+FFFD for a dangling partial character, else "". Reusable afterwards. */
  flush(): string {
    return this.#utf8.decode();
  }
}

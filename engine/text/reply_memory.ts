/**
 * The token ids of recent replies, by their text: when a client sends a reply back as history, the
 * chat template uses the ids the model generated instead of re-tokenizing the text, so the prompt
 * matches the KV cache of the turn that wrote it token for token (re-tokenizing can split the same
 * text differently: the model is free to write "the" + "re" where the tokenizer would say "there").
 *
 * Only ids that decode to exactly the text the client received are kept (no special tokens; the
 * tokens past a stop string are dropped). They are found by the text as the template trims it, and
 * keep the whitespace the model wrote around it: the history is then exactly what the model wrote
 * and what its KV cache holds.
 * Least recently used replies go first once the memory holds more than `maxBytes`, counted as the
 * ids, the text key and a fixed cost per entry, so that many short replies are bounded as well as
 * a few long ones.
 *
 * @module
 */
import { pyStrip } from "./chat_template.ts";
import type { Tokenizer } from "./tokenizer.ts";

/** Tokens past the text (a stop string's) looked at. */
const EDGE = 8;

/** Default budget of a {@linkcode ReplyMemory}: thousands of long replies. */
export const REPLY_MEMORY_BYTES = 16 * 2 ** 20;

/** What one entry costs beyond its ids and key: the Map entry, the typed array and string headers. */
const ENTRY_BYTES = 128;

/** Bytes an entry is counted as: 4 per id, 2 per UTF-16 unit of its key, plus the fixed cost. */
const entryBytes = (key: string, ids: Int32Array) => ENTRY_BYTES + 4 * ids.length + 2 * key.length;

/**
 * Replies' token ids by trimmed text.
 *
 * @example
 * ```ts ignore
 * const memory = new ReplyMemory(tokenizer);
 * memory.remember(generatedIds, " The jury said.\n");
 * memory.lookup("The jury said."); // generatedIds (the template trims the text it looks up)
 * ```
 */
export class ReplyMemory {
  readonly maxBytes: number;
  readonly #tokenizer: Tokenizer;
  readonly #replies = new Map<string, Int32Array>();
  #bytes = 0;

  constructor(tokenizer: Tokenizer, maxBytes = REPLY_MEMORY_BYTES) {
    this.#tokenizer = tokenizer;
    this.maxBytes = maxBytes;
  }

  /** Replies held. */
  get size(): number {
    return this.#replies.size;
  }

  /** What the replies held are counted as (never more than `maxBytes`). */
  get bytes(): number {
    return this.#bytes;
  }

  /** Keeps `ids` (a generated reply) for `text`, what the client received; false if they disagree. */
  remember(ids: readonly number[], text: string): boolean {
    const trimmed = pyStrip(text);
    if (!trimmed) return false;
    const kept = this.#prefix(ids, text);
    if (!kept || entryBytes(trimmed, kept) > this.maxBytes) return false;
    this.#drop(trimmed);
    this.#replies.set(trimmed, kept);
    this.#bytes += entryBytes(trimmed, kept);
    for (const [key, value] of this.#replies) {
      if (this.#bytes <= this.maxBytes) break;
      this.#replies.delete(key);
      this.#bytes -= entryBytes(key, value);
    }
    return true;
  }

  /** The ids of the reply whose trimmed text is `content`, if remembered. */
  lookup(content: string): readonly number[] | undefined {
    const ids = this.#replies.get(content);
    if (!ids) return undefined;
    this.#replies.delete(content);
    this.#replies.set(content, ids);
    return Array.from(ids);
  }

  #drop(key: string): void {
    const old = this.#replies.get(key);
    if (!old) return;
    this.#replies.delete(key);
    this.#bytes -= entryBytes(key, old);
  }

  /** The longest `ids[0, b)` (b within the last few) that decodes to exactly `text`; null if none. */
  #prefix(ids: readonly number[], text: string): Int32Array | null {
    for (let b = ids.length; b > 0 && b >= ids.length - EDGE; b--) {
      if (this.#tokenizer.decode(ids.slice(0, b)) === text) return Int32Array.from(ids.slice(0, b));
    }
    return null;
  }
}

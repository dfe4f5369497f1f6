/**
 * Log-probabilities in OpenAI's two shapes. The engine gives token ids; these turn them into
 * token text (lossy where a token is a partial UTF-8 character) plus exact bytes.
 *
 * @module
 */
import type { LogprobInfo } from "../engine/run/sequence.ts";
import type { Tokenizer } from "../engine/text/tokenizer.ts";

const lossy = new TextDecoder("utf-8", { ignoreBOM: true });
/** OpenAI reports impossible tokens as -9999 rather than -Infinity (which JSON cannot hold). */
const finite = (x: number) => (Number.isFinite(x) ? x : -9999);

/** The text of one token: its piece, or its bytes decoded with U+FFFD for partial characters. */
export function tokenText(tok: Tokenizer, id: number): string {
  const piece = tok.piece(id);
  return typeof piece === "string" ? piece : lossy.decode(tok.tokenBytes(id));
}

/** One entry of the chat shape `logprobs.content[]`. */
export interface ChatLogprob {
  token: string;
  logprob: number;
  bytes: number[];
  top_logprobs: { token: string; logprob: number; bytes: number[] }[];
}

/** The chat entry of a generated token. */
export function chatLogprob(tok: Tokenizer, id: number, info: LogprobInfo): ChatLogprob {
  const one = (id: number, logprob: number) => ({
    token: tokenText(tok, id),
    logprob: finite(logprob),
    bytes: Array.from(tok.tokenBytes(id)),
  });
  return { ...one(id, info.logprob), top_logprobs: info.top.map((t) => one(t.id, t.logprob)) };
}

/** The completions shape (legacy): parallel arrays. */
export interface CompletionLogprobs {
  tokens: string[];
  token_logprobs: (number | null)[];
  top_logprobs: (Record<string, number> | null)[];
  text_offset: number[];
}

/**
 * Completions-shape log-probabilities of `ids` whose text starts at character `offset` of the
 * choice's text (negative: that many characters of token text are not in it, as a BOS the server
 * added); `infos[i]` null gives null entries (the first prompt token of an echo).
 */
export function completionLogprobs(
  tok: Tokenizer,
  ids: readonly number[],
  infos: readonly (LogprobInfo | null)[],
  offset: number,
): CompletionLogprobs {
  const out: CompletionLogprobs = { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
  ids.forEach((id, i) => {
    const text = tokenText(tok, id), info = infos[i];
    out.tokens.push(text);
    out.token_logprobs.push(info ? finite(info.logprob) : null);
    out.top_logprobs.push(
      info ? Object.fromEntries(info.top.map((t) => [tokenText(tok, t.id), finite(t.logprob)])) : null,
    );
    out.text_offset.push(Math.max(0, offset));
    offset += text.length;
  });
  return out;
}

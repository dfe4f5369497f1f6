/**
 * The chat format BitNet b1.58 2B4T was trained on (its Hugging Face `tokenizer_config.json`):
 *
 * ```
 * <|begin_of_text|>System: {system}<|eot_id|>User: {user}<|eot_id|>Assistant: {reply}<|eot_id|>...Assistant:
 * ```
 *
 * Each message is `Capitalized(role) + ": " + content.trim() + "<|eot_id|>"` (trim as Jinja's `trim`,
 * i.e. Python's `str.strip()`), then `"Assistant: "` when a generation prompt is wanted. BOS is not
 * part of the template: the tokenizer adds exactly one.
 *
 * The template embedded in the official GGUF is ignored on purpose: it is a placeholder written by
 * the converter (`"Human: " ... "\n\nBITNETAssistant: "` followed by EOS, system messages dropped)
 * that the model was never trained on; with it the model loops or never stops (spec §4.4, §6.3).
 *
 * Tool results (this server's tool-call format, see `tool_calls.ts`; 2B4T has none of its own) are
 * turns of a fourth role, `Tool: {name} returned: {content}<|eot_id|>`.
 *
 * Injection: {@linkcode encodeChat} tokenizes message text with `parseSpecial: false` and inserts
 * the template's own `<|eot_id|>` by id, so a user who types `<|eot_id|>` gets plain text tokens,
 * never a turn boundary.
 *
 * Replies: an assistant message is tokenized as `"Assistant: "` and then its content on its own,
 * exactly as the model saw it when it wrote the reply after the generation prompt (and as the
 * embedded model was trained on its final turn). A caller that remembers the tokens it generated
 * can pass them back ({@linkcode ChatTemplateOptions.replyTokens}), so a conversation's history is
 * token for token what its KV cache holds and a follow-up turn recomputes only its new message.
 *
 * @module
 */

import type { Tokenizer } from "./tokenizer.ts";

/** The roles the 2B4T format knows, and `tool` for tool results. */
export type ChatRole = "system" | "user" | "assistant" | "tool";

/** One chat message. */
export interface ChatMessage {
  role: ChatRole;
  content: string;
}

/** Options of the chat template functions. */
export interface ChatTemplateOptions {
  /** Append `"Assistant: "` so the model writes the next reply; default true. */
  addGenerationPrompt?: boolean;
  /**
   * The token ids to use for an assistant message's (trimmed) content, when the caller knows them
   * (the ids it generated for that text); undefined: tokenize the text. The ids must decode to
   * that text, with at most the whitespace the model wrote around it.
   */
  replyTokens?: (content: string) => readonly number[] | undefined;
}

/**
 * A piece of a rendered chat: plain text (`reply`: an assistant message's content), or the
 * end-of-turn special token.
 */
export type ChatSegment = { kind: "text"; text: string; reply?: boolean } | { kind: "eot" };

const EOT_TEXT = "<|eot_id|>";
const ROLE_PREFIX: Readonly<Record<ChatRole, string>> = {
  system: "System: ",
  user: "User: ",
  assistant: "Assistant: ",
  tool: "Tool: ",
};
// Python's str.strip() whitespace (str.isspace), which differs from String.prototype.trim().
const PY_SPACE = "\\t-\\r\\x1c-\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";
const PY_STRIP = new RegExp(`^[${PY_SPACE}]+|[${PY_SPACE}]+$`, "g");

/** Python's `str.strip()` (Jinja's `trim`): the template's trimming of message content. */
export function pyStrip(text: string): string {
  return text.replace(PY_STRIP, "");
}

/**
 * Renders messages as segments: text to tokenize as plain text, and end-of-turn markers.
 *
 * @example
 * ```ts
 * import { chatSegments } from "./chat_template.ts";
 * chatSegments([{ role: "user", content: " Hi " }]);
 * // [{ kind: "text", text: "User: Hi" }, { kind: "eot" }, { kind: "text", text: "Assistant: " }]
 * ```
 */
export function chatSegments(
  messages: readonly ChatMessage[],
  options: ChatTemplateOptions = {},
): ChatSegment[] {
  const out: ChatSegment[] = [];
  messages.forEach((m, i) => {
    const prefix = Object.hasOwn(ROLE_PREFIX, m?.role) ? ROLE_PREFIX[m.role] : undefined;
    if (prefix === undefined) {
      throw new TypeError(
        `Cannot render chat: messages[${i}].role is ${
          JSON.stringify(m?.role)
        }, expected "system", "user", "assistant" or "tool"`,
      );
    }
    if (typeof m.content !== "string") {
      throw new TypeError(
        `Cannot render chat: messages[${i}].content is ${typeof m.content}, expected a string`,
      );
    }
    const content = pyStrip(m.content);
    if (m.role === "assistant") {
      out.push({ kind: "text", text: prefix }, { kind: "text", text: content, reply: true });
    } else out.push({ kind: "text", text: prefix + content });
    out.push({ kind: "eot" });
  });
  if (options.addGenerationPrompt ?? true) out.push({ kind: "text", text: ROLE_PREFIX.assistant });
  return out;
}

/**
 * Renders messages to the template string (for logs and `/apply-template`-style endpoints). Do not
 * tokenize this string with `parseSpecial: true`: use {@linkcode encodeChat}, which keeps user text
 * from being read as special tokens.
 *
 * @example
 * ```ts
 * import { renderChat } from "./chat_template.ts";
 * renderChat([{ role: "system", content: "Be brief." }, { role: "user", content: "Hi" }]);
 * // "System: Be brief.<|eot_id|>User: Hi<|eot_id|>Assistant: "
 * ```
 */
export function renderChat(messages: readonly ChatMessage[], options: ChatTemplateOptions = {}): string {
  return chatSegments(messages, options).map((s) => s.kind === "eot" ? EOT_TEXT : s.text).join("");
}

/**
 * Renders and tokenizes a chat: one BOS (if the model adds BOS), message text as plain text, and the
 * end-of-turn token by id (`tokenizer.eotId`, else EOS when the vocabulary has no end-of-turn token).
 * Token for token the same as the Hugging Face tokenizer on the rendered string when no message
 * contains special-token text, except that an assistant message's content is tokenized apart from
 * its `"Assistant: "` prefix (see the module doc), or given by `options.replyTokens`.
 *
 * @example
 * ```ts
 * import { encodeChat } from "./chat_template.ts";
 * import type { Tokenizer } from "./tokenizer.ts";
 * declare const tok: Tokenizer;
 * encodeChat(tok, [{ role: "user", content: "Hi" }]); // [128000, 1502, 25, 21694, 128009, 72803, 25, 220]
 * ```
 */
export function encodeChat(
  tokenizer: Tokenizer,
  messages: readonly ChatMessage[],
  options: ChatTemplateOptions = {},
): number[] {
  const eot = tokenizer.eotId >= 0 ? tokenizer.eotId : tokenizer.eosId;
  const ids: number[] = tokenizer.addBos ? [tokenizer.bosId] : [];
  for (const seg of chatSegments(messages, options)) {
    if (seg.kind === "eot") ids.push(eot);
    else {
      const known = seg.reply ? options.replyTokens?.(seg.text) : undefined;
      for (const id of known ?? tokenizer.encode(seg.text, { addBos: false, parseSpecial: false })) {
        ids.push(id);
      }
    }
  }
  return ids;
}

/**
 * Token ids that end a chat reply: end-of-turn (`<|eot_id|>`, 128009) and end-of-text
 * (`<|end_of_text|>`, 128001, the GGUF's EOS), whichever the vocabulary has.
 *
 * @example
 * ```ts
 * import { chatStopIds } from "./chat_template.ts";
 * import type { Tokenizer } from "./tokenizer.ts";
 * declare const tok: Tokenizer;
 * chatStopIds(tok); // [128009, 128001]
 * ```
 */
export function chatStopIds(tokenizer: Tokenizer): number[] {
  const ids = [
    tokenizer.eotId,
    tokenizer.tokenToId(EOT_TEXT) ?? -1,
    tokenizer.eosId,
    tokenizer.tokenToId("<|end_of_text|>") ?? -1,
  ];
  return [...new Set(ids.filter((id) => id >= 0))];
}

import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { BpeEncoder, BYTE_TOKENS, countPretokens, trainBpe } from "../../scripts/train/bpe.ts";
import { buildChatExample, mulberry32, shuffle } from "../../scripts/train/chat.ts";
import { CHAR_TO_BYTE } from "../../engine/text/byte_unicode.ts";
import { Tokenizer } from "../../engine/text/tokenizer.ts";

const TEXT = [
  "The jury said Friday that the election was conducted well. The jury praised the city.",
  "\"Only a few reports,\" the jury said. It's the 1961 session; they'll meet again in 12 weeks!",
  'Naïve café owners -- all 3,000 of them -- said: "We don\'t know."\n\nNew paragraph   with  spaces.\n',
];

const decode = (tokens: readonly string[], ids: number[]) =>
  new TextDecoder().decode(
    Uint8Array.from(ids.flatMap((i) => [...tokens[i]].map((c) => CHAR_TO_BYTE.get(c)!))),
  );

Deno.test("BYTE_TOKENS lists the 256 byte characters in GPT-2 id order", () => {
  assertEquals(BYTE_TOKENS.length, 256);
  assertEquals(BYTE_TOKENS[0], "!");
  assertEquals(BYTE_TOKENS[188], "Ā"); // byte 0x00
  assertEquals(BYTE_TOKENS.indexOf("Ġ"), 220); // space, as in GPT-2 and LLaMA-3
});

Deno.test("trainBpe() merges the most frequent pair first and is deterministic", () => {
  const counts = countPretokens(["aaab aaab aaab ab"]);
  const a = trainBpe(counts, 259);
  assertEquals(a.merges[0], "a a"); // "a a" occurs 3 x 2 times (overlaps counted), more than "a b"
  assertEquals(a, trainBpe(countPretokens(["aaab aaab aaab ab"]), 259));
  assertEquals(a.tokens.length, 259);
});

Deno.test("trainBpe() stops when no pair occurs twice", () => {
  const bpe = trainBpe(countPretokens(["xyz"]), 300);
  assertEquals(bpe.merges.length, 0);
  assertEquals(bpe.tokens.length, 256);
});

Deno.test("BpeEncoder round-trips text and emits a pre-token that is a token directly", () => {
  const bpe = trainBpe(countPretokens(TEXT), 400);
  const enc = new BpeEncoder(bpe);
  for (const t of TEXT) assertEquals(decode(bpe.tokens, enc.encode(t)), t);
  const the = bpe.tokens.indexOf("Ġjury");
  assert(the >= 256);
  assertEquals(enc.encode(" jury"), [the]);
});

Deno.test("BpeEncoder gives the same ids as the engine tokenizer on a trained vocabulary", () => {
  const bpe = trainBpe(countPretokens(TEXT), 420);
  const enc = new BpeEncoder(bpe);
  const tokens = [...bpe.tokens, "<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"];
  const n = bpe.tokens.length;
  const engine = new Tokenizer({
    tokens,
    merges: bpe.merges,
    tokenTypes: tokens.map((_, i) => (i < n ? 1 : 3)),
    bosId: n,
    eosId: n + 1,
    eotId: n + 2,
    addBos: false,
    pre: "llama3",
  });
  for (const t of [...TEXT, "Unseen words: zebra, quixotic; 99999 items."]) {
    assertEquals(engine.encode(t, { addBos: false }), enc.encode(t));
  }
});

Deno.test("mulberry32() and shuffle() are seeded permutations", () => {
  const a = shuffle([1, 2, 3, 4, 5, 6, 7, 8], mulberry32(7));
  assertEquals(a, shuffle([1, 2, 3, 4, 5, 6, 7, 8], mulberry32(7)));
  assertEquals([...a].sort(), [1, 2, 3, 4, 5, 6, 7, 8]);
});

Deno.test("buildChatExample() tokenizes the last 'Assistant: ' on its own and ends turns with EOT", () => {
  const bpe = trainBpe(countPretokens(TEXT), 300);
  const enc = new BpeEncoder(bpe);
  const sents = ["The jury met today.", "It praised the city.", "Then it went home."];
  for (let seed = 0; seed < 20; seed++) {
    const ex = buildChatExample(sents, mulberry32(seed), enc, { bos: 1000, eot: 1002 })!;
    assertEquals(ex[0], 1000);
    assertEquals(ex[ex.length - 1], 1002);
    const text = decode(bpe.tokens, ex.filter((i) => i < 1000));
    assert(text.includes("User: ") && text.includes("Assistant: "), text);
    const tail = enc.encode("Assistant: ");
    const lastEot = ex.lastIndexOf(1002, ex.length - 2);
    assertEquals(ex.slice(lastEot + 1, lastEot + 1 + tail.length), tail);
  }
});

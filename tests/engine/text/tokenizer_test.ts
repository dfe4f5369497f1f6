import { deepStrictEqual as assertEquals, ok as assert, throws } from "node:assert/strict";
import { Tokenizer, type TokenizerData, TokenType } from "../../../engine/text/tokenizer.ts";
import { pretokenize } from "../../../engine/text/pretokenize.ts";
import {
  llama3Data,
  llama3Metadata,
  randomText,
  referenceEncode,
  rng,
  syntheticData,
} from "./_llama3_fixture.ts";

const tok = new Tokenizer(llama3Data());
const plain = { addBos: false };
const special = { addBos: false, parseSpecial: true };

/** The torture corpus compared against the reference encoder, piece by piece and joined. */
const CORPUS: string[] = [
  "Hello world",
  "Hello, world! How's it going?",
  // emoji: ZWJ sequences, skin tones, flags, keycaps, variation selectors
  "👩‍👩‍👧‍👦 👨🏿‍💻 👍🏽👍🏻 🇯🇵🇺🇸🇩🇪 🏳️‍🌈 🏴‍☠️ 1️⃣ #️⃣ ❤️ ✌🏾 🫠🫶",
  "😀😃😄😁😆😅🤣😂🙂🙃",
  // CJK and other scripts
  "日本語のテキストです。東京は大きい都市です。",
  "中文测试：你好，世界！我们今天去哪里？",
  "한국어 문장입니다. 안녕하세요!",
  "مرحبا بالعالم! هذه جملة عربية.",
  "שלום עולם, זה משפט בעברית.",
  "नमस्ते दुनिया, यह एक हिंदी वाक्य है।",
  "Привет, мир! Это тест. ЁЖИК ёжик",
  "Ελληνικά: Καλημέρα κόσμε",
  "ภาษาไทย ทดสอบ",
  "Tiếng Việt: việc hợp nhiều điều Việt Nam",
  "e\u0301 a\u0308 n\u0303 Z\u0351\u0315\u0321a\u0362l\u0334g\u0358o", // combining marks
  // numbers
  "0 1 12 123 1234 12345 123456 1234567 12345678901234567890",
  "3.14159 2,718 1_000_000 1'000'000 -42 +7 1e10 0x1F 0b1010 ١٢٣٤ ٤٥ ½ ² ⅷ",
  "Call 555-123-4567 or +1 (800) 555 0199 on 2024-05-01T12:34:56Z",
  // whitespace runs
  "   leading spaces",
  "trailing spaces   ",
  "a  b   c    d",
  "tabs\tand\t\ttabs\t",
  "line1\nline2\n\nline4\n\n\n",
  "windows\r\nlines\r\n\r\nend\r\n",
  "mixed \t \n \r\n\t\t  \n  x",
  "\n\n\n",
  " ",
  "\t",
  "x \n y",
  "  \u00a0 nbsp\u00a0\u00a0and\u3000ideographic\u2028sep\u2029para",
  // code
  "function add(a, b) {\n  return a + b;\n}\nconsole.log(add(1, 2));\n",
  "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n\nprint([fib(i) for i in range(10)])\n",
  '#include <stdio.h>\n\nint main(void) {\n\tprintf("%d\\n", 42);\n\treturn 0;\n}\n',
  "const re = /^[a-z]+$/gi; x => x ** 2; a?.b ?? c; `tpl ${x}`;",
  '<div class="a">&nbsp;&lt;tag&gt;</div> {"json": [1, 2.5, null, true]}',
  "SELECT * FROM users WHERE id = 1; -- comment",
  // contractions in all cases
  "it's IT'S It'S we'll WE'LL We'Ll they're THEY'RE They'Re I've I'VE I'm I'M he'd HE'D don't DON'T",
  "'s 's's ''s 'sometimes 'LLama 'Re 'ddd",
  "\u2019s \u2019ll curly apostrophes",
  // URLs and emails
  "https://example.com/path/to/page?query=1&other=two#frag",
  "http://localhost:8080/v1/chat/completions mailto:someone@example.org ftp://x.y/z",
  // special-token lookalikes (the reference parses them as special tokens)
  "<|eot_id|>",
  "Text with <|eot_id|> inside and <|begin_of_text|> too",
  "<|begin_of_text|>starts with BOS",
  "partial <| and |> and <|eot_id and eot_id|> and <|unknown_token|>",
  "<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>",
  "<|reserved_special_token_0|><|reserved_special_token_247|><|reserved_special_token_248|>",
  // long words and repetition
  "Pneumonoultramicroscopicsilicovolcanoconiosis Donaudampfschifffahrtsgesellschaftskapitän",
  "a".repeat(1000),
  "ab".repeat(500),
  " ".repeat(300),
  "\n".repeat(50),
  "!".repeat(200),
  "😀".repeat(100),
  "ha".repeat(20) + "!!!???...",
  "=".repeat(80) + "\n" + "-".repeat(80),
  // controls, lone surrogates, misc symbols
  "\u0000\u0001\u0007\u001b[31mred\u001b[0m\u007f",
  "lone \ud800 high and \udc00 low surrogates \ud83d",
  "™ © ® € £ ¥ § ¶ • … — – « » ‹ › „ “ ” ‘ ’",
  "∀x∈ℝ: x² ≥ 0 ⇒ √(x²) = |x| ∑ ∫ ∂ ∞",
  "\ue000\uf8ff private use 𐍈 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝟘𝟙𝟚",
];

Deno.test("encode() gives the known LLaMA-3 ids for simple strings", () => {
  assertEquals(tok.encode("Hello world", plain), [9906, 1917]);
  assertEquals(tok.encode("Hello world"), [128000, 9906, 1917]);
  assertEquals(tok.encode(" Hello", plain), [22691]);
  assertEquals(tok.encode("", plain), []);
  assertEquals(tok.encode(""), [128000]);
  assertEquals(tok.decode([9906, 1917]), "Hello world");
});

Deno.test("encode() matches llama3-tokenizer-js on the torture corpus", () => {
  for (const text of CORPUS) {
    assertEquals(tok.encode(text, special), referenceEncode(text), JSON.stringify(text));
  }
  const all = CORPUS.join(" \n");
  assertEquals(tok.encode(all, special), referenceEncode(all));
});

Deno.test("encode() matches llama3-tokenizer-js on random Unicode text", () => {
  const next = rng(1234);
  for (let i = 0; i < 2000; i++) {
    // U+0085, U+FEFF and 'ſ are where the reference deviates from Hugging Face (tested below).
    const text = randomText(next).replace(/[\u0085\ufeffſ]/g, " ");
    assertEquals(tok.encode(text, special), referenceEncode(text), JSON.stringify(text));
  }
});

Deno.test("encode() follows Hugging Face where llama3-tokenizer-js differs (U+0085, U+FEFF)", () => {
  // The reference splits with JavaScript's \s, which contains U+FEFF and lacks U+0085; the
  // Hugging Face / tiktoken / llama.cpp rule is Unicode White_Space (U+0085 yes, U+FEFF no).
  assertEquals(pretokenize("!\u0085"), ["!", "\u0085"]);
  assertEquals(pretokenize("!\ufeff"), ["!\ufeff"]);
  assertEquals(tok.encode("!\u0085", plain), [...tok.encode("!", plain), ...tok.encode("\u0085", plain)]);
  assert(tok.encode("!\u0085", plain).length >= 2);
  // The pieces themselves still encode like the reference.
  assertEquals(tok.encode("\u0085", plain), referenceEncode("\u0085"));
});

Deno.test("encode() emits a piece that is a vocabulary token directly (ignore_merges)", () => {
  // " việc" is token 100769, but the merges alone would give [3355, 26298, 66].
  assertEquals(tok.encode(" việc", plain), [100769]);
  assertEquals(referenceEncode(" việc"), [100769]);
  const merged = new Tokenizer({ ...llama3Data(), ignoreMerges: false });
  assertEquals(merged.encode(" việc", plain), [3355, 26298, 66]);
});

Deno.test("encode() treats special-token text as plain text unless parseSpecial", () => {
  const asText = tok.encode("Hi<|eot_id|>", plain);
  assert(!asText.includes(128009));
  assertEquals(tok.decode(asText), "Hi<|eot_id|>");
  assertEquals(tok.encode("Hi<|eot_id|>", special), [13347, 128009]);
  assertEquals(tok.encode("<|eot_id|><|eot_id|>", special), [128009, 128009]);
});

Deno.test("encode() adds exactly one BOS", () => {
  assertEquals(tok.encode("<|begin_of_text|>Hi", { parseSpecial: true }), [128000, 13347]);
  assertEquals(tok.encode("<|begin_of_text|>Hi", { parseSpecial: true, addBos: false }), [128000, 13347]);
  const text = tok.encode("<|begin_of_text|>Hi");
  assertEquals(text.filter((id) => id === 128000).length, 1);
  assertEquals(text[0], 128000);
  assertEquals(tok.encode("Hi", { addBos: true }), [128000, 13347]);
});

Deno.test("decode(encode(s)) === s on random Unicode text with the LLaMA-3 vocabulary", () => {
  const next = rng(42);
  for (let i = 0; i < 3000; i++) {
    const text = randomText(next, 40);
    assertEquals(tok.decode(tok.encode(text, plain)), text, JSON.stringify(text));
    assertEquals(tok.decode(tok.encode(text, special)), text, JSON.stringify(text));
  }
});

Deno.test("decode(encode(s)) === s on random Unicode text with a synthetic byte-level vocabulary", () => {
  const syn = new Tokenizer(syntheticData());
  const next = rng(7);
  for (let i = 0; i < 3000; i++) {
    const text = randomText(next, 40) + "hello world aaaaaaaaa";
    assertEquals(syn.decode(syn.encode(text, plain)), text, JSON.stringify(text));
  }
  assertEquals(syn.encode("hello world", plain).map((id) => syn.tokenString(id)), [
    "hello",
    "Ġwor",
    "l",
    "d",
  ]);
  // lowest rank first, leftmost first: a|a a|a a|a a|a a -> aa|aa aa|aa a -> aaaa aaaa|a -> aaaa aaaaa
  assertEquals(syn.encode("aaaaaaaaa", plain).map((id) => syn.tokenString(id)), ["aaaa", "aaaaa"]);
});

Deno.test("encode() turns lone surrogates into U+FFFD", () => {
  assertEquals(tok.decode(tok.encode("a\ud800b", plain)), "a\ufffdb");
  assertEquals(tok.encode("\udc00", plain), tok.encode("\ufffd", plain));
});

Deno.test("encode() handles very long pieces (heap merge path)", () => {
  const long = "ab".repeat(20000) + "c".repeat(30000);
  const ids = tok.encode(long, plain);
  assertEquals(ids, referenceEncode(long));
  assertEquals(tok.decode(ids), long);
});

Deno.test("decode() renders or skips control tokens and replaces invalid UTF-8", () => {
  assertEquals(tok.decode([128000, 9906, 128009]), "<|begin_of_text|>Hello<|eot_id|>");
  assertEquals(tok.decode([128000, 9906, 128009], { skipSpecial: true }), "Hello");
  const emoji = tok.encode("😀", plain); // split into byte tokens
  assert(emoji.length > 1);
  assertEquals(tok.decode(emoji.slice(0, 1)), "\ufffd");
  assertEquals(tok.decode([...emoji.slice(0, 1), 128009]), "\ufffd<|eot_id|>");
  assertEquals(tok.decode([...emoji.slice(0, 1), 128009], { skipSpecial: true }), "\ufffd");
  throws(() => tok.decode([128256]), { name: "RangeError" });
  throws(() => tok.decode([-1]), { name: "RangeError" });
});

Deno.test("tokenBytes() and pieces() follow llama-server's with_pieces", () => {
  assertEquals([...tok.tokenBytes(1917)], [32, 119, 111, 114, 108, 100]);
  assertEquals(new TextDecoder().decode(tok.tokenBytes(128009)), "<|eot_id|>");
  const ids = tok.encode("Hi 👍🏽", plain);
  const pieces = tok.pieces(ids);
  assertEquals(pieces[0], "Hi");
  assert(pieces.slice(1).some((p) => Array.isArray(p)), "partial UTF-8 pieces are byte arrays");
  const bytes = pieces.slice(1).flatMap((p) => typeof p === "string" ? [...new TextEncoder().encode(p)] : p);
  assertEquals(new TextDecoder().decode(Uint8Array.from(bytes)), " 👍🏽");
  assertEquals(tok.piece(9468), [240, 159]);
  assertEquals(tok.piece(128000), "<|begin_of_text|>");
});

Deno.test("isSpecial(), tokenToId() and vocabSize describe the vocabulary", () => {
  assertEquals(tok.vocabSize, 128256);
  assert(tok.isSpecial(128009));
  assert(!tok.isSpecial(9906));
  assertEquals(tok.tokenType(128001), TokenType.CONTROL);
  assertEquals(tok.tokenToId("<|eot_id|>"), 128009);
  assertEquals(tok.tokenToId("Hello"), 9906);
  assertEquals(tok.tokenToId("no such token here"), undefined);
  assertEquals(tok.eotId, 128009);
});

Deno.test("Tokenizer.fromGgufMetadata() reads the tokenizer.ggml keys", () => {
  const t = Tokenizer.fromGgufMetadata(llama3Metadata());
  assertEquals([t.bosId, t.eosId, t.eotId, t.padId, t.addBos], [128000, 128001, 128009, 128001, true]);
  assertEquals(t.pre, "llama3");
  assert(t.ignoreMerges);
  assertEquals(t.encode("Hello world"), [128000, 9906, 1917]);
  const withPre = new Map(llama3Metadata());
  withPre.set("tokenizer.ggml.pre", "llama-bpe");
  withPre.set("tokenizer.ggml.eot_token_id", 128008);
  withPre.set("tokenizer.ggml.bos_token_id", 128000n);
  const t2 = Tokenizer.fromGgufMetadata(withPre);
  assertEquals([t2.pre, t2.eotId, t2.bosId], ["llama3", 128008, 128000]);
  withPre.set("tokenizer.ggml.pre", "gpt-2");
  const gpt2 = Tokenizer.fromGgufMetadata(withPre);
  assertEquals([gpt2.pre, gpt2.ignoreMerges], ["gpt2", false]);
  assertEquals(gpt2.decode(gpt2.encode("I'M 12345 ok", plain)), "I'M 12345 ok");
});

Deno.test("Tokenizer.fromGgufMetadata() names the key and value it cannot use", () => {
  const bad = (key: string, value: unknown) => {
    const m = new Map(llama3Metadata());
    if (value === undefined) m.delete(key);
    else m.set(key, value);
    return () => Tokenizer.fromGgufMetadata(m);
  };
  throws(bad("tokenizer.ggml.model", "llama"), {
    name: "TypeError",
    message: /"tokenizer\.ggml\.model" is "llama"/,
  });
  throws(bad("tokenizer.ggml.pre", "qwen2"), {
    name: "TypeError",
    message: /"tokenizer\.ggml\.pre" is "qwen2"/,
  });
  throws(bad("tokenizer.ggml.pre", "default"), { name: "TypeError", message: /"default"/ });
  throws(bad("tokenizer.ggml.tokens", undefined), {
    name: "TypeError",
    message: /"tokenizer\.ggml\.tokens" is missing/,
  });
  throws(bad("tokenizer.ggml.bos_token_id", "x"), { name: "TypeError", message: /bos_token_id/ });
  throws(bad("tokenizer.ggml.eos_token_id", 999999), { name: "RangeError", message: /eosId 999999/ });
  throws(bad("tokenizer.ggml.merges", ["Ġ t", "nonexistent merge"]), {
    name: "SyntaxError",
    message: /merge 1/,
  });
});

Deno.test("new Tokenizer() rejects inconsistent data", () => {
  const d: TokenizerData = syntheticData();
  throws(() => new Tokenizer({ ...d, tokens: [] }), { name: "RangeError", message: /empty/ });
  throws(() => new Tokenizer({ ...d, tokenTypes: new Int32Array(3) }), {
    name: "RangeError",
    message: /token types/,
  });
  const noBytes = new Tokenizer({
    ...d,
    tokens: ["a", "b", "<s>"],
    merges: [],
    tokenTypes: undefined,
    bosId: 2,
    eosId: 2,
  });
  throws(() => noBytes.encode("c", plain), { name: "RangeError", message: /byte 0x63/ });
});

Deno.test("construction on the real vocabulary and encode speed (measured, not asserted)", () => {
  // Flatten the strings as a GGUF reader produces them (the fixture's merges are concatenations).
  const d = llama3Data();
  const flat = {
    ...d,
    tokens: d.tokens.map((s) => (" " + s).slice(1)),
    merges: d.merges.map((s) => (" " + s).slice(1)),
  };
  const t0 = performance.now();
  const t = new Tokenizer(flat);
  const built = performance.now() - t0;
  const text = CORPUS.slice(0, 40).join("\n").repeat(30);
  const t1 = performance.now();
  t.encode(text, plain);
  const mbs = new TextEncoder().encode(text).length / 1e6 / ((performance.now() - t1) / 1000);
  console.log(`construction ${built.toFixed(0)} ms, encode ${mbs.toFixed(1)} MB/s`);
});

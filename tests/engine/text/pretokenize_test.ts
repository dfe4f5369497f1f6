import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { GPT2_PATTERN, pretokenize, splitWith } from "../../../engine/text/pretokenize.ts";
import { randomText, rng } from "./_llama3_fixture.ts";

// The LLaMA-3 regex as llama3-tokenizer-js / transformers.js compile it (JavaScript's \s).
const JS_REFERENCE =
  /(?:'([sS]|[tT]|[rR][eE]|[vV][eE]|[mM]|[lL][lL]|[dD]))|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+/gu;

Deno.test("pretokenize() splits words, punctuation and leading spaces like LLaMA-3", () => {
  assertEquals(pretokenize("Hello world!"), ["Hello", " world", "!"]);
  assertEquals(pretokenize("Hello, world..."), ["Hello", ",", " world", "..."]);
  assertEquals(pretokenize("(a) [b]"), ["(a", ")", " [", "b", "]"]);
  assertEquals(pretokenize(""), []);
});

Deno.test("pretokenize() splits contractions in any case", () => {
  assertEquals(pretokenize("I'M don't WE'LL they'Re"), [
    "I",
    "'M",
    " don",
    "'t",
    " WE",
    "'LL",
    " they",
    "'Re",
  ]);
  assertEquals(pretokenize("'sometimes"), ["'s", "ometimes"]);
  assertEquals(pretokenize("x'Z"), ["x", "'Z"]);
});

Deno.test("pretokenize() reads (?i:'s) with Unicode case folding, so 'ſ is a contraction", () => {
  // Oniguruma (Hugging Face) and Rust regex (tiktoken) fold ſ (U+017F) to s; llama.cpp does not.
  assertEquals(pretokenize("it'ſ"), ["it", "'ſ"]);
  assertEquals(JS_REFERENCE[Symbol.match]("it'ſ"), ["it", "'ſ"]); // same pieces via another alternative
  assertEquals(pretokenize("'ſx"), ["'ſ", "x"]);
  assertEquals("'ſx".match(JS_REFERENCE), ["'ſx"]);
});

Deno.test("pretokenize() groups digits by three", () => {
  assertEquals(pretokenize("1234567"), ["123", "456", "7"]);
  assertEquals(pretokenize("a1b22"), ["a", "1", "b", "22"]);
  assertEquals(pretokenize("3.14"), ["3", ".", "14"]);
  assertEquals(pretokenize("١٢٣٤"), ["١٢٣", "٤"]);
});

Deno.test("pretokenize() keeps the last space of a run for the next word", () => {
  assertEquals(pretokenize("a  b"), ["a", " ", " b"]);
  assertEquals(pretokenize("a    b"), ["a", "   ", " b"]);
  assertEquals(pretokenize("end   "), ["end", "   "]);
  assertEquals(pretokenize("\t\tx"), ["\t", "\tx"]);
  assertEquals(pretokenize("  12"), [" ", " ", "12"]);
});

Deno.test("pretokenize() keeps newlines with the whitespace before them", () => {
  assertEquals(pretokenize("a\n\nb"), ["a", "\n\n", "b"]);
  assertEquals(pretokenize("a \r\n b"), ["a", " \r\n", " b"]);
  assertEquals(pretokenize("x.\n\ny"), ["x", ".\n\n", "y"]);
  assertEquals(pretokenize("  \n  \n x"), ["  \n  \n", " x"]);
});

Deno.test("pretokenize() treats U+0085 as white space and U+FEFF as not (Unicode White_Space)", () => {
  assertEquals(pretokenize("!\u0085"), ["!", "\u0085"]);
  assertEquals(pretokenize("!\ufeff"), ["!\ufeff"]);
  assertEquals(pretokenize("a\u3000\u3000b"), ["a", "\u3000", "\u3000b"]);
  // the JavaScript-\s reference differs exactly there
  assertEquals("!\u0085".match(JS_REFERENCE), ["!\u0085"]);
  assertEquals("!\ufeff".match(JS_REFERENCE), ["!", "\ufeff"]);
});

Deno.test("pretokenize() keeps every code unit: the pieces concatenate to the input", () => {
  const next = rng(99);
  for (let i = 0; i < 3000; i++) {
    const text = randomText(next, 40) + (i % 7 === 0 ? "\ud800x\udfff" : "");
    assertEquals(pretokenize(text).join(""), text);
  }
});

Deno.test("pretokenize() equals the JavaScript reference regex away from U+0085, U+FEFF and 'ſ", () => {
  const next = rng(5);
  for (let i = 0; i < 3000; i++) {
    const text = randomText(next, 40).replace(/[\u0085\ufeffſ]/g, "_");
    assertEquals(pretokenize(text), text.match(JS_REFERENCE) ?? [], JSON.stringify(text));
  }
});

Deno.test("splitWith(GPT2_PATTERN) splits like GPT-2", () => {
  assertEquals(splitWith(GPT2_PATTERN, "I'm 12345 apples!!"), ["I", "'m", " 12345", " apples", "!!"]);
  assertEquals(splitWith(GPT2_PATTERN, "I'M"), ["I", "'", "M"]);
  assertEquals(splitWith(GPT2_PATTERN, "a  b\n\nc"), ["a", " ", " b", "\n", "\n", "c"]);
});

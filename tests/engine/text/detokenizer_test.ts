import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { IncrementalDecoder } from "../../../engine/text/detokenizer.ts";
import { Tokenizer } from "../../../engine/text/tokenizer.ts";
import { llama3Data, randomText, rng } from "./_llama3_fixture.ts";

const tok = new Tokenizer(llama3Data());
const plain = { addBos: false };

function stream(ids: number[], skipSpecial = false): string[] {
  const dec = new IncrementalDecoder(tok, { skipSpecial });
  const deltas = ids.map((id) => dec.push(id));
  deltas.push(dec.flush());
  return deltas;
}

Deno.test("IncrementalDecoder.push() holds back an emoji split across byte tokens", () => {
  const ids = tok.encode("👍🏽", plain);
  assert(ids.length >= 4, "the emoji is several byte tokens");
  const deltas = stream(ids);
  assertEquals(deltas.slice(0, -2).every((d) => d === "" || d === "👍"), true);
  assertEquals(deltas.join(""), "👍🏽");
  assert(!deltas.some((d) => d.includes("\ufffd")));
});

Deno.test("IncrementalDecoder.push() never emits a broken sequence and concatenates to decode()", () => {
  const next = rng(2024);
  for (let i = 0; i < 2000; i++) {
    const text = randomText(next, 30);
    const ids = tok.encode(text, plain);
    const deltas = stream(ids);
    for (const d of deltas) {
      assert(d.isWellFormed(), JSON.stringify(text));
      assert(!d.includes("\ufffd") || text.includes("\ufffd"), JSON.stringify(text));
    }
    assertEquals(deltas.join(""), text);
    assertEquals(deltas.join(""), tok.decode(ids));
  }
});

Deno.test("IncrementalDecoder matches decode() on arbitrary id sequences (invalid UTF-8 included)", () => {
  const next = rng(77);
  const byteTokens = [...tok.encode("😀👍🏽日本", plain), 128000, 128009, 128001, 13];
  for (let i = 0; i < 2000; i++) {
    const ids = Array.from(
      { length: Math.floor(next() * 12) },
      () => next() < 0.7 ? byteTokens[Math.floor(next() * byteTokens.length)] : Math.floor(next() * 128256),
    );
    for (const skipSpecial of [false, true]) {
      const deltas = stream(ids, skipSpecial);
      assert(deltas.every((d) => d.isWellFormed()));
      assertEquals(deltas.join(""), tok.decode(ids, { skipSpecial }), JSON.stringify(ids));
    }
  }
});

Deno.test("IncrementalDecoder renders or skips special tokens", () => {
  const ids = [128000, ...tok.encode("Hi", plain), 128009];
  assertEquals(stream(ids).join(""), "<|begin_of_text|>Hi<|eot_id|>");
  assertEquals(stream(ids, true).join(""), "Hi");
});

Deno.test("IncrementalDecoder.flush() emits U+FFFD for a dangling partial character", () => {
  const ids = tok.encode("😀", plain);
  const dec = new IncrementalDecoder(tok);
  assertEquals(dec.push(ids[0]), "");
  assertEquals(dec.flush(), "\ufffd");
  assertEquals(dec.flush(), "");
  // a rendered special token cuts the partial sequence off
  const dec2 = new IncrementalDecoder(tok);
  dec2.push(ids[0]);
  assertEquals(dec2.push(128009), "\ufffd<|eot_id|>");
});

Deno.test("IncrementalDecoder keeps a leading U+FEFF as text", () => {
  assertEquals(stream(tok.encode("\ufeffx", plain)).join(""), "\ufeffx");
});

import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { encodeChat } from "../../../engine/text/chat_template.ts";
import { ReplyMemory } from "../../../engine/text/reply_memory.ts";
import { Tokenizer } from "../../../engine/text/tokenizer.ts";
import { llama3Data } from "./_llama3_fixture.ts";

const tok = new Tokenizer(llama3Data());
const piece = (s: string) => {
  const ids = tok.encode(s, { addBos: false, parseSpecial: false });
  if (ids.length !== 1) throw new Error(`${JSON.stringify(s)} is ${ids.length} tokens`);
  return ids[0];
};

Deno.test("ReplyMemory returns the generated ids of a reply, not a re-tokenization", () => {
  const memory = new ReplyMemory(tok);
  // "there" generated as "the" + "re": the tokenizer would say "there" in one token
  const ids = [piece("the"), piece("re"), piece(" is")];
  assertEquals(memory.remember(ids, "there is"), true);
  assertEquals(memory.lookup("there is"), ids);
  assertEquals(memory.lookup("there"), undefined);
});

Deno.test("ReplyMemory finds a reply by its trimmed text and keeps the whitespace the model wrote", () => {
  const memory = new ReplyMemory(tok);
  const hi = piece("Hi"), nl = piece("\n"), sp = piece(" ");
  memory.remember([sp, hi, nl], " Hi\n");
  assertEquals(memory.lookup("Hi"), [sp, hi, nl]);
  // a stop string cut the text: the tokens past it are dropped
  memory.remember([piece("Go"), piece("!"), piece(" STOP"), piece(" now")], "Go!");
  assertEquals(memory.lookup("Go!"), [piece("Go"), piece("!")]);
  memory.remember([piece("Yes"), piece(".")], "Yes."); // nothing to trim
  assertEquals(memory.lookup("Yes."), [piece("Yes"), piece(".")]);
});

Deno.test("ReplyMemory refuses ids that do not decode to the text (stop strings, special tokens)", () => {
  const memory = new ReplyMemory(tok);
  // a stop string cut the text short of the ids by more than a few tokens
  const long = tok.encode(" one two three four five six seven eight nine ten eleven twelve", {
    addBos: false,
  });
  assertEquals(memory.remember(long, " one two"), false);
  // a control token generated inside the reply is not in the text the client sees
  assertEquals(memory.remember([piece("Hi"), 128000, piece("!")], "Hi!"), false);
  assertEquals(memory.remember([], ""), false);
  assertEquals(memory.size, 0);
});

Deno.test("ReplyMemory forgets the least recently used replies beyond its byte budget", () => {
  // entries cost 128 + 4 per id + 2 per character of the key: AB 140, C 134, D 134
  const memory = new ReplyMemory(tok, 140 + 134 + 133);
  memory.remember([piece("A"), piece("B")], "AB");
  memory.remember([piece("C")], "C");
  assertEquals(memory.bytes, 274);
  memory.lookup("AB"); // AB is now the most recent
  memory.remember([piece("D")], "D"); // 408 bytes: C goes
  assertEquals([memory.lookup("C"), memory.lookup("D")], [undefined, [piece("D")]]);
  assertEquals(memory.lookup("AB"), [piece("A"), piece("B")]);
  assertEquals(memory.bytes, 274);
  // a reply bigger than the whole budget is not kept, and evicts nothing
  const long = "the jury said ".repeat(10).trim();
  assertEquals(memory.remember(tok.encode(long, { addBos: false }), long), false);
  assertEquals([memory.size, memory.bytes], [2, 274]);
});

Deno.test("ReplyMemory stays within its budget under many short distinct replies", () => {
  const memory = new ReplyMemory(tok, 64 * 1024);
  let kept = 0;
  for (let i = 0; i < 20_000; i++) {
    const text = `r${i}`;
    if (memory.remember(tok.encode(text, { addBos: false }), text)) kept++;
    assert(memory.bytes <= memory.maxBytes, `${memory.bytes} bytes after ${i + 1} replies`);
  }
  assertEquals(kept, 20_000);
  assert(memory.size < 500, `${memory.size} replies held`);
  // the most recent are the ones kept
  assertEquals(memory.lookup("r19999"), tok.encode("r19999", { addBos: false }));
  assertEquals(memory.lookup("r0"), undefined);
});

Deno.test("encodeChat() tokenizes a reply apart from 'Assistant: ' and takes known reply ids", () => {
  const messages = [
    { role: "user" as const, content: "Hi" },
    { role: "assistant" as const, content: " there is " },
    { role: "user" as const, content: "Ok" },
  ];
  const plain = encodeChat(tok, messages);
  const asst = tok.encode("Assistant: ", { addBos: false });
  const reply = tok.encode("there is", { addBos: false });
  const head = [128000, ...tok.encode("User: Hi", { addBos: false }), 128009];
  assertEquals(plain.slice(0, head.length + asst.length + reply.length), [...head, ...asst, ...reply]);
  const generated = [piece("the"), piece("re"), piece(" is")];
  const known = encodeChat(tok, messages, { replyTokens: (t) => (t === "there is" ? generated : undefined) });
  assertEquals(known.slice(head.length + asst.length, head.length + asst.length + 3), generated);
  assertEquals(tok.decode(known), tok.decode(plain));
});

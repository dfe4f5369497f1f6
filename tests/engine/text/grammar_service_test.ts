import { deepStrictEqual as assertEquals, ok as assert, rejects } from "node:assert/strict";
import { openGguf } from "../../../engine/format/gguf.ts";
import { chatStopIds } from "../../../engine/text/chat_template.ts";
import { GrammarError } from "../../../engine/text/grammar_error.ts";
import { type GrammarMatcher, Grammars } from "../../../engine/text/grammar_service.ts";
import { Tokenizer } from "../../../engine/text/tokenizer.ts";

const tok = Tokenizer.fromGgufMetadata(
  openGguf(new URL("../../../models/default.gguf", import.meta.url).pathname).metadata,
);
const allowed = (m: GrammarMatcher) => {
  const out: string[] = [];
  for (let id = 0; id < tok.vocabSize; id++) {
    if ((m.mask![id >> 5] >>> (id & 31)) & 1) out.push(tok.decode([id]));
  }
  return out;
};

async function feed(m: GrammarMatcher, text: string) {
  for (const id of tok.encode(text, { addBos: false })) {
    m.advance(id);
    await m.ready;
    if (m.error) throw m.error;
  }
}

Deno.test("Grammars compiles in its worker, caches, and matches token by token", async () => {
  const grammars = new Grammars(tok, chatStopIds(tok), { cacheSize: 2 });
  try {
    const spec = { type: "ebnf" as const, grammar: 'root ::= "yes" | "no"' };
    const g = await grammars.compile(spec);
    assert(!g.cached && g.compileMs > 0 && grammars.initMs > 0);
    const m = g.matcher();
    g.release();
    m.advance(-1);
    await m.ready;
    const first = allowed(m);
    assert(
      first.every((t) => "yes".startsWith(t) || "no".startsWith(t)) && first.length > 0,
      first.join(" "),
    );
    await feed(m, "ye");
    assertEquals(allowed(m), ["s"]);
    await feed(m, "s");
    assertEquals(m.end, true); // complete: only the end tokens remain
    assertEquals(allowed(m).sort(), ["<|end_of_text|>", "<|eot_id|>"].sort());
    m.close();
    const again = await grammars.compile(spec);
    assert(again.cached);
    again.release();
    for (const word of ["a", "b", "c"]) {
      (await grammars.compile({ type: "ebnf", grammar: `root ::= "${word}"` })).release();
    }
    const stats = await grammars.stats();
    assertEquals([stats.grammars <= 2, stats.compiles, stats.cacheHits, stats.matchers], [true, 4, 1, 0]);
  } finally {
    grammars.close();
  }
});

Deno.test("Grammars refuses bad grammars with XGrammar's reason and keeps serving", async () => {
  const grammars = new Grammars(tok, chatStopIds(tok));
  try {
    const g = await grammars.compile({ type: "json_object" });
    const m = g.matcher();
    g.release();
    m.advance(-1);
    await feed(m, '{"a":');
    await rejects(grammars.compile({ type: "ebnf", grammar: "root ::= foo" }), (e: unknown) => {
      assert(e instanceof GrammarError);
      assertEquals(e.message, 'EBNF parser error at line 1, column 10: Rule "foo" is not defined');
      return true;
    });
    await rejects(grammars.compile({ type: "ebnf", grammar: 'root ::= "a' }), /Expect " in string literal/);
    await rejects(
      grammars.compile({ type: "json_schema", schema: { properties: { x: { not: {} } } } }),
      (e: unknown) => {
        assert(e instanceof GrammarError);
        assertEquals([e.keyword, e.path], ["not", "/properties/x"]);
        return true;
      },
    );
    // the matcher opened before the failures still works, and new grammars compile
    await feed(m, "1}");
    assert(m.end);
    m.close();
    (await grammars.compile({ type: "ebnf", grammar: 'root ::= "ok"' })).release();
    assertEquals((await grammars.stats()).restarts, 0);
  } finally {
    grammars.close();
  }
  await rejects(grammars.compile({ type: "json_object" }), /closed/);
});

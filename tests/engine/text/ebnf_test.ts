import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import {
  charClass,
  complementRanges,
  Ebnf,
  literal,
  repeat,
  subtractRanges,
} from "../../../engine/text/ebnf.ts";
import { accepts } from "./_xgrammar_walk.ts";

Deno.test("literal() and charClass() escape what XGrammar's EBNF needs", async () => {
  assertEquals(literal('a"\\\n'), '"a\\"\\\\\\x0a"');
  assertEquals(charClass([[0x2d, 0x2d], [0x5b, 0x5e]]), "[\\-[-\\^]");
  assertEquals(charClass([[0x41, 0x41]]), '"A"');
  const g = new Ebnf();
  g.define("root", `${literal('x"\\é😀\t')} ${charClass([[0x5c, 0x5d]])}`);
  assert(await accepts(g.toString(), 'x"\\é😀\t]'));
  assert(!await accepts(g.toString(), 'x"\\é😀\t['));
});

Deno.test("range helpers complement and subtract", () => {
  assertEquals(complementRanges([[0, 9], [20, 0x10ffff]]), [[10, 19]]);
  assertEquals(subtractRanges([[0, 100]], [[10, 20], [50, 200]]), [[0, 9], [21, 49]]);
});

Deno.test("repeat() allows exactly min..max copies with few rules", async () => {
  for (
    const [min, max] of [[0, 1], [2, 2], [0, 5], [3, 7], [1, 20], [5, 37], [0, Infinity], [
      2,
      Infinity,
    ]] as const
  ) {
    const g = new Ebnf();
    g.define("root", repeat(g, '"a"', min, max));
    const ebnf = g.toString();
    assert(ebnf.split("\n").length < 16, ebnf);
    for (let n = 0; n <= 40; n++) {
      assertEquals(await accepts(ebnf, "a".repeat(n)), n >= min && n <= max, `${min}..${max} on ${n}`);
    }
  }
});

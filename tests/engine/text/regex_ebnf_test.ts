import { deepStrictEqual as assertEquals, ok as assert, throws } from "node:assert/strict";
import { Ebnf } from "../../../engine/text/ebnf.ts";
import { GrammarError } from "../../../engine/text/grammar_error.ts";
import { parseRegex, patternToEbnf, regexLengths } from "../../../engine/text/regex_ebnf.ts";
import { accepts } from "./_xgrammar_walk.ts";

/** The grammar of a JSON string whose value matches `pattern`. */
function stringGrammar(pattern: string, limits = {}): string {
  const g = new Ebnf();
  g.define("root", `"\\"" ${patternToEbnf(pattern, g, limits)} "\\""`);
  return g.toString();
}

Deno.test("patternToEbnf() agrees with RegExp (u flag) on the JSON text of each string", async () => {
  const patterns = [
    "^[a-c]+$",
    "^a{2,3}b?$",
    "^(ab|c)*d$",
    "^\\d{1,2}-\\w\\s?[^0-9]$",
    "x.y",
    "^[^\\s\\d]{2}$",
    "^(?:[A-Z]\\.){1,2}$",
    "^(?<word>ab)+$",
    "^[\\x41-\\x43\\u0061]$",
    "^\\u{1F600}?$",
    "^[-a]$",
    "^a|b$",
    "^$",
    "^\\.\\*\\\\$",
    '^"$',
  ];
  const inputs = [
    "",
    "a",
    "ab",
    "abc",
    "abcd",
    "aab",
    "aaab",
    "d",
    "abcd",
    "cd",
    "12-x z",
    "1-x!",
    "xay",
    "zzxqyzz",
    "xy",
    "A.",
    "A.B.",
    "A.B.C.",
    "abab",
    "B",
    "D",
    "😀",
    "-",
    "ba",
    ".*\\",
    '"',
    "a\nb",
    "\n",
    "é",
  ];
  for (const p of patterns) {
    const ebnf = stringGrammar(p);
    const re = new RegExp(p, "u");
    for (const s of inputs) {
      const want = re.test(s);
      const got = await accepts(ebnf, JSON.stringify(s));
      // a class with only some non-ASCII characters matches ASCII only (see json_chars.ts): never wider
      if (got !== want) {
        assert(
          !got && [...s].some((ch) => ch.codePointAt(0)! > 0x7f),
          `${p} on ${JSON.stringify(s)}: ${got}, RegExp ${want}`,
        );
      }
    }
  }
});

Deno.test("parseRegex() and regexLengths() measure matches in code points", () => {
  assertEquals(regexLengths(parseRegex("^a{2,3}(bc)?$")), [2, 5]);
  assertEquals(regexLengths(parseRegex("a+|b")), [1, Infinity]);
  assertEquals(regexLengths(parseRegex("😀{2}")), [2, 2]);
});

Deno.test("patternToEbnf() refuses what regular grammars cannot say", () => {
  for (
    const [p, why] of [
      ["(a)\\1", /backreferences/],
      ["a(?=b)", /lookahead/],
      ["\\bword", /word boundaries/],
      ["\\p{Lu}", /Unicode property/],
      ["a^b", /only at the start and the end/],
      ["a{2000000}", /above/],
      ["[b-a]", /out of order/],
      ["(ab", /missing "\)"/],
      ["*a", /nothing to repeat/],
      ["[]", /matches nothing/],
    ] as const
  ) {
    throws(
      () => stringGrammar(p),
      (e: unknown) => e instanceof GrammarError && e.keyword === "pattern" && why.test(e.message),
    );
  }
});

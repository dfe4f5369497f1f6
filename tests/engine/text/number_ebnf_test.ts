import { ok as assert, throws } from "node:assert/strict";
import { Ebnf } from "../../../engine/text/ebnf.ts";
import { GrammarError } from "../../../engine/text/grammar_error.ts";
import { type Bound, boundedInteger, boundedNumber, integerRange } from "../../../engine/text/number_ebnf.ts";
import { accepts } from "./_xgrammar_walk.ts";

function grammar(body: (g: Ebnf) => string): string {
  const g = new Ebnf();
  g.define("root", body(g));
  return g.toString();
}

const within = (x: number, lo: Bound | null, hi: Bound | null) =>
  (!lo || (lo.exclusive ? x > lo.value : x >= lo.value)) &&
  (!hi || (hi.exclusive ? x < hi.value : x <= hi.value));

Deno.test("integerRange() accepts exactly the integers in range, in canonical form", async () => {
  for (
    const [lo, hi] of [[-5n, 12n], [0n, 0n], [7n, 7n], [95n, 1203n], [-1000n, -999n], [null, -3n], [
      40n,
      null,
    ]] as const
  ) {
    const ebnf = grammar((g) => integerRange(g, lo, hi));
    for (let x = -1500; x <= 1500; x += x > -20 && x < 60 ? 1 : 37) {
      const want = (lo === null || BigInt(x) >= lo) && (hi === null || BigInt(x) <= hi);
      assert((await accepts(ebnf, String(x))) === want, `[${lo}, ${hi}] on ${x}`);
    }
    for (const s of ["-0", "007", "1.0", "+3"]) assert(!await accepts(ebnf, s), `[${lo}, ${hi}] on ${s}`);
  }
});

Deno.test("boundedInteger() folds exclusive and fractional bounds", async () => {
  const ebnf = grammar((g) =>
    boundedInteger(g, { value: 1.5, exclusive: false }, { value: 4, exclusive: true })
  );
  for (const [s, ok] of [["1", false], ["2", true], ["3", true], ["4", false]] as const) {
    assert((await accepts(ebnf, s)) === ok, s);
  }
});

Deno.test("boundedNumber() agrees with the comparison on random decimals", async () => {
  let seed = 3;
  const rnd = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 4294967296;
  const bounds: [Bound | null, Bound | null][] = [
    [{ value: 0, exclusive: false }, { value: 1, exclusive: false }],
    [{ value: -2.25, exclusive: true }, { value: -0.5, exclusive: false }],
    [{ value: 0.1, exclusive: false }, { value: 0.3, exclusive: true }],
    [{ value: 1.5, exclusive: false }, null],
    [null, { value: -12.125, exclusive: true }],
    [{ value: -1, exclusive: false }, { value: 1, exclusive: true }],
    [{ value: 99.99, exclusive: true }, { value: 100.01, exclusive: false }],
  ];
  for (const [lo, hi] of bounds) {
    const ebnf = grammar((g) => boundedNumber(g, lo, hi));
    for (let i = 0; i < 60; i++) {
      const digits = Math.floor(rnd() * 4);
      const x = Number(((rnd() - 0.5) * 300).toFixed(digits));
      const edge = [lo?.value, hi?.value].filter((v) => v !== undefined)[i % 2] as number | undefined;
      const v = i % 5 === 0 && edge !== undefined ? edge : x;
      const s = String(v);
      assert((await accepts(ebnf, s)) === within(v, lo, hi), `${JSON.stringify([lo, hi])} on ${s}`);
    }
    for (const s of ["-0", "1e2", "0.1234567"]) {
      assert(!await accepts(ebnf, s), `${JSON.stringify([lo, hi])} on ${s}`);
    }
  }
});

Deno.test("boundedNumber() refuses empty ranges and huge bounds", () => {
  throws(
    () => grammar((g) => boundedNumber(g, { value: 0, exclusive: true }, { value: 1e-7, exclusive: true })),
    GrammarError,
  );
  throws(() => grammar((g) => boundedNumber(g, { value: 1e16, exclusive: false }, null)), GrammarError);
});

import { deepStrictEqual as assertEquals, ok as assert, throws } from "node:assert/strict";
import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";
import { GrammarError } from "../../../engine/text/grammar_error.ts";
import { FORMAT_PATTERNS } from "../../../engine/text/json_formats.ts";
import { jsonSchemaEbnf } from "../../../engine/text/json_schema_ebnf.ts";
import { accepts, Walker } from "./_xgrammar_walk.ts";

// deno-lint-ignore no-explicit-any
const ajv = new (Ajv2020 as any)({ strict: false });
// deno-lint-ignore no-explicit-any
(addFormats as any)(ajv);

const WALKED: unknown[] = [
  { type: "integer", minimum: 5 },
  { type: "integer", minimum: -3, maximum: 12 },
  { type: "integer", exclusiveMinimum: 5, exclusiveMaximum: 20 },
  { type: "number", minimum: 1.5 },
  { type: "number", exclusiveMinimum: -2.25, maximum: -0.5 },
  { type: "number", minimum: 0.1, maximum: 0.3 },
  { type: "string", pattern: "^[^a]+$", maxLength: 5 },
  { type: "string", pattern: "^\\d{3}-[A-Z]{2}$" },
  { type: "string", pattern: "^(\\w+\\s)?[.]{1,3}$" },
  { type: "string", minLength: 2, maxLength: 4 },
  ...[
    "date",
    "date-time",
    "time",
    "email",
    "uuid",
    "ipv4",
    "ipv6",
    "hostname",
    "uri",
    "uri-reference",
    "duration",
  ]
    .map((format) => ({ type: "string", format })),
  {
    type: "object",
    properties: { a: { type: "integer" }, b: { type: "string", maxLength: 3 }, c: { type: "boolean" } },
    required: ["b"],
  },
  { type: "object", additionalProperties: { type: "integer", maximum: 9 }, maxProperties: 3 },
  { type: "object", patternProperties: { "^x[0-9]$": { type: "integer" } } },
  { type: "array", items: { type: "integer", minimum: 0, maximum: 3 }, minItems: 2, maxItems: 4 },
  {
    type: "array",
    prefixItems: [{ type: "integer" }, { type: "string", maxLength: 2 }],
    items: false,
    minItems: 1,
  },
  {
    type: "array",
    prefixItems: [{ const: 1 }, { const: 2 }],
    items: { type: "boolean" },
    minItems: 3,
    maxItems: 9,
  },
  { enum: ["a", 1, null, { x: [1] }] },
  { anyOf: [{ type: "integer", maximum: 5 }, { type: "string", maxLength: 1 }] },
  {
    oneOf: [
      { type: "object", properties: { t: { const: "x" }, a: { type: "integer" } }, required: ["t", "a"] },
      { type: "object", properties: { t: { const: "y" } }, required: ["t"] },
    ],
  },
  {
    allOf: [
      { type: "object", properties: { a: { type: "integer" } }, required: ["a"] },
      { properties: { b: { type: "integer", maximum: 3 } }, required: ["b"] },
    ],
  },
  {
    $defs: {
      node: {
        type: "object",
        properties: {
          v: { type: "integer", maximum: 9 },
          kids: { type: "array", items: { $ref: "#/$defs/node" }, maxItems: 2 },
        },
        required: ["v"],
      },
    },
    $ref: "#/$defs/node",
  },
  { type: ["string", "null"], maxLength: 3 },
  { type: "object" },
  {},
  { type: "object", properties: { 'we"ird\nkey': { type: "integer" } }, required: ['we"ird\nkey'] },
];

Deno.test("jsonSchemaEbnf(): every document a random walk through the grammar draws validates", async () => {
  const walker = new Walker(7);
  for (const schema of WALKED) {
    const docs = await walker.walk(jsonSchemaEbnf(schema), 25);
    assert(docs.length >= 20, `${JSON.stringify(schema)}: only ${docs.length} walks ended`);
    for (const d of docs) {
      let v: unknown;
      try {
        v = JSON.parse(d);
      } catch {
        throw new Error(`${JSON.stringify(schema)}: ${JSON.stringify(d)} is not JSON`);
      }
      assert(ajv.validate(schema, v), `${JSON.stringify(schema)}: ${d} ${JSON.stringify(ajv.errors)}`);
    }
  }
});

Deno.test("jsonSchemaEbnf(): formats are subsets of ajv-formats' full checks (300 walks each)", async () => {
  const walker = new Walker(11);
  for (const format of Object.keys(FORMAT_PATTERNS)) {
    const schema = { type: "string", format };
    for (const d of await walker.walk(jsonSchemaEbnf(schema), 300)) {
      assert(ajv.validate(schema, JSON.parse(d)), `${format}: ${d}`);
    }
  }
});

Deno.test("jsonSchemaEbnf() accepts and rejects at the edges", async () => {
  const cases: [unknown, string[], string[]][] = [
    [{ type: "integer", minimum: 5 }, ["5", "50", "123456"], ["4", "-5", "05", "5.0", "1e3"]],
    [{ type: "integer", exclusiveMaximum: 0 }, ["-1", "-300"], ["0", "-0", "1"]],
    [{ type: "number", minimum: 1.5, exclusiveMaximum: 2 }, ["1.5", "1.50", "1.999999"], [
      "1.49",
      "2",
      "2.0",
      "1.9999999",
    ]],
    [{ type: "number", exclusiveMinimum: 0 }, ["0.000001", "3"], ["0", "0.0", "-0.5", "-0"]],
    [{ type: "number" }, ["-0.5e+10", "0", "12.5"], ["01", ".5", "1."]],
    [{ type: "string", pattern: "^[^a]+$" }, ['"b"', '"\\""', '"x\\\\y"', '"é😀"'], [
      '"a"',
      '"x"y"',
      '"x\ny"',
    ]],
    [{ type: "string", pattern: "b" }, ['"b"', '"abc"', '"zzbzz"'], ['"ac"']],
    [{ type: "string", pattern: "^a.c$" }, ['"abc"', '"a\\"c"'], ['"a\\nc"', '"a\nc"', '"aéc"']],
    [{ type: "string", maxLength: 2 }, ['""', '"ab"', '"é😀"', '"\\n\\""'], ['"abc"', '"\\u0041"']],
    [{ type: "string", format: "date" }, ['"2024-02-28"', '"1999-12-31"'], [
      '"2021-02-30"',
      '"2021-13-01"',
      '"x"',
    ]],
    [{ type: "object", properties: { a: { type: "integer" }, b: { type: "integer" } }, required: ["b"] }, [
      '{"b":1}',
      '{"a":1,"b":2}',
    ], ['{"b":1,"a":2}', '{"a":1}', '{"b":1,"c":2}', '{ "b":1}']],
    [{ type: "array", items: { type: "integer" }, minItems: 2, maxItems: 3 }, ["[1,2]", "[1,2,3]"], [
      "[1]",
      "[1,2,3,4]",
    ]],
    [{ enum: ["a", { b: [1, null] }] }, ['"a"', '{"b":[1,null]}'], ['"b"', '{"b":[1]}']],
  ];
  for (const [schema, good, bad] of cases) {
    const ebnf = jsonSchemaEbnf(schema);
    for (const s of good) assert(await accepts(ebnf, s), `${JSON.stringify(schema)} should accept ${s}`);
    for (const s of bad) assert(!await accepts(ebnf, s), `${JSON.stringify(schema)} should reject ${s}`);
  }
});

Deno.test("jsonSchemaEbnf() refuses what it cannot enforce, naming the keyword and where", () => {
  const cases: [unknown, string, string][] = [
    [{ type: "array", uniqueItems: true }, "uniqueItems", ""],
    [{ properties: { a: { not: { type: "null" } } } }, "not", "/properties/a"],
    [{ type: "integer", multipleOf: 3 }, "multipleOf", ""],
    [{ if: { type: "string" }, then: { maxLength: 2 } }, "if", ""],
    [{ type: "array", contains: { const: 1 } }, "contains", ""],
    [{ type: "object", dependentRequired: { a: ["b"] } }, "dependentRequired", ""],
    [{ type: "string", format: "iri" }, "format", ""],
    [{ type: "string", pattern: "(a)\\1" }, "pattern", ""],
    [{ type: "string", pattern: "\\p{L}" }, "pattern", ""],
    [{ type: "string", pattern: "^[a-z]+[0-9]$", minLength: 3 }, "minLength", ""],
    [{ type: "string", pattern: "a|b", maxLength: 4 }, "maxLength", ""],
    [{ $ref: "https://example.com/s.json" }, "$ref", ""],
    [{ $ref: "#/$defs/missing" }, "$ref", ""],
    [{ type: "integer", nullable: true }, "nullable", ""],
    [{ type: "strnig" }, "type", ""],
    [{ oneOf: [{ type: "integer" }, { type: "number" }] }, "oneOf", ""],
    [{ allOf: [{ type: "string" }, { type: "integer" }] }, "allOf", "/allOf/1"],
    [{ items: { maxLenght: 3 } }, "maxLenght", "/items"],
    [{ type: "object", properties: { a: {} }, minProperties: 2 }, "minProperties", ""],
    [{ type: "object", additionalProperties: true, minProperties: 2 }, "minProperties", ""],
    [{ type: "object", required: ["a"], additionalProperties: false }, "required", ""],
    [{ enum: ["a"], maxLength: 3 }, "maxLength", ""],
    [{ type: "integer", minimum: 3, maximum: 2 }, "minimum", ""],
  ];
  for (const [schema, keyword, path] of cases) {
    throws(() => jsonSchemaEbnf(schema), (e: unknown) => {
      assert(e instanceof GrammarError, String(e));
      assertEquals([e.keyword, e.path], [keyword, path], `${JSON.stringify(schema)}: ${e.message}`);
      assert(e.message.startsWith(`"${keyword}"`), e.message);
      return true;
    });
  }
});

Deno.test("jsonSchemaEbnf() combines a pattern of one repeated class with length limits", async () => {
  const ebnf = jsonSchemaEbnf({ type: "string", pattern: "^[a-z]+$", minLength: 2, maxLength: 3 });
  for (
    const [s, ok] of [['"a"', false], ['"ab"', true], ['"abc"', true], ['"abcd"', false], [
      '"a1"',
      false,
    ]] as const
  ) {
    assertEquals(await accepts(ebnf, s), ok, s);
  }
});

Deno.test("jsonSchemaEbnf() charges bounded strings to the character-rule budget", async () => {
  const budget = () => ({ charStates: { used: 0, limit: 65 } });
  const ebnf = jsonSchemaEbnf({ type: "string", minLength: 3, maxLength: 60 }, budget());
  assert(await accepts(ebnf, `"${"x".repeat(60)}"`));
  assert(!await accepts(ebnf, `"${"x".repeat(61)}"`));
  assert(!await accepts(ebnf, '"ab"'));
  const two = {
    type: "object",
    properties: { a: { type: "string", maxLength: 40 }, b: { type: "string", maxLength: 40 } },
  };
  throws(() => jsonSchemaEbnf(two, budget()), (e: unknown) => {
    assert(e instanceof GrammarError && e.keyword === "maxLength" && e.path === "/properties/b", String(e));
    assert(/limit of 65/.test(e.message), e.message);
    return true;
  });
  throws(() => jsonSchemaEbnf({ type: "string", minLength: 70 }, budget()), /"minLength"/);
  throws(() => jsonSchemaEbnf({ type: "string", pattern: "^.{1,80}$" }, budget()), /"pattern".*limit of 65/);
  // narrow classes and unbounded strings cost nothing
  jsonSchemaEbnf({ type: "string", pattern: "^[0-9]{1,500}$" }, budget());
  jsonSchemaEbnf({ type: "array", items: { type: "string" }, maxItems: 500 }, budget());
});

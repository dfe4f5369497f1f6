/**
 * JSON Schemas for the constrained-decoding corpus test: nested objects, arrays with
 * minItems/maxItems, enums, anyOf/oneOf/allOf, $ref/$defs, patterns and formats, bounded numbers,
 * required and optional keys. Each one bounds its documents (string lengths, item counts,
 * number ranges), so every sample finishes within the embedded model's 256-token context.
 */
const int = (minimum: number, maximum: number) => ({ type: "integer", minimum, maximum });
const str = (maxLength: number) => ({ type: "string", maxLength });

/** `[name, schema]` pairs. */
export const CORPUS: readonly [string, Record<string, unknown>][] = [
  ["flat object, all required", {
    type: "object",
    properties: { name: str(12), age: int(0, 120), active: { type: "boolean" } },
    required: ["name", "age", "active"],
  }],
  ["optional keys between required ones", {
    type: "object",
    properties: {
      a: int(0, 9),
      b: str(8),
      c: { type: "boolean" },
      d: { enum: ["x", "y"] },
      e: { type: "null" },
    },
    required: ["a", "d"],
  }],
  ["all keys optional", {
    type: "object",
    properties: { p: int(0, 99), q: str(6), r: { type: "boolean" } },
  }],
  ["nested objects", {
    type: "object",
    properties: {
      user: { type: "object", properties: { name: str(8), id: int(1, 999) }, required: ["name", "id"] },
      meta: { type: "object", properties: { ok: { type: "boolean" }, level: int(0, 3) }, required: ["ok"] },
    },
    required: ["user", "meta"],
    additionalProperties: false,
  }],
  ["array of integers, 2 to 4 items", { type: "array", items: int(-5, 5), minItems: 2, maxItems: 4 }],
  ["array of enums, 1 to 3 items", {
    type: "array",
    items: { enum: ["red", "green", "blue"] },
    minItems: 1,
    maxItems: 3,
  }],
  ["array of objects", {
    type: "array",
    items: { type: "object", properties: { x: int(0, 9), y: int(0, 9) }, required: ["x", "y"] },
    maxItems: 2,
  }],
  ["nested arrays", {
    type: "array",
    items: { type: "array", items: int(0, 9), maxItems: 3 },
    minItems: 1,
    maxItems: 2,
  }],
  ["string enum", { enum: ["north", "south", "east", "west"] }],
  ["mixed enum", { enum: ["a", 1, null, true, { k: [2] }] }],
  ["const property", {
    type: "object",
    properties: { kind: { const: "point" }, x: { type: "number", minimum: 0, maximum: 1 } },
    required: ["kind", "x"],
  }],
  ["anyOf of types", { anyOf: [int(0, 9), str(5)] }],
  ["anyOf of objects", {
    anyOf: [
      { type: "object", properties: { type: { const: "a" }, a: int(0, 9) }, required: ["type", "a"] },
      {
        type: "object",
        properties: { type: { const: "b" }, b: { type: "boolean" } },
        required: ["type", "b"],
      },
    ],
  }],
  ["oneOf with a discriminator", {
    oneOf: [
      { type: "object", properties: { t: { const: "cat" }, lives: int(1, 9) }, required: ["t", "lives"] },
      {
        type: "object",
        properties: { t: { const: "dog" }, good: { type: "boolean" } },
        required: ["t", "good"],
      },
    ],
  }],
  ["$ref to $defs", {
    $defs: { point: { type: "object", properties: { x: int(0, 9), y: int(0, 9) }, required: ["x", "y"] } },
    type: "object",
    properties: { from: { $ref: "#/$defs/point" }, to: { $ref: "#/$defs/point" } },
    required: ["from", "to"],
  }],
  ["$ref to definitions and a $ref root", {
    definitions: {
      size: { enum: ["S", "M", "L"] },
      item: {
        type: "object",
        properties: { size: { $ref: "#/definitions/size" }, n: int(1, 5) },
        required: ["size"],
      },
    },
    $ref: "#/definitions/item",
  }],
  ["allOf merged", {
    allOf: [
      { type: "object", properties: { a: int(0, 9) }, required: ["a"] },
      { properties: { b: { type: "boolean" } }, required: ["b"] },
    ],
  }],
  ["string pattern", {
    type: "object",
    properties: { code: { type: "string", pattern: "^[A-Z]{2}-[0-9]{3}$" } },
    required: ["code"],
  }],
  ["pattern with groups", { type: "string", pattern: "^[a-z]{1,8}(-[a-z]{1,8})?$" }],
  ["pattern and length together", { type: "string", pattern: "^[a-z]+$", minLength: 2, maxLength: 5 }],
  ["format date", {
    type: "object",
    properties: { day: { type: "string", format: "date" } },
    required: ["day"],
  }],
  ["format date-time", { type: "string", format: "date-time" }],
  ["format time", { type: "string", format: "time" }],
  ["format email", { type: "string", format: "email" }],
  ["format uuid", { type: "string", format: "uuid" }],
  ["format ipv4 and hostname", {
    type: "object",
    properties: { ip: { type: "string", format: "ipv4" }, host: { type: "string", format: "hostname" } },
    required: ["ip", "host"],
  }],
  ["numbers with bounds", {
    type: "object",
    properties: {
      lat: { type: "number", minimum: -90, maximum: 90 },
      lon: { type: "number", minimum: -180, maximum: 180 },
    },
    required: ["lat", "lon"],
  }],
  ["exclusive bounds", {
    type: "object",
    properties: {
      p: { type: "number", exclusiveMinimum: 0, exclusiveMaximum: 1 },
      n: { type: "integer", exclusiveMinimum: -3, maximum: 3 },
    },
    required: ["p", "n"],
  }],
  ["string or null (type list)", { type: ["string", "null"], maxLength: 6 }],
  ["nullable through anyOf", {
    type: "object",
    properties: { v: { anyOf: [str(6), { type: "null" }] } },
    required: ["v"],
  }],
  ["tuple with prefixItems", {
    type: "array",
    prefixItems: [int(0, 9), str(4), { type: "boolean" }],
    items: false,
    minItems: 2,
  }],
  ["map with propertyNames", {
    type: "object",
    additionalProperties: int(0, 9),
    propertyNames: { pattern: "^[a-z]{1,4}$" },
    maxProperties: 3,
  }],
  ["map with patternProperties", {
    type: "object",
    patternProperties: { "^k[0-9]$": { type: "boolean" } },
    maxProperties: 2,
  }],
  ["string length limits", { type: "string", minLength: 3, maxLength: 6 }],
  ["boolean", { type: "boolean" }],
];

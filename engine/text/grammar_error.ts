/**
 * The error of a grammar or schema that cannot be enforced: invalid, or using a feature that
 * constrained decoding cannot guarantee. Routes answer it with a 400 naming the request field.
 *
 * @module
 */

/**
 * A grammar request that is refused.
 *
 * @example
 * ```ts
 * import { GrammarError } from "./grammar_error.ts";
 * const e = new GrammarError("cannot be enforced", { keyword: "uniqueItems", path: "/properties/tags" });
 * e.message; // '"uniqueItems" at /properties/tags: cannot be enforced'
 * ```
 */
export class GrammarError extends TypeError {
  override name = "GrammarError";
  /** The JSON Schema keyword at fault, if any. */
  readonly keyword?: string;
  /** JSON pointer of the subschema at fault ("" for the root). */
  readonly path?: string;

  constructor(detail: string, where: { keyword?: string; path?: string } = {}) {
    const at = where.path ? ` at ${where.path}` : where.keyword && where.path === "" ? " at the root" : "";
    super(where.keyword ? `"${where.keyword}"${at}: ${detail}` : `${at ? at.slice(1) + ": " : ""}${detail}`);
    this.keyword = where.keyword;
    this.path = where.path;
  }
}

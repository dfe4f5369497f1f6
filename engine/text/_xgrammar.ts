/**
 * Loads XGrammar (npm `@mlc-ai/web-xgrammar`: the C++ library compiled to WebAssembly with
 * Emscripten) as separate instances, each with its own WebAssembly memory.
 *
 * The package declares `"type": "module"` but ships a UMD file that only works as CommonJS, so
 * neither `import` nor Deno's `require` can load it. This module reads the file once and evaluates
 * it as a CommonJS function body, handing it its own `console`: the library reports errors by
 * printing `[FATAL] file:line: message` and then aborting the WebAssembly instance, so the printed
 * lines are the only place the reason is found. An aborted instance must not be used again.
 *
 * Runs inside the grammar worker only; the server process needs read access to the npm cache and
 * nothing else (no network, no subprocess).
 *
 * @module
 */
import { createRequire } from "node:module";
import type * as XG from "@mlc-ai/web-xgrammar";
// A runtime import of the package (its package.json): it puts the package in this run's npm
// resolution whatever the lockfile, so `require.resolve` below finds its files.
import xgrammarPackage from "@mlc-ai/web-xgrammar/package.json" with { type: "json" };

/** The package's exports. */
export type XGrammar = typeof XG;

const PACKAGE = "@mlc-ai/web-xgrammar";
let factory: ((...args: unknown[]) => void) | null = null;
let filename = "";

/** One XGrammar instance and the lines it printed (warnings and fatal errors) since last taken. */
export interface XGrammarInstance {
  readonly xg: XGrammar;
  /** Returns and clears the printed lines. */
  takeLog(): string[];
}

/**
 * A fresh XGrammar instance (its WebAssembly module is instantiated on first use).
 *
 * @example
 * ```ts ignore
 * const { xg, takeLog } = loadXGrammar();
 * const g = await xg.Grammar.fromEBNF('root ::= "a"+');
 * ```
 */
export function loadXGrammar(): XGrammarInstance {
  if (!factory) {
    const require = createRequire(import.meta.url);
    filename = require.resolve(`${PACKAGE}/${xgrammarPackage.main}`);
    const source = Deno.readTextFileSync(filename);
    factory = new Function("exports", "module", "require", "__filename", "__dirname", "console", source) as (
      ...args: unknown[]
    ) => void;
  }
  const log: string[] = [];
  const capture = (...args: unknown[]) => void log.push(args.map(String).join(" "));
  const shim = { ...console, log: capture, info: capture, warn: capture, error: capture };
  const module = { exports: {} as Record<string, unknown> };
  const require = createRequire(import.meta.url);
  factory(module.exports, module, require, filename, filename.slice(0, filename.lastIndexOf("/")), shim);
  return { xg: module.exports as unknown as XGrammar, takeLog: () => log.splice(0) };
}

/**
 * The reason in XGrammar's printed lines: the `[FATAL]` or `[WARNING]` text without the C++
 * source location, or undefined when there is none.
 *
 * @example
 * ```ts
 * import { xgrammarMessage } from "./_xgrammar.ts";
 * xgrammarMessage(["[FATAL] /x/grammar_parser.cc:552: EBNF parser error at line 1, column 10: Rule \"foo\" is not defined", "Aborted()"]);
 * // 'EBNF parser error at line 1, column 10: Rule "foo" is not defined'
 * ```
 */
export function xgrammarMessage(lines: readonly string[]): string | undefined {
  for (const line of lines) {
    const m = line.match(/^\[(?:FATAL|WARNING)\]\s*(?:\S+:\d+:\s*)?([\s\S]*)$/);
    if (m) return m[1].trim();
  }
  return undefined;
}

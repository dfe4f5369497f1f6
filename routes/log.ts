/**
 * Structured logs: one JSON object per line, filtered by level. Request lines carry counts and
 * timings, never prompt or completion text.
 *
 * @module
 */

export const LOG_LEVELS = ["debug", "info", "warn", "error", "silent"] as const;
export type LogLevel = typeof LOG_LEVELS[number];

/** Writes one log record (a flat object) at `level`. */
export type Logger = (level: Exclude<LogLevel, "silent">, fields: Readonly<Record<string, unknown>>) => void;

/**
 * A logger that drops records below `level` and writes the rest as JSON lines.
 *
 * @example
 * ```ts
 * import { createLogger } from "./log.ts";
 * const lines: string[] = [];
 * const log = createLogger("info", (line) => lines.push(line));
 * log("debug", { msg: "dropped" });
 * log("info", { msg: "kept" }); // lines[0] is {"time":"...","level":"info","msg":"kept"}
 * ```
 */
export function createLogger(level: LogLevel, write: (line: string) => void = console.log): Logger {
  const min = LOG_LEVELS.indexOf(level);
  return function log(lvl, fields) {
    if (LOG_LEVELS.indexOf(lvl) < min) return;
    const clean = Object.fromEntries(Object.entries(fields).filter(([, v]) => v !== undefined));
    write(JSON.stringify({ time: new Date().toISOString(), level: lvl, ...clean }));
  };
}

/** A logger that writes nothing. */
export const silentLogger: Logger = () => {};

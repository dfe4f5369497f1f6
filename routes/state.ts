/**
 * What the HTTP layer knows about the process: the engine once loaded, whether it is draining, and
 * the requests in flight (so a shutdown can end them after its grace period).
 *
 * @module
 */
import type { Engine } from "../engine/run/engine.ts";
import { unavailable } from "./errors.ts";

export type Phase = "loading" | "ready" | "draining" | "closed";

/**
 * Lifecycle of one server process: `loading` -> `ready` -> `draining` -> `closed`.
 *
 * @example
 * ```ts ignore
 * const state = new ServerState();
 * state.ready(await Engine.load(path));
 * // on SIGTERM:
 * await state.shutdown(30_000);
 * ```
 */
export class ServerState {
  #engine: Engine | null = null;
  #phase: Phase = "loading";
  readonly #inflight = new Set<AbortController>();
  #problem: string | null = null;

  constructor(engine?: Engine) {
    if (engine) this.ready(engine);
  }

  get phase(): Phase {
    return this.#phase;
  }

  /** The engine, or null while loading. */
  get engine(): Engine | null {
    return this.#engine;
  }

  /** Why the process is unhealthy (the watchdog's finding), or null: `/health` answers 503 with it. */
  get problem(): string | null {
    return this.#problem;
  }

  /** Sets (or clears, with null) what makes the process unhealthy. */
  report(problem: string | null): void {
    this.#problem = problem;
  }

  /** Requests whose generation is still running. */
  get inflight(): number {
    return this.#inflight.size;
  }

  ready(engine: Engine): void {
    this.#engine = engine;
    if (this.#phase === "loading") this.#phase = "ready";
  }

  /** The engine for a new request, or a 503 while loading or draining. */
  acquire(): Engine {
    if (this.#phase === "loading" || !this.#engine) {
      throw unavailable("The model is still loading", "loading");
    }
    if (this.#phase !== "ready") throw unavailable("The server is shutting down", "shutting_down");
    return this.#engine;
  }

  /** Tracks a request's controller until `release`, so shutdown can abort it. */
  track(ac: AbortController): void {
    this.#inflight.add(ac);
  }

  release(ac: AbortController): void {
    this.#inflight.delete(ac);
  }

  /**
   * Turns `/ready` to 503 and refuses new work, lets running requests finish for up to `graceMs`,
   * aborts whatever is left, then closes the engine.
   */
  async shutdown(graceMs: number): Promise<void> {
    if (this.#phase === "draining" || this.#phase === "closed") return;
    this.#phase = "draining";
    const engine = this.#engine;
    if (engine) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const grace = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), graceMs)));
      const drained = await Promise.race([engine.drain().then(() => true), grace]);
      clearTimeout(timer);
      if (!drained) {
        const reason = unavailable("The server shut down before this request finished", "shutting_down");
        for (const ac of this.#inflight) ac.abort(reason);
      }
      await engine.close();
    }
    this.#phase = "closed";
  }
}

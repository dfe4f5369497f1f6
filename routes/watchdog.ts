/**
 * The watchdog: notices a forward step that has not returned within a bound (a kernel worker
 * stuck, a step that never ends) and reports it, so that whatever supervises the process can
 * restart it: `/health` answers 503 with the reason while it lasts (Kubernetes' liveness probe), and
 * if the step is still running after twice the bound, `onExpire` runs (the server exits non-zero,
 * which systemd's `Restart=on-failure` and any container runtime restart).
 *
 * @module
 */
import type { ServerState } from "./state.ts";

/** Settings of a {@linkcode Watchdog}. */
export interface WatchdogOptions {
  /** Seconds a step may run before `/health` reports the process wedged. */
  readonly limitSeconds: number;
  /** Called once when a step passes the limit (log it). */
  readonly onTrip?: (reason: string) => void;
  /** Called once when it recovers. */
  readonly onRecover?: () => void;
  /** Called once when a step passes twice the limit (exit). */
  readonly onExpire?: (reason: string) => void;
}

/**
 * Polls the engine's running step (`stats().stepRunningSeconds`) and sets the state's problem.
 *
 * @example
 * ```ts ignore
 * const dog = new Watchdog(state, { limitSeconds: 120, onExpire: () => Deno.exit(70) });
 * dog.start();
 * ```
 */
export class Watchdog {
  readonly #state: ServerState;
  readonly #opts: WatchdogOptions;
  #timer: ReturnType<typeof setInterval> | undefined;
  #tripped = false;
  #expired = false;

  constructor(state: ServerState, options: WatchdogOptions) {
    this.#state = state;
    this.#opts = options;
  }

  /** Checks every `min(1 s, limit / 4)` until {@linkcode Watchdog.stop}. */
  start(): void {
    if (this.#timer !== undefined || !(this.#opts.limitSeconds > 0)) return;
    const every = Math.min(1000, (this.#opts.limitSeconds * 1000) / 4);
    this.#timer = setInterval(() => this.check(), every);
    Deno.unrefTimer(this.#timer);
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** One check (the timer calls it; tests may too). */
  check(): void {
    const limit = this.#opts.limitSeconds;
    const running = this.#state.engine?.stats().stepRunningSeconds ?? 0;
    if (running > limit) {
      const reason = `a forward step has been running for ${Math.floor(running)} s (the limit is ${limit} s)`;
      this.#state.report(reason);
      if (!this.#tripped) {
        this.#tripped = true;
        this.#opts.onTrip?.(reason);
      }
      if (running > 2 * limit && !this.#expired) {
        this.#expired = true;
        this.#opts.onExpire?.(reason);
      }
    } else if (this.#tripped) {
      this.#tripped = false;
      this.#state.report(null);
      this.#opts.onRecover?.();
    }
  }
}

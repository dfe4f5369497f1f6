/**
 * Operations routes: `GET /health` (liveness: the process answers, and 503 with the reason when
 * the watchdog found a forward step stuck), `GET /ready` (503 while loading or draining, for load
 * balancers), `GET /metrics` (Prometheus) and `GET /v1/models`.
 *
 * @module
 */
import { Hono } from "hono";
import type { AppEnv, Deps } from "./context.ts";

const started = Math.floor(Date.now() / 1000);

/** The operations routes. */
export function healthRoutes({ state, metrics }: Deps): Hono<AppEnv> {
  return new Hono<AppEnv>()
    .get("/health", (c) => {
      const problem = state.problem;
      return problem ? c.json({ status: "wedged", reason: problem }, 503) : c.json({ status: "ok" });
    })
    .get("/ready", (c) => {
      const s = state.engine?.stats();
      const body = { status: state.phase, slots: s?.slots, busy_slots: s?.busySlots, queued: s?.queued };
      return c.json(
        body,
        state.phase === "ready" ? 200 : 503,
        state.phase === "ready" ? {} : { "Retry-After": "5" },
      );
    })
    .get(
      "/metrics",
      (c) =>
        c.text(metrics.render(state), 200, { "Content-Type": "text/plain; version=0.0.4; charset=utf-8" }),
    )
    .get("/v1/models", (c) => {
      const info = c.get("engine").info;
      const model = {
        id: info.id,
        object: "model",
        created: started,
        owned_by: "local",
        meta: {
          arch: info.arch,
          n_ctx: info.nCtx,
          n_slots: info.nSlots,
          n_vocab: info.nVocab,
          kernel: info.kernel,
          threads: info.threads,
          head: info.headType,
        },
      };
      return c.json({ object: "list", data: [model] });
    });
}

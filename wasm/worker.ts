/**
 * Entry of a pool worker. Messages, in order:
 * - `{ type: "init", ... }`: instantiate the kernel module over the shared memory with this
 *   worker's stack; answers `{ ready: true }`.
 * - `{ type: "load", path, jobs, stage }` (optional, once): run load jobs (load_jobs.ts);
 *   answers `{ progress: bytes }` as it goes, then `{ loaded: true, error }`.
 * - `{ type: "loop" }`: enter `bn_worker_loop` and stay there (sleeping on an atomic word between
 *   commands) until the pool posts BN_CMD_QUIT; answers `{ exited: code }`.
 * Anything thrown answers `{ fatal: message }` and ends the worker.
 *
 * @module
 */
import { type WorkerInit, WorkerInstance } from "./loader.ts";
import { type LoadJob, runLoadJobs } from "./load_jobs.ts";
import type { Region } from "./loader.ts";

declare const self: {
  onmessage: ((e: MessageEvent) => void) | null;
  postMessage(msg: unknown): void;
  close(): void;
};

let instance: WorkerInstance | null = null;

function handle(msg: { type: string } & Record<string, unknown>): void {
  if (msg.type === "load") {
    const error = runLoadJobs(
      msg.path as string,
      msg.jobs as LoadJob[],
      instance!,
      msg.stage as Region,
      (bytes) => self.postMessage({ progress: bytes }),
    );
    self.postMessage({ loaded: true, error });
  } else if (msg.type === "loop") {
    self.onmessage = null;
    self.postMessage({ exited: instance!.loop() });
    self.close();
  }
}

self.onmessage = (e: MessageEvent) => {
  const msg = e.data;
  if (msg.type === "init") {
    WorkerInstance.create(msg as WorkerInit)
      .then((inst) => {
        instance = inst;
        self.postMessage({ ready: true });
      })
      .catch((err) => self.postMessage({ fatal: String(err?.stack ?? err) }));
    return;
  }
  try {
    handle(msg);
  } catch (err) {
    self.postMessage({ fatal: String((err as Error)?.stack ?? err) });
    self.close();
  }
};

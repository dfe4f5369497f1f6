/**
 * Entry of a pool worker: receives its {module, memory, ctx, ith, stack}, instantiates the kernel
 * module and stays inside `bn_worker_loop` (sleeping on an atomic word between commands) until
 * the pool posts BN_CMD_QUIT. It never returns to its event loop while running.
 *
 * @module
 */
import { runWorker, type WorkerInit } from "./loader.ts";

declare const self: {
  onmessage: ((e: MessageEvent<WorkerInit>) => void) | null;
  postMessage(msg: unknown): void;
  close(): void;
};

self.onmessage = (e: MessageEvent<WorkerInit>) => {
  self.onmessage = null;
  runWorker(e.data, () => self.postMessage({ ready: true }))
    .then((code) => self.postMessage({ exited: code }))
    .catch((err) => self.postMessage({ error: String(err?.stack ?? err) }))
    .finally(() => self.close());
};

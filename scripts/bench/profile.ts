/**
 * The per-part profile of a decode step and a prefill step (bench child mode `profile`): the kernels
 * time each part of a forward step on every worker (kernels/prof.c, a clock imported from the host:
 * ms of work, and of waiting in the barrier after it), and the runtime adds what happens around
 * them (`ModelRuntime.setProfiling`: workers waking up, the host seeing the end). Decode is
 * profiled at the tg run's mean position and at `profileLongPos` (attention over a long cache),
 * prefill as steps of `ppTokens` tokens. The clock calls cost about a microsecond per part and
 * layer, so the profiled step is a little slower than an unprofiled one.
 *
 * @module
 */
import { loadModel } from "../../engine/model/loader.ts";
import type { ModelRuntime } from "../../engine/run/runtime.ts";
import type { StepProfile } from "../../engine/run/step_profile.ts";
import { mulberry32 } from "../_prng.ts";
import type { ChildConfig, ProfileResult } from "./result.ts";

const log = (msg: string) => console.error(`  ${msg}`);

/** Decode steps profiled at each position (after as many unprofiled warm-up steps). */
const DECODE_STEPS = 16;

async function fill(rt: ModelRuntime, tokens: number[], from: number): Promise<void> {
  const chunk = rt.sizes.maxBatch;
  for (let i = 0; i < tokens.length; i += chunk) {
    const part = tokens.slice(i, i + chunk);
    await rt.forward({
      tokens: part,
      pos: part.map((_, j) => from + i + j),
      slot: part.map(() => 0),
      outIdx: [part.length - 1],
    });
  }
}

async function decodeProfile(rt: ModelRuntime, token: () => number, pos: number): Promise<StepProfile> {
  for (let i = 0; i < 2 * DECODE_STEPS; i++) {
    if (i === DECODE_STEPS) rt.setProfiling(true);
    await rt.forward({ tokens: [token()], pos: [pos + (i % DECODE_STEPS)], slot: [0], outIdx: [0] });
  }
  const p = rt.takeProfile();
  rt.setProfiling(false);
  return p;
}

/** Runs the profile child: load, fill the cache, profile. */
export async function runProfile(cfg: ChildConfig): Promise<ProfileResult> {
  const w = cfg.workload;
  const longPos = Math.min(w.profileLongPos, w.singleCtx - DECODE_STEPS);
  const { runtime: rt } = await loadModel(cfg.model, {
    threads: cfg.threads,
    kernel: cfg.kernel,
    head: cfg.head,
    nCtx: w.singleCtx,
    nSlots: 1,
    maxBatch: Math.max(128, w.ppTokens),
    maxOut: 1,
  });
  try {
    const rand = mulberry32(cfg.seed);
    const token = () => Math.floor(rand() * rt.config.nVocab);
    const prompt = (n: number) => Array.from({ length: n }, token);
    const shortPos = Math.round(w.shortPrompt + w.tgTokens / 2);
    await fill(rt, prompt(shortPos), 0);
    const decode = await decodeProfile(rt, token, shortPos);
    log(`decode at position ${shortPos}: ${decode.stepMs.toFixed(2)} ms/token`);

    const pp = prompt(w.ppTokens);
    await fill(rt, pp, 0); // warm
    rt.setProfiling(true);
    for (let r = 0; r < w.reps; r++) await fill(rt, pp, 0);
    const prefill = rt.takeProfile();
    rt.setProfiling(false);
    log(`prefill of ${w.ppTokens}: ${prefill.stepMs.toFixed(1)} ms/step`);

    await fill(rt, prompt(Math.max(0, longPos - w.ppTokens)), w.ppTokens); // the rest of the context
    const decodeLong = await decodeProfile(rt, token, longPos);
    log(`decode at position ${longPos}: ${decodeLong.stepMs.toFixed(2)} ms/token`);
    const c = rt.config;
    const ternary = c.nLayers * (2 * c.dim * c.dim + 2 * c.kvDim * c.dim + 3 * c.dim * c.ffnDim);
    const macs = { ternary, head: c.nVocab * c.dim };
    return {
      mode: "profile",
      decode,
      decodePos: shortPos,
      prefill,
      decodeLong,
      decodeLongPos: longPos,
      macs,
    };
  } finally {
    await rt.close();
  }
}

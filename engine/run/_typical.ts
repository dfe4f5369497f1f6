/**
 * Locally typical sampling (Meister et al., "Locally Typical Sampling", 2022; llama.cpp's
 * `typical_p`): keep the tokens whose surprisal `-log p` is closest to the distribution's entropy,
 * in that order, until their probability mass reaches `p`.
 *
 * Works on the sampler's unnormalized weights (`e[i] = exp((logit - max) / T)`) in place: excluded
 * entries become 0. The order is found with a histogram of the distance `|-log p - H|` (buckets
 * 1/64 nat wide), and only the bucket the cut falls in is sorted (by distance, then index), so the
 * whole vocabulary costs two passes and a log per token, never a sort.
 *
 * @module
 */

const BUCKETS_PER_NAT = 64;
const BUCKETS = 4096;

/** Scratch buffers reused across calls. */
export class TypicalScratch {
  mass = new Float64Array(BUCKETS);
  dist = new Float64Array(0);
  idx = new Int32Array(0);
}

/**
 * Zeroes the entries of `e[0, len)` outside the typical set of mass `p` (0 < p < 1); `z` is their
 * sum. Returns the kept weights' sum and the largest kept weight. At least one entry stays.
 */
export function typicalFilter(
  e: Float64Array,
  len: number,
  z: number,
  p: number,
  s: TypicalScratch,
): { z: number; max: number } {
  if (s.dist.length < len) {
    s.dist = new Float64Array(len);
    s.idx = new Int32Array(len);
  }
  const dist = s.dist, logZ = Math.log(z);
  let h = 0;
  for (let i = 0; i < len; i++) {
    if (e[i] > 0) {
      const logq = Math.log(e[i]) - logZ;
      h -= Math.exp(logq) * logq;
    }
  }
  const mass = s.mass.fill(0);
  for (let i = 0; i < len; i++) {
    if (!(e[i] > 0)) continue;
    const d = dist[i] = Math.abs(logZ - Math.log(e[i]) - h);
    mass[bucket(d)] += e[i] / z;
  }
  let cut = BUCKETS - 1, cum = 0;
  for (let b = 0; b < BUCKETS; b++) {
    if (cum + mass[b] >= p) {
      cut = b;
      break;
    }
    cum += mass[b];
  }
  // the cut's bucket, closest first; keep entries until the mass reaches p
  let n = 0;
  for (let i = 0; i < len; i++) if (e[i] > 0 && bucket(dist[i]) === cut) s.idx[n++] = i;
  const edge = s.idx.subarray(0, n).sort((a, b) => dist[a] - dist[b] || a - b);
  let keepInCut = 0;
  for (; keepInCut < edge.length;) {
    cum += e[edge[keepInCut++]] / z;
    if (cum >= p) break;
  }
  for (let j = keepInCut; j < edge.length; j++) e[edge[j]] = 0;
  let kept = 0, max = 0, any = false;
  for (let i = 0; i < len; i++) {
    if (!(e[i] > 0)) continue;
    if (bucket(dist[i]) > cut) {
      e[i] = 0;
      continue;
    }
    any = true;
    kept += e[i];
    if (e[i] > max) max = e[i];
  }
  if (!any) throw new RangeError("typical sampling kept no token"); // unreachable: the cut keeps one
  return { z: kept, max };
}

function bucket(d: number): number {
  const b = d * BUCKETS_PER_NAT;
  return b < BUCKETS - 1 ? b | 0 : BUCKETS - 1;
}

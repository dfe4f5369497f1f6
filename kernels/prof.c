/*
 * prof.c: the step profile (bn.h, BN_PART_*): per thread, ms of work and of barrier wait for each
 * part of a forward step, read from a clock the host imports (env.bn_clock, ms since the epoch, so
 * the host can also see how long the workers took to wake). Off (one load and a branch per mark)
 * unless state.prof is set. No allocation, no I/O.
 */
#include "bn_impl.h"

__attribute__((import_module("env"), import_name("bn_clock"))) double bn_clock(void);

void bn_prof_begin(const bn_ctx *c, int ith, int part) {
  double *p = c->state.prof;
  if (!p) return;
  p += (size_t)ith * BN_PROF_STRIDE;
  const double t = bn_clock();
  p[0] = p[1] = p[2] = t;
  p[3] = (double)part;
}

static void bn_prof_charge(double *p, int part) {
  const double t = bn_clock();
  p[4 + 2 * (int)p[3]] += t - p[2];
  p[1] = p[2] = t;
  p[3] = (double)part;
}

void bn_prof_mark(const bn_ctx *c, int ith, int part) {
  double *p = c->state.prof;
  if (!p) return;
  p += (size_t)ith * BN_PROF_STRIDE;
  if (p[3] == (double)part) return; /* still timing it: no clock reading (each costs ~0.7 us) */
  bn_prof_charge(p, part);
}

void bn_prof_end(const bn_ctx *c, int ith) {
  double *p = c->state.prof;
  if (p) bn_prof_charge(p + (size_t)ith * BN_PROF_STRIDE, 0);
}

void bn_sync(bn_ctx *c, int ith, int nth, int next) {
  double *p = c->state.prof;
  if (!p) {
    bn_barrier(&c->pool, nth);
    return;
  }
  p += (size_t)ith * BN_PROF_STRIDE;
  const double t0 = bn_clock();
  const int part = (int)p[3];
  p[4 + 2 * part] += t0 - p[2];
  bn_barrier(&c->pool, nth);
  const double t1 = bn_clock();
  p[5 + 2 * part] += t1 - t0;
  p[1] = p[2] = t1;
  p[3] = (double)next;
}

uint32_t bn_prof_stride(void) { return BN_PROF_STRIDE; }

/*
 * test_rng.h — the kernel checks' source of test data: xorshift64* with a
 * fixed seed, so every run sees the same numbers.  Header-only; each check
 * includes it once.
 */
#ifndef LF_TEST_RNG_H
#define LF_TEST_RNG_H

#include <stdint.h>

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint32_t rng_u32(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545f4914f6cdd1dull) >> 32);
}

static float rng_uniform(void) /* [-1, 1) */
{
    return (float)(rng_u32() >> 8) * (2.0f / 16777216.0f) - 1.0f;
}

#endif

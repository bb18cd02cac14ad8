/* cudaemu: __half on the host's _Float16 conversions (round to nearest even) */
#ifndef CUDAEMU_CUDA_FP16_H
#define CUDAEMU_CUDA_FP16_H
#include "cuda_runtime.h"
typedef struct __half_raw { unsigned short x; } __half_raw;
static inline unsigned short emu_f32_to_f16_bits(float f) { _Float16 h = (_Float16)f; unsigned short u; memcpy(&u, &h, 2); return u; }
static inline float emu_f16_bits_to_f32(unsigned short u) { _Float16 h; memcpy(&h, &u, 2); return (float)h; }
#ifdef __cplusplus
struct __attribute__((aligned(2))) __half {
    unsigned short __x;
    __half() = default;
    __half(const __half_raw &r) : __x(r.x) {}
    __half(float f) : __x(emu_f32_to_f16_bits(f)) {}
    __half(double f) : __x(emu_f32_to_f16_bits((float)f)) {}
    __half(int v) : __x(emu_f32_to_f16_bits((float)v)) {}
    operator float() const { return emu_f16_bits_to_f32(__x); }
    __half &operator=(float f) { __x = emu_f32_to_f16_bits(f); return *this; }
};
struct __attribute__((aligned(4))) __half2 { __half x, y; __half2() = default; __half2(__half a, __half b) : x(a), y(b) {} };
static inline __half emu_half_from_bits(unsigned short b) { __half h; h.__x = b; return h; }
static inline __half operator+(__half a, __half b) { return __half((float)a + (float)b); }
static inline __half operator-(__half a, __half b) { return __half((float)a - (float)b); }
static inline __half operator*(__half a, __half b) { return __half((float)a * (float)b); }
static inline __half operator/(__half a, __half b) { return __half((float)a / (float)b); }
typedef __half half;
typedef __half2 half2;
static inline __half __float2half(float f) { return emu_half_from_bits(emu_f32_to_f16_bits(f)); }
static inline __half __float2half_rn(float f) { return emu_half_from_bits(emu_f32_to_f16_bits(f)); }
static inline float __half2float(__half h) { return emu_f16_bits_to_f32(h.__x); }
static inline unsigned short __half_as_ushort(__half h) { return h.__x; }
static inline __half __ushort_as_half(unsigned short u) { return emu_half_from_bits(u); }
static inline __half2 __floats2half2_rn(float a, float b) { return __half2(__float2half_rn(a), __float2half_rn(b)); }
static inline float2 __half22float2(__half2 h) { return make_float2((float)h.x, (float)h.y); }
#else
typedef struct __half { unsigned short __x; } __half;
#endif
#endif

/* cudaemu: a minimal driver API header (types only, plus cuInit / cuDriverGetVersion) */
#ifndef CUDAEMU_CUDA_H
#define CUDAEMU_CUDA_H
#include "cuda_runtime.h"
#define CUDA_VERSION 13000
typedef enum cudaError_enum { CUDA_SUCCESS = 0, CUDA_ERROR_INVALID_VALUE = 1, CUDA_ERROR_NO_DEVICE = 100 } CUresult;
typedef int CUdevice;
typedef struct CUctx_st *CUcontext;
typedef struct CUstream_st *CUstream;
typedef struct CUevent_st *CUevent;
typedef unsigned long long CUdeviceptr;
static inline CUresult cuInit(unsigned int f) { (void)f; return CUDA_SUCCESS; }
static inline CUresult cuDriverGetVersion(int *v) { *v = 13000; return CUDA_SUCCESS; }
#endif

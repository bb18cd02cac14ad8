/* cudaemu */
#include "cuda_runtime.h"

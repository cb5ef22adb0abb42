// GPU pre-processing for the detector. Compiled ahead of time on the device by `ocr-daemon build-kernels`
// (daemon/gpu/kernel_build.py: pycuda.compiler.compile, no_extern_c, -O3) into engines/kernels.sm<cc>.cubin;
// the daemon loads that cubin and refuses it once this file changes (its sha256 is in the sidecar).
//
// letterbox_bgr_to_chw: uint8 BGR HWC frame -> float32 CHW detector input, in one pass:
// bilinear resize with OpenCV's INTER_LINEAR conventions (half-pixel centres,
// src = (dst + 0.5) * (src_size / dst_size) - 0.5, clamped at the borders, weights in float),
// normalization x * mul + add, and zero fill outside the letterboxed area. It must agree with
// daemon.ocr.det_pre.preprocess_det to 1e-3; tests/test_gpu_preprocess.py checks that.

// One axis of the source coordinate as OpenCV computes it: in double, then rounded to float, clamped
// at the borders. The two source taps s0, s1 and the weight w1 of s1.
__device__ __forceinline__ void source_taps(int d, double scale, int size, int* s0, int* s1, float* w1)
{
    float f = (float)((d + 0.5) * scale - 0.5);
    int s = (int)floorf(f);
    f -= s;
    if (s < 0) { f = 0.f; s = 0; }
    if (s >= size - 1) { f = 0.f; s = size - 1; }
    *s0 = s;
    *s1 = min(s + 1, size - 1);
    *w1 = f;
}

extern "C" __global__ void letterbox_bgr_to_chw(
    const unsigned char* __restrict__ src, int src_h, int src_w, int src_pitch,
    float* __restrict__ dst, int dst_h, int dst_w, int new_h, int new_w,
    double scale_y, double scale_x, float mul, float add)
{
    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= dst_w || y >= dst_h) return;
    const size_t plane = (size_t)dst_h * dst_w;
    const size_t o = (size_t)y * dst_w + x;
    if (x >= new_w || y >= new_h) {          // the letterbox padding: 0 after normalization
        dst[o] = 0.f; dst[o + plane] = 0.f; dst[o + 2 * plane] = 0.f;
        return;
    }
    int sx, sx1, sy, sy1;
    float fx, fy;
    source_taps(x, scale_x, src_w, &sx, &sx1, &fx);
    source_taps(y, scale_y, src_h, &sy, &sy1, &fy);

    const float ax0 = 1.f - fx, ax1 = fx, by0 = 1.f - fy, by1 = fy;
    const unsigned char* r0 = src + (size_t)sy * src_pitch;
    const unsigned char* r1 = src + (size_t)sy1 * src_pitch;
    #pragma unroll
    for (int c = 0; c < 3; ++c) {
        // Horizontal pass per row, then vertical, as OpenCV's separable resize does.
        const float h0 = (float)r0[sx * 3 + c] * ax0 + (float)r0[sx1 * 3 + c] * ax1;
        const float h1 = (float)r1[sx * 3 + c] * ax0 + (float)r1[sx1 * 3 + c] * ax1;
        const float v = h0 * by0 + h1 * by1;
        dst[o + c * plane] = v * mul + add;
    }
}

// Stand-in for an engine where TensorRT is absent (tests and benchmarks): every block spins for
// `cycles` SM clock cycles. A chain of these on a stream occupies the GPU for a known time.
extern "C" __global__ void busy_wait(long long cycles, int* sink)
{
    const long long start = clock64();
    long long now = start;
    while (now - start < cycles) now = clock64();
    if (threadIdx.x == 0 && now == 0) sink[blockIdx.x] = 1;   // never true; keeps the loop alive
}

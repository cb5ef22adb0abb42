// GPU pre-processing for the detector, compiled at run time by pycuda (SourceModule, no_extern_c).
//
// letterbox_bgr_to_chw: uint8 BGR HWC frame -> float32 CHW detector input, in one pass:
// bilinear resize with OpenCV's INTER_LINEAR conventions (half-pixel centres,
// src = (dst + 0.5) * (src_size / dst_size) - 0.5, clamped at the borders, weights in float),
// normalization x * mul + add, and zero fill outside the letterboxed area. It must agree with
// daemon.ocr.det_pre.preprocess_det to 1e-3; tests/test_gpu_preprocess.py checks that.

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
    // Source coordinate as OpenCV computes it: in double, then rounded to float.
    float fx = (float)((x + 0.5) * scale_x - 0.5);
    int sx = (int)floorf(fx);
    fx -= sx;
    if (sx < 0) { fx = 0.f; sx = 0; }
    if (sx >= src_w - 1) { fx = 0.f; sx = src_w - 1; }
    const int sx1 = min(sx + 1, src_w - 1);

    float fy = (float)((y + 0.5) * scale_y - 0.5);
    int sy = (int)floorf(fy);
    fy -= sy;
    if (sy < 0) { fy = 0.f; sy = 0; }
    if (sy >= src_h - 1) { fy = 0.f; sy = src_h - 1; }
    const int sy1 = min(sy + 1, src_h - 1);

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

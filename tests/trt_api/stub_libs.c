/* FOR INTROSPECTION ONLY. Empty definitions of the dozen functions that NVIDIA's TensorRT Python
 * bindings (tensorrt.so) import from libnvinfer, libnvonnxparser, libnvinfer_plugin and, in 8.6,
 * libnvparsers (`nm -D --undefined-only tensorrt.so`). tests/trt_api/bindings.py compiles this file
 * under each of those library names into build/trt-api/ so that `import tensorrt_bindings` succeeds and
 * its real classes, enums and signatures can be read. Every function returns 0 (NULL): nothing can run.
 * The daemon never loads these: they exist only under build/trt-api/, on LD_LIBRARY_PATH of the test
 * subprocess (tests/trt_api/scenarios.py). C++ symbols are defined by their mangled names. */
void *createInferBuilder_INTERNAL(void) { return 0; }
void *createInferRuntime_INTERNAL(void) { return 0; }
void *createInferRefitter_INTERNAL(void) { return 0; }
void *createNvOnnxParser_INTERNAL(void) { return 0; }
void *createNvOnnxParserRefitter_INTERNAL(void) { return 0; }
int getNvOnnxParserVersion(void) { return 0; }
void *getPluginRegistry(void) { return 0; }
void *getBuilderPluginRegistry(void) { return 0; }
int initLibNvInferPlugins(void) { return 0; }
void *_ZN14nvcaffeparser123shutdownProtobufLibraryEv(void) { return 0; }
void *_ZN14nvcaffeparser117createCaffeParserEv(void) { return 0; }
void *_ZN11nvuffparser8FieldMapC1EPKcPKvNS_9FieldTypeEi(void) { return 0; }
void *_ZN11nvuffparser15createUffParserEv(void) { return 0; }

"""Post-training INT8 quantization into Q/DQ ONNX (`ocr-daemon calibrate`) and its accuracy report."""

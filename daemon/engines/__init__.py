"""TensorRT engines: naming, JSON sidecars that tie an engine to its GPU, TensorRT version and model,
and the `build-engine` subcommand. Only build.py touches TensorRT, and only inside its functions."""

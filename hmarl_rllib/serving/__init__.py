"""Layer ``serving``: a trained policy in use. ``export`` (checkpoint -> ONNX + manifest),
``deploy`` (load an export; numpy + onnxruntime, no Ray, no torch), ``recommend`` (tomorrow's
orders from a state file), ``serve`` (Ray Serve) and ``bench_serve``. Imports every layer below."""

"""The recdistill service: FastAPI + onnxruntime, serving the distilled student. Never imports torch."""

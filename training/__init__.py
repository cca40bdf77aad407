"""The offline job: data -> teacher -> soft labels -> student -> ONNX -> evaluation -> publish.

The only package that imports torch (and only inside the modules that train or export).
"""

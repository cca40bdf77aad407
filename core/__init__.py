"""Numpy-only code that both the offline job (training/) and the service (app/) import.

Nothing here may import torch, fastapi or onnxruntime: it is the contract between the two sides.
"""

"""The teacher: what every later stage reads of one (`protocol.py`), our two-tower and its fit, and
the user's own teacher imported (`imported.py` over `spec.py`, `onnx_graph.py`, `module.py`).
"""

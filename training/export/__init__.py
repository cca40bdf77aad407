"""From trained models to a published version: ONNX graphs, their parity with PyTorch, a reduced item
precision, the ANN index, the data files a version carries, and the atomic publish.
"""

"""ONNX graphs: the export/optimize/quantize recipes (plan), building them (build) and checking
a built graph against PyTorch (validation)."""

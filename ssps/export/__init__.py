"""Deployable encoders: ONNX / TorchScript export of a checkpoint's embedder, and running the files.

``frontend`` (an export-friendly log-mel front end), ``formats`` (the exported module and writing the
files with their metadata), ``runtime`` (loading and running them), ``commands`` (``ssps export``).
"""

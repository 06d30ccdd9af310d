"""Deployable encoders: ONNX / TorchScript export of a checkpoint's embedder, and running the files.

``frontend`` (an export-friendly log-mel front end), ``model`` (what is exported), ``formats`` (writing
the files with their metadata), ``runtime`` (loading and running them), ``commands`` (``ssps export``).
"""

"""ssps: self-supervised speaker verification with Self-Supervised Positive Sampling."""

__version__ = "0.1.0"


def __getattr__(name):
    # Lazy: `import ssps` stays cheap; ssps.Verifier pulls in torch only when used.
    if name == "Verifier":
        from ssps.eval.verifier import Verifier

        return Verifier
    raise AttributeError(name)

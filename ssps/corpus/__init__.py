"""The built-in corpus: MBROLA voices read English in simulated recording sessions (``ssps data synth``)."""

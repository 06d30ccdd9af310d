"""``ssps demo``: the main job end to end on the built-in corpus, with a report."""

"""Where a model comes from: ``--model`` resolution (a registered name, a directory, a ``.gguf`` file, a hub id)
and the one-time GGUF conversion."""

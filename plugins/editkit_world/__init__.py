"""editkit_world: the built-in demo knowledge world and a small GPT-2 that has learned it."""

"""The job that runs the kernel: what `editkit run` (and `trace`) decide, the run directory and its journal, the
edit-and-evaluate pipeline, and the artifacts a run leaves (apply, revert, export)."""

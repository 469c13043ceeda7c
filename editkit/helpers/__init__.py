"""The helpers plugins use (re-exported by :mod:`editkit.api`): tokenising around a subject, scoped torch hooks,
teacher-forced scoring, generation, the model's context window, atomic writes, progress, metric options."""

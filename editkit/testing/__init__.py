"""Test support for editkit and for plugin authors (tiny models, tokenizers, fixtures)."""

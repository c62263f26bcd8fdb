"""Helpers the tests share: fixture writers in the datasets' formats, the tiny configuration,
resume checks, and the multi-node driver script."""

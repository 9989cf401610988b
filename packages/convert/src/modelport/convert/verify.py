"""Verify a produced model by running it on the eval images against the reference outputs (modelport.runtime.converter)."""

from modelport.runtime.converter import verify as verify

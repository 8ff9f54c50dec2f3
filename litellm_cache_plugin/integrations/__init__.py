"""Adapters to the outside world. Only this package imports LiteLLM."""

"""Ollama-compatible simulator: lets the demo, end-to-end tests and benchmarks run without Ollama.

Run it with ``python -m litellm_cache_plugin.simulator`` or, in-process, with
:class:`SimulatorThread`.
"""

from litellm_cache_plugin.simulator.server import SimModel, SimulatorConfig, SimulatorThread, create_app

__all__ = ["SimModel", "SimulatorConfig", "SimulatorThread", "create_app"]

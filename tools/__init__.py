"""Repository tooling, not shipped in the wheel: the demo (``python -m tools.demo``, run by
``scripts/demo.sh``) and :mod:`tools.runner`, which starts real ``litellm`` proxy processes for the
demo, the end-to-end tests and the benchmarks."""

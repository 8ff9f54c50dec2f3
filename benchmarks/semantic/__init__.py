"""Quality benchmark of the semantic layer: ``python benchmarks/semantic/run.py`` (see README.md here).

Not part of the runtime package: the data sets and the evaluation live here, the layer in
``litellm_cache_plugin.semantic``.
"""

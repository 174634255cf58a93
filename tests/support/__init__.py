"""What the tests share: models, the loopback LLM server, search fixtures, cache entries and child scripts.

Test data (kernels, regions, adversarial candidates, cache fixtures) is under ``tests/data``; its paths are in
:mod:`support.paths`.
"""

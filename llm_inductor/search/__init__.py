"""The tune path: pending regions → search loop → verify → in-graph gate → stored winners.

tune.py        ``tune``: search kernels for region files or the pending regions, store the winners
online.py      online mode: tune a graph's hot misses during the compile (through the region pass's hook)
register.py    what ``import llm_inductor`` registers: the built-in providers, the region pass's hook
context.py     everything a prompt says about one region; baseline.py: Inductor's kernel and time for it
loop.py        plan a round, draw its candidates, verify each, feed back, stop; strategies.py: what to send
verdict.py     a candidate's source → an attempt's outcome; gate.py: the whole graph with and without it
winners.py     a region's winner → a cache entry → the store; similar.py: past winners as examples
search_state.py  one region's search state between rounds; records.py: one JSON line per LLM answer
graphs.py      the whole ATen graph a hot region came from; gpu_facts.py: the device as a prompt describes it
progress.py    the live line per region and the summary table; cli.py: ``llm-inductor tune`` (CLI layer)
llm/           the LLM I/O: providers and their registry, prompts, budgets
"""

"""The tune path's LLM I/O: what a prompt says and who answers it.

    providers.py        the provider interface, the registry (``register_provider``/``select_provider``), custom ids
    openai_provider.py  any OpenAI-compatible endpoint (the async SDK, retries, a concurrency limit)
    batch.py            the Batch API's request and output files
    replay.py           answers from a recorded file, by prompt hash
    budget.py           calls, tokens, dollars and seconds, per region and per run
    prompts.py          prompts from the versioned templates in templates/

Providers register themselves when imported (``llm_inductor.search.register`` imports the
built-in ones); the registry and the search loop import none of them.
"""

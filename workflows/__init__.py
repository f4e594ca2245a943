"""Commands that combine the engine, the strategies and the models (walk-forward), each
registered through the ``papertape.commands`` entry points."""

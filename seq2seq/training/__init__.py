"""Training: the recipe (``trainer.py``) and what it is made of: where training stands and
its budgets (``budget.py``), the data it trains on (``data.py``), one update (``step.py``),
the learning-rate schedule (``schedule.py``), the loss (``loss.py``), validation
(``validation.py``), what training reports (``log.py``), stop signals (``signals.py``),
several processes (``distributed.py``) and the parent checkpoint a fine-tune starts from
(``parent.py``).

May import: ``inference`` (validation translates), ``checkpoints``, ``decoding``,
``models``, ``data`` and the leaf modules. Nothing imports it but the commands, except
``training.schedule``, whose list of decays ``config`` checks against, and
``training.signals``, whose stops ``cli/runner.py`` turns into exit statuses.
"""

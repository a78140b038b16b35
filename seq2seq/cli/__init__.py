"""What the six commands (``train``, ``prepare``, ``evaluate``, ``translate``, ``average``,
``export``) share: the wrapper that composes a config, prints ``--help`` and turns a
user's mistake into one ``error:`` line and a stop into its exit status (``runner.py``),
the checks of the files named on a command line (``files.py``) and the translator that
evaluate and translate load (``loading.py``).

May import every other package: it is the top, just under the commands themselves.
"""

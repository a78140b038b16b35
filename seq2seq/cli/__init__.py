"""What the six commands (``train``, ``prepare``, ``evaluate``, ``translate``, ``average``,
``export``) share: the wrapper that composes a config, prints ``--help`` and turns a
user's mistake into one ``error:`` line (``runner.py``), and the checks of the files
named on a command line (``files.py``).

May import every other package: it is the top, just under the commands themselves.
"""

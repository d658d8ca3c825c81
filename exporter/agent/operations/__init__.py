"""Built-in agent operations: one module per operation, named as requests name it.

A module here is an operation when it has a docstring (shown by
``probewatch agent --list-operations``) and a function
``collect(args: list[str]) -> dict[str, float]`` returning named numbers; those
names become ``field`` labels on ``probewatch_probe_value`` at the prober.  An
optional ``ARGUMENTS`` string describes the arguments it takes (empty: none).
Third-party operations register through the ``probewatch.agent_operations``
entry point group (``name = "package.module"``).
"""

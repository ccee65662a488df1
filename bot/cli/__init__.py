"""The ``supportbot`` command line: the parser, one module per command group, the run wiring."""

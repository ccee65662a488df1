"""The ``supportbot`` command line: ``main`` dispatches, ``parser`` defines the commands,
one ``*_cmd`` module per command group, ``run`` wires up the long-running bot."""

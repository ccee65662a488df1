"""Where documents come from: the installed keras package's source, a keras-io checkout (and its
site map), a docs git repository.
"""

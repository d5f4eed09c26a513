"""Serves a WSGI app with bjoern (one process, one thread), for benches/compare.sh.

    python bjoern_serve.py MODULE:ATTRIBUTE HOST PORT      (MODULE found on PYTHONPATH)
"""
import importlib
import sys

import bjoern

target, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
module, _, attribute = target.partition(":")
app = getattr(importlib.import_module(module), attribute)
bjoern.run(app, host, port)

"""Mercurial's hgwebdir: every repository below repos/, with hgweb.config's [web] settings.

Mercurial's own contrib/hgweb.wsgi, with one change: the repositories are named by an
absolute path, because hgwebdir reads the [paths] of a configuration file relative to the
working directory, and IIS's (w3wp's) is not this one. Set up once, from this directory:

    python3 -m venv .venv
    .venv/bin/pip install mercurial                     (Windows: .venv\\Scripts\\pip)
    .venv/bin/hg init repos/demo

then serve it with isapi_wsgi.ini (it says how), and `hg clone` / `hg push` against it.
"""
import os

HERE = os.path.dirname(os.path.abspath(__file__))

# Enable demand loading before anything else of Mercurial's is imported, as Mercurial's
# hgweb.wsgi does (modules are imported when first used: a faster start). Mercurial 7.2
# also pushes without it under isapi-wsgi, but it is tested as Mercurial ships it.
from mercurial import demandimport  # noqa: E402

demandimport.enable()

from mercurial import ui as uimod  # noqa: E402
from mercurial.hgweb import hgweb  # noqa: E402

# What hgwebdir sets up for itself when it reads a configuration file, then hgweb.config.
baseui = uimod.ui.load()
baseui.setconfig(b"ui", b"report_untrusted", b"off", b"hgweb_site")
baseui.setconfig(b"ui", b"nontty", b"true", b"hgweb_site")
baseui.setconfig(b"progress", b"disable", b"true", b"hgweb_site")
baseui.readconfig(os.fsencode(os.path.join(HERE, "hgweb.config")), trust=True)

# Every repository directly below repos/, published as /<name> below the application.
application = hgweb([(b"/", os.fsencode(os.path.join(HERE, "repos", "*")))], baseui=baseui)

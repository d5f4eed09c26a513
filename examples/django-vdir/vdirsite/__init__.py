"""A Django project for a nested IIS application (see ../isapi_wsgi.ini to run it)."""

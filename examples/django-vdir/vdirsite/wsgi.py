"""The WSGI application, `[wsgi] app = vdirsite.wsgi:application`."""
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vdirsite.settings")
application = get_wsgi_application()

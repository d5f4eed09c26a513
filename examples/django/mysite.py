"""A one-file Django site. Set up its virtual environment once:

    python3 -m venv examples/django/.venv
    examples/django/.venv/bin/pip install django         (Windows: .venv\\Scripts\\pip)

then serve it with examples/django/isapi_wsgi.ini. A real project points `[wsgi] app` at
`mysite.wsgi:application` instead, with `path` naming the directory above `mysite/`.
"""
import django
from django.conf import settings

settings.configure(
    DEBUG=False,
    SECRET_KEY="change-me-for-anything-real",
    ROOT_URLCONF=__name__,
    ALLOWED_HOSTS=["*"],
    MIDDLEWARE=["django.middleware.common.CommonMiddleware", "django.middleware.csrf.CsrfViewMiddleware"],
    INSTALLED_APPS=[],
    DATABASES={},
)
django.setup()

from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import HttpResponse  # noqa: E402
from django.middleware.csrf import get_token  # noqa: E402
from django.urls import path  # noqa: E402


def index(request):
    if request.method == "POST":
        return HttpResponse("Thank you, %s." % request.POST.get("name", "stranger"))
    return HttpResponse(
        '<h1>Django under isapi-wsgi</h1><form method="post">'
        '<input type="hidden" name="csrfmiddlewaretoken" value="%s">'
        '<input name="name" placeholder="your name"><button>Send</button></form>' % get_token(request)
    )


urlpatterns = [path("", index)]
application = get_wsgi_application()

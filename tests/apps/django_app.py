"""A one-file Django project for the framework tests (mounted at /django by frameworks.py)."""
import django
from django.conf import settings

settings.configure(
    DEBUG=False,
    SECRET_KEY="only-for-the-isapi-wsgi-tests",
    ROOT_URLCONF=__name__,
    ALLOWED_HOSTS=["localhost", "127.0.0.1"],
    APPEND_SLASH=False,
    MIDDLEWARE=[
        "django.middleware.common.CommonMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
    ],
    INSTALLED_APPS=[],
    DATABASES={},
    USE_TZ=True,
)
django.setup()

import json  # noqa: E402

from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import HttpResponse, JsonResponse  # noqa: E402
from django.middleware.csrf import get_token  # noqa: E402
from django.shortcuts import redirect  # noqa: E402
from django.urls import path  # noqa: E402
from django.views.decorators.csrf import csrf_exempt  # noqa: E402


def index(request):
    return HttpResponse("django index")


def form(request):
    if request.method == "POST":
        return HttpResponse("hello %s from a form" % request.POST["name"])
    token = get_token(request)
    return HttpResponse(
        '<form method="post"><input type="hidden" name="csrfmiddlewaretoken" value="%s">'
        '<input name="name"></form>' % token
    )


@csrf_exempt
def json_view(request):
    if request.method == "POST":
        return JsonResponse({"received": json.loads(request.body), "method": "POST"})
    return JsonResponse({"items": [1, 2, 3], "method": "GET"})


def go(request):
    return redirect("target")


def target(request):
    return HttpResponse("you were redirected to " + request.path)


def cookie_set(request):
    response = HttpResponse("cookie set")
    response.set_cookie("flavour", "oatmeal")
    return response


def cookie_get(request):
    return HttpResponse("flavour=" + request.COOKIES.get("flavour", "none"))


def boom(request):
    raise RuntimeError("django view failed")


urlpatterns = [
    path("", index),
    path("form", form),
    path("json", json_view),
    path("redirect", go),
    path("target", target, name="target"),
    path("cookie-set", cookie_set),
    path("cookie-get", cookie_get),
    path("boom", boom),
]

application = get_wsgi_application()

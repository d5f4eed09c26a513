from django.http import HttpResponse, JsonResponse
from django.templatetags.static import static
from django.urls import reverse
from django.utils.html import format_html


def index(request):
    return HttpResponse(
        format_html(
            '<!doctype html><html><head><meta charset="utf-8"><title>vdirsite</title>'
            '<link rel="stylesheet" href="{}"></head><body>'
            "<h1>Django below {}</h1>"
            '<p><a href="{}">a page with a non-ASCII URL</a>, <a href="{}">who am I</a>, '
            '<a href="{}">the admin</a>.</p></body></html>',
            static("site.css"),
            request.META["SCRIPT_NAME"] or "/",
            reverse("greeting", args=["Zoë"]),
            reverse("whoami"),
            reverse("admin:index"),
        )
    )


def greeting(request, name):
    """Routed by a non-ASCII pattern; answers what Django decoded and what it reverses."""
    return JsonResponse(
        {
            "greeting": "Grüße, %s!" % name,
            "name": name,
            "path": request.path,
            "path_info": request.path_info,
            "reversed": reverse("greeting", args=[name]),
            "absolute": request.build_absolute_uri(),
        },
        json_dumps_params={"ensure_ascii": False},
    )


def whoami(request):
    return JsonResponse(
        {
            "remote_user": request.META.get("REMOTE_USER"),
            "authenticated": request.user.is_authenticated,
            "username": request.user.get_username(),
            "backend": request.session.get("_auth_user_backend"),
        },
        json_dumps_params={"ensure_ascii": False},
    )

from django.contrib import admin
from django.urls import path

from . import views

urlpatterns = [
    path("", views.index, name="index"),
    path("grüße/<str:name>/", views.greeting, name="greeting"),
    path("whoami", views.whoami, name="whoami"),
    path("admin/", admin.site.urls),
]

from chat import faults, views
from django.conf import settings
from django.contrib.staticfiles.urls import staticfiles_urlpatterns
from django.urls import path

urlpatterns = [
    path("", views.index, name="index"),
    path("healthz", views.healthz, name="healthz"),
]

if settings.FAULT_INJECTION:
    urlpatterns += faults.urlpatterns

# Serves /static/ from the app directories under DEBUG only (an empty list otherwise);
# in production nginx serves STATIC_ROOT.
urlpatterns += staticfiles_urlpatterns()

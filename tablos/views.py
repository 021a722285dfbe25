from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from tablos.models import Tablo


@login_required
def tablo_list(request: HttpRequest) -> HttpResponse:
    tablos = Tablo.objects.filter(owner=request.user).order_by("-created_at")
    return render(request, "tablos/list.html", {"tablos": tablos})

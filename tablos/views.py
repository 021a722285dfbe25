import uuid

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from config.http import AuthenticatedHttpRequest
from tablos import selectors, services
from tablos.forms import TabloForm
from tablos.models import Tablo

PAGE_SIZE = 50  # rows per page of tablos


def owned_tablo(request: AuthenticatedHttpRequest, tablo_id: uuid.UUID) -> Tablo:
    """The signed-in user's tablo, else 404: missing and someone else's look the same,
    so ids cannot be probed (the files pages use it too)."""
    tablo = selectors.tablo_get_for_user(user=request.user, tablo_id=tablo_id)
    if tablo is None:
        raise Http404("No such tablo.")
    return tablo


@login_required
@require_http_methods(["GET", "POST"])
def tablo_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    form = TabloForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        tablo = services.tablo_create(owner=request.user, name=form.cleaned_data["name"])
        messages.success(request, f"Tablo “{tablo.name}” created.")
        return redirect("tablos:detail", tablo_id=tablo.id)
    page = Paginator(selectors.tablo_list(user=request.user), PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    status = 400 if request.method == "POST" else 200
    return render(
        request,
        "tablos/list.html",
        {"tablos": page.object_list, "page": page, "form": form},
        status=status,
    )


@login_required
@require_http_methods(["GET", "POST"])
def tablo_delete(request: AuthenticatedHttpRequest, tablo_id: uuid.UUID) -> HttpResponse:
    tablo = owned_tablo(request, tablo_id)
    if request.method == "POST":
        name = tablo.name
        services.tablo_delete(tablo=tablo)
        messages.success(
            request, f"Tablo “{name}” deleted. Its files are being removed in the background."
        )
        return redirect("tablos:list")
    # GET only asks for confirmation: it never changes anything.
    return render(request, "tablos/confirm_delete.html", {"tablo": tablo})

import uuid

import structlog
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
)
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_http_methods, require_POST

from config.errors import DATABASE_OUTAGE
from config.http import AuthenticatedHttpRequest
from files import selectors, services
from files.forms import UploadForm
from files.models import TabloFile
from files.uploads import install_size_limit, request_too_large
from tablos.models import Tablo
from tablos.views import owned_tablo

logger = structlog.get_logger(__name__)

PAGE_SIZE = 50  # rows per page of files


def _owned_file(request: AuthenticatedHttpRequest, file_id: uuid.UUID) -> TabloFile:
    tablo_file = selectors.file_get_for_user(user=request.user, file_id=file_id)
    if tablo_file is None:
        raise Http404("No such file.")
    return tablo_file


@login_required
@require_http_methods(["GET"])
def tablo_detail(request: AuthenticatedHttpRequest, tablo_id: uuid.UUID) -> HttpResponse:
    """The tablo's page (tablos:detail): the upload form and its files."""
    tablo = owned_tablo(request, tablo_id)
    page = Paginator(selectors.tablo_files(tablo=tablo), PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    return render(
        request,
        "files/tablo_detail.html",
        {
            "tablo": tablo,
            "files": page.object_list,
            "page": page,
            "upload_form": UploadForm(),
            "max_upload_bytes": settings.FILE_UPLOAD_MAX_BYTES,
        },
    )


# csrf_exempt only to be allowed to install the size limit before the body is
# parsed (the CSRF middleware would read request.POST first); the CSRF check
# runs right after, in csrf_protect below.
@csrf_exempt
@login_required
@require_POST
def file_upload(request: AuthenticatedHttpRequest, tablo_id: uuid.UUID) -> HttpResponse:
    # Ownership first: someone else's tablo is a 404 before a byte is read.
    tablo = owned_tablo(request, tablo_id)
    max_bytes = settings.FILE_UPLOAD_MAX_BYTES
    if request_too_large(request, max_bytes=max_bytes):
        # Declared far over the limit: answer without reading the body at all.
        messages.error(request, services.size_limit_message(name=None, max_bytes=max_bytes))
        return redirect("tablos:detail", tablo_id=tablo.id)
    limit = install_size_limit(request, max_bytes=max_bytes)
    return _file_upload(request, tablo=tablo, limit=limit)


@csrf_protect
def _file_upload(request: HttpRequest, *, tablo: Tablo, limit) -> HttpResponse:
    back = redirect("tablos:detail", tablo_id=tablo.id)
    form = UploadForm(request.POST, request.FILES)
    if limit.rejected:
        for rejected in limit.rejected:
            messages.error(
                request,
                services.size_limit_message(
                    name=rejected.file_name, max_bytes=settings.FILE_UPLOAD_MAX_BYTES
                ),
            )
        return back
    if not form.is_valid():
        messages.error(request, "Choose a file to upload.")
        return back
    try:
        tablo_file = services.file_upload(tablo=tablo, uploaded=form.cleaned_data["file"])
    except services.FileRejected as exc:
        messages.error(request, str(exc))
        return back
    except DATABASE_OUTAGE:
        # file_upload removed the object; the 503 page says to try again (the
        # redirect would only land on a page that needs the database too).
        logger.warning("upload failed: database unavailable", tablo_id=str(tablo.id))
        raise
    except Exception:
        # Storage or database trouble: file_upload already removed whatever it
        # stored, so the user can simply try again.
        logger.exception("upload failed", tablo_id=str(tablo.id))
        messages.error(
            request,
            "The file could not be stored because of a server problem. "
            "Nothing was kept; please try again.",
        )
        return back
    messages.success(request, f"“{tablo_file.original_name}” uploaded.")
    return back


@login_required
@require_http_methods(["GET"])
def file_download(request: AuthenticatedHttpRequest, file_id: uuid.UUID) -> HttpResponseBase:
    tablo_file = _owned_file(request, file_id)
    try:
        download = services.file_download(tablo_file=tablo_file)
    except FileNotFoundError:
        # Local storage only (S3 answers 404 at the presigned URL itself).
        logger.warning("file object missing", file_id=str(tablo_file.id))
        raise Http404("This file is no longer available.") from None
    response: HttpResponseBase
    if isinstance(download, services.DownloadRedirect):
        response = HttpResponseRedirect(download.url)
    else:
        response = FileResponse(
            download.file,
            as_attachment=True,
            filename=download.filename,
            content_type=download.content_type,
        )
    # The presigned URL is a bearer credential: no shared caches, no reuse.
    response["Cache-Control"] = "private, no-store"
    response["X-Content-Type-Options"] = "nosniff"
    return response


@login_required
@require_http_methods(["GET", "POST"])
def file_delete(request: AuthenticatedHttpRequest, file_id: uuid.UUID) -> HttpResponse:
    tablo_file = _owned_file(request, file_id)
    if request.method == "POST":
        services.file_delete(tablo_file=tablo_file)
        messages.success(request, f"“{tablo_file.original_name}” deleted.")
        return redirect("tablos:detail", tablo_id=tablo_file.tablo_id)
    return render(request, "files/confirm_delete.html", {"file": tablo_file})

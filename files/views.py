import uuid
from urllib.parse import urlencode

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
from django.views.decorators.clickjacking import xframe_options_sameorigin
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_http_methods, require_POST

from config import csp
from config.errors import DATABASE_OUTAGE
from config.http import AuthenticatedHttpRequest
from files import selectors, services
from files.forms import SearchForm, UploadForm
from files.models import TabloFile
from files.uploads import (
    MAX_FILES_PER_UPLOAD,
    MaxSizeUploadHandler,
    install_size_limit,
    request_too_large,
)
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
            "max_files_per_upload": MAX_FILES_PER_UPLOAD,
            "preview_types": services.PREVIEW_KINDS,
        },
    )


# csrf_exempt only to be allowed to install the size limit before the body is
# parsed (the CSRF middleware would read request.POST first); the CSRF check
# runs right after, in csrf_protect below.
@csrf_exempt
@login_required
@require_POST
def file_upload(request: AuthenticatedHttpRequest, tablo_id: uuid.UUID) -> HttpResponse:
    """Store every file of the form; each one is kept or refused on its own."""
    # Ownership first: someone else's tablo is a 404 before a byte is read.
    tablo = owned_tablo(request, tablo_id)
    max_bytes = settings.FILE_UPLOAD_MAX_BYTES
    if request_too_large(request, max_bytes=max_bytes):
        # Declared far over the limit: answer without reading the body at all.
        messages.error(request, services.request_too_large_message(max_bytes=max_bytes))
        return redirect("tablos:detail", tablo_id=tablo.id)
    limit = install_size_limit(request, max_bytes=max_bytes)
    return _file_upload(request, tablo=tablo, limit=limit)


@csrf_protect
def _file_upload(
    request: HttpRequest, *, tablo: Tablo, limit: MaxSizeUploadHandler
) -> HttpResponse:
    form = UploadForm(request.POST, request.FILES)
    uploads = form.cleaned_data["file"] if form.is_valid() else []
    if not uploads and not limit.rejected:
        messages.error(request, "Choose a file to upload.")
    else:
        try:
            outcome = services.files_upload(tablo=tablo, uploads=uploads, refused=limit.rejected)
        except DATABASE_OUTAGE:
            # The 503 page says to try again (the redirect would only land on a
            # page that needs the database too).
            logger.warning("upload failed: database unavailable", tablo_id=str(tablo.id))
            raise
        if outcome.stored:
            messages.success(request, _uploaded_message(outcome.stored))
        for error in outcome.errors:
            messages.error(request, error)
    return redirect("tablos:detail", tablo_id=tablo.id)


def _uploaded_message(stored: list[TabloFile]) -> str:
    names = [f"“{tablo_file.original_name}”" for tablo_file in stored]
    if len(names) == 1:
        return f"{names[0]} uploaded."
    return f"{len(names)} files uploaded: {', '.join(names[:-1])} and {names[-1]}."


@login_required
@require_http_methods(["GET"])
def file_download(request: AuthenticatedHttpRequest, file_id: uuid.UUID) -> HttpResponseBase:
    return _send(_owned_file(request, file_id), inline=False)


# The preview page frames this response (a PDF): same-origin framing only, for this
# view alone; the rest of the site keeps X-Frame-Options DENY and frame-ancestors 'none'.
@login_required
@require_http_methods(["GET"])
@xframe_options_sameorigin
def file_inline(request: AuthenticatedHttpRequest, file_id: uuid.UUID) -> HttpResponseBase:
    """The file's bytes for its preview (inline), through the same signed download;
    a file of any other type is downloaded instead (as an attachment)."""
    tablo_file = _owned_file(request, file_id)
    if services.preview_kind(tablo_file) is None:
        return redirect("files:download", file_id=tablo_file.id)
    response = _send(tablo_file, inline=True)
    response[csp.HEADER] = csp.policy(replace={"frame-ancestors": [csp.SELF]})
    return response


def _send(tablo_file: TabloFile, *, inline: bool) -> HttpResponseBase:
    try:
        download = services.file_download(tablo_file=tablo_file, inline=inline)
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
            as_attachment=not download.inline,
            filename=download.filename,
            content_type=download.content_type,
        )
    # The presigned URL is a bearer credential: no shared caches, no reuse.
    response["Cache-Control"] = "private, no-store"
    response["X-Content-Type-Options"] = "nosniff"
    return response


@login_required
@require_http_methods(["GET"])
def file_preview(request: AuthenticatedHttpRequest, file_id: uuid.UUID) -> HttpResponse:
    """A page showing an image or a PDF (from ``file_inline``); for other types it
    says there is no preview and offers the download."""
    tablo_file = _owned_file(request, file_id)
    kind = services.preview_kind(tablo_file)
    response = render(
        request,
        "files/preview.html",
        {"file": tablo_file, "kind": kind, "tablo": owned_tablo(request, tablo_file.tablo_id)},
    )
    origin = services.download_origin() if kind is not None else None
    if origin is not None:
        # On S3 the preview's bytes come from the bucket's own origin (file_inline
        # redirects there): this page, and only it, may load an image or a frame from it.
        response[csp.HEADER] = csp.policy(
            add={"img-src": [origin], "frame-src": [csp.SELF, origin]}
        )
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


SEARCH_PAGE_SIZE = 25  # results per page of a search


@login_required
@require_http_methods(["GET"])
def search(request: AuthenticatedHttpRequest) -> HttpResponse:
    """The signed-in user's tablos and files whose name contains ``q``, newest first."""
    if "q" not in request.GET:
        return render(request, "files/search.html", {"form": SearchForm()})
    form = SearchForm(request.GET)
    if not form.is_valid():
        return render(request, "files/search.html", {"form": form}, status=400)
    query = form.cleaned_data["q"]
    page = Paginator(selectors.search(user=request.user, query=query), SEARCH_PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    tablo_names = selectors.tablo_names(
        user=request.user, tablo_ids={row["tablo"] for row in page.object_list}
    )
    return render(
        request,
        "files/search.html",
        {
            "form": form,
            "query": query,
            "page": page,
            "page_query": urlencode({"q": query}),
            "results": [{**row, "tablo_name": tablo_names.get(row["tablo"], "")} for row in page],
            "preview_types": services.PREVIEW_KINDS,
        },
    )

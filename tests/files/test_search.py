"""Search of one's own tablos and files by name: the page, its bounds, its indexes."""

from __future__ import annotations

import pytest
from django.db import connection
from django.urls import reverse

from files import selectors, services
from files.models import TabloFile
from tablos.models import Tablo
from tests.support.web import make_tablo, make_user, upload

pytestmark = pytest.mark.django_db


def put(tablo, name) -> TabloFile:
    return services.file_upload(tablo=tablo, uploaded=upload(name, b"x", "text/plain"))


def labels(response) -> list[tuple[str, str]]:
    return [(row["kind"], row["label"]) for row in response.context["results"]]


def test_finds_own_tablos_and_files_by_any_part_of_the_name(local_storage, client_ann, ann):
    reports = make_tablo(ann, "Quarterly REPORTS")
    put(reports, "report-q1.pdf")
    put(reports, "holiday.jpg")
    other = make_tablo(ann, "Misc")
    put(other, "Final_Report.docx")

    response = client_ann.get(reverse("search"), {"q": "report"})

    assert response.status_code == 200
    # Newest first, tablos and files together.
    assert labels(response) == [
        ("file", "Final_Report.docx"),
        ("file", "report-q1.pdf"),
        ("tablo", "Quarterly REPORTS"),
    ]
    page = response.content.decode()
    assert '3 results for “<span class="query">report</span>”' in page
    final = TabloFile.objects.get(original_name="Final_Report.docx")
    assert reverse("files:download", args=[final.id]) in page
    assert reverse("tablos:detail", args=[reports.id]) in page
    assert response.context["results"][0]["tablo_name"] == "Misc"


def test_never_shows_another_users_tablos_or_files(local_storage, client_ann, ann):
    mallory = make_user("mallory")
    put(make_tablo(mallory, "Secret report"), "secret-report.pdf")
    put(make_tablo(ann, "Mine"), "my-report.pdf")

    response = client_ann.get(reverse("search"), {"q": "report"})

    assert labels(response) == [("file", "my-report.pdf")]
    assert "secret" not in response.content.decode().lower()


def test_files_of_a_deleted_tablo_are_not_found(local_storage, client_ann, ann):
    tablo = make_tablo(ann, "Old")
    put(tablo, "old-report.pdf")
    Tablo.objects.filter(id=tablo.id).delete()  # rows wait for the purge job

    response = client_ann.get(reverse("search"), {"q": "report"})

    assert labels(response) == []
    assert "Nothing matches" in response.content.decode()


@pytest.mark.parametrize(("query", "expected"), [("%", ["100%.txt"]), ("_", ["a_b.txt"])])
def test_wildcard_characters_are_matched_literally(local_storage, client_ann, ann, query, expected):
    tablo = make_tablo(ann, "Plain")
    for name in ("100%.txt", "a_b.txt", "abc.txt"):
        put(tablo, name)

    response = client_ann.get(reverse("search"), {"q": query})

    assert [label for _, label in labels(response)] == expected


def test_results_are_paginated_and_the_links_keep_the_query(local_storage, client_ann, ann):
    tablo = make_tablo(ann, "Many")
    for number in range(30):
        put(tablo, f"scan {number:02d}.png")

    first = client_ann.get(reverse("search"), {"q": "scan"})
    second = client_ann.get(reverse("search"), {"q": "scan", "page": "2"})

    assert len(first.context["results"]) == 25
    assert first.context["page"].paginator.count == 30
    assert '?q=scan&amp;page=2"' in first.content.decode()
    assert [label for _, label in labels(second)] == [f"scan {n:02d}.png" for n in range(4, -1, -1)]


@pytest.mark.parametrize("page", ["abc", "-1", "999999", ""])
def test_a_bad_page_number_shows_a_page_not_an_error(local_storage, client_ann, ann, page):
    put(make_tablo(ann, "One"), "scan.png")

    response = client_ann.get(reverse("search"), {"q": "scan", "page": page})

    assert response.status_code == 200
    assert labels(response) == [("file", "scan.png")]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("", "Type part of a name to search for."),
        ("   ", "Type part of a name to search for."),
        ("\x1b\x07", "Type part of a name to search for."),
        ("x" * 101, "Search for at most 100 characters (you typed 101)."),
    ],
)
def test_bad_queries_get_a_clear_message(client_ann, query, message):
    response = client_ann.get(reverse("search"), {"q": query})

    assert response.status_code == 400
    assert message in response.content.decode()
    assert "results" not in response.context


def test_a_nul_byte_is_refused_before_the_view(client_ann):
    response = client_ann.get(reverse("search") + "?q=a%00b")

    assert response.status_code == 400


def test_the_empty_page_is_just_the_form(client_ann):
    response = client_ann.get(reverse("search"))

    assert response.status_code == 200
    assert 'role="search"' in response.content.decode()


def test_anonymous_users_are_sent_to_sign_in(client):
    response = client.get(reverse("search"), {"q": "x"})

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_the_name_match_is_served_by_an_index(ann):
    """PostgreSQL: the trigram index answers ILIKE '%term%' on the whole table; SQLite
    (no such index) reads only the owner's tablos' rows through their indexes."""
    queryset = selectors.search(user=ann, query="report")
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_seqscan = off")
            files_plan = TabloFile.objects.filter(original_name__icontains="report").explain()
            tablos_plan = Tablo.objects.filter(name__icontains="report").explain()
        assert "files_name_trgm_idx" in files_plan
        assert "tablos_name_trgm_idx" in tablos_plan
    else:
        plan = queryset.explain()
        assert "SEARCH tablos_tablo USING INDEX tablos_owner_created_idx" in plan
        assert "SEARCH files_tablofile USING INDEX files_tablofile_tablo_id" in plan
        assert "SCAN" not in plan  # no table read whole

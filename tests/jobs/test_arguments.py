from __future__ import annotations

import pytest

from jobs.arguments import MASK, SEARCH_TEXT_MAX, named_arguments, search_text
from jobs.engine import registry
from jobs.models import Job
from tests.support.taskpage import CHARGE, charge_card, package


def test_positional_arguments_take_their_parameter_names_and_secrets_are_masked() -> None:
    rows = named_arguments(charge_card, (42, "tok_live_123"), {"options": {"currency": "EUR"}})
    assert [(name, repr(value)) for name, value in rows] == [
        ("customer_id", "42"),
        ("token", MASK),
        ("options", "{'currency': 'EUR'}"),
    ]


def test_dictionary_keys_inside_arguments_are_masked_at_any_depth() -> None:
    [(_name, value)] = named_arguments(
        CHARGE, (), {"options": {"retry": [{"Api_Key": "k-1", "n": 1}]}}
    )
    assert repr(value) == f"{{'retry': [{{'Api_Key': {MASK}, 'n': 1}}]}}"


def test_the_masked_names_come_from_the_setting(settings) -> None:
    settings.JOBS_MASKED_ARGUMENTS = ["customer_id"]
    rows = dict(named_arguments(charge_card, (42, "tok_live_123"), {}))
    assert repr(rows["customer_id"]) == MASK
    assert rows["token"] == "tok_live_123"


def test_an_unknown_function_names_positional_arguments_by_position() -> None:
    rows = named_arguments("no.such.module.func", (1, 2), {"password": "p"})
    assert [(name, repr(value)) for name, value in rows] == [
        ("args[0]", "1"),
        ("args[1]", "2"),
        ("password", MASK),
    ]


def test_search_text_is_name_value_pairs_without_secrets() -> None:
    text = search_text(package(CHARGE, 42, "tok_live_123", options={"secret": "s3", "a": 1}))
    # Keys sorted, as reprlib prints a dict.
    assert text == f"customer_id=42 token={MASK} options={{'a': 1, 'secret': {MASK}}}"
    assert "tok_live_123" not in text
    assert "s3" not in text


def test_search_text_is_bounded_for_huge_arguments() -> None:
    text = search_text(package(CHARGE, 1, "t", options={"rows": list(range(100_000))}))
    assert len(text) <= SEARCH_TEXT_MAX
    assert text.startswith("customer_id=1 token=****")


def test_search_text_names_an_argument_whose_repr_raises_by_its_type() -> None:
    class Hostile:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    text = search_text(package(CHARGE, Hostile(), "t"))
    assert text.startswith("customer_id=<Hostile instance at ")
    assert text.endswith(f"> token={MASK}")


@pytest.mark.django_db
def test_enqueue_stores_the_masked_search_text_with_the_queue_row() -> None:
    task_id = registry.enqueue("tests.charge_card", 7, token="tok_live_999", on_commit=False)
    row = Job.objects.get(task_id=task_id)
    assert row.search_text == f"customer_id=7 token={MASK}"

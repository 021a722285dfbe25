import pytest
from django.core.exceptions import ValidationError
from django.db import transaction

from tablos import services
from tablos.models import Tablo
from tests.support.web import make_tablo, make_user, queued_purges

pytestmark = pytest.mark.django_db(transaction=True)


def test_tablo_create_strips_and_validates():
    ann = make_user("ann")
    assert services.tablo_create(owner=ann, name="  Trip ").name == "Trip"
    with pytest.raises(ValidationError):
        services.tablo_create(owner=ann, name="   ")


def test_tablo_delete_queues_the_purge_once_committed():
    tablo = make_tablo(make_user("ann"))
    tablo_id = tablo.id

    services.tablo_delete(tablo=tablo)

    assert not Tablo.objects.filter(id=tablo_id).exists()
    assert queued_purges(tablo_id) == 1


def test_rolled_back_delete_queues_nothing():
    tablo = make_tablo(make_user("ann"))
    tablo_id = tablo.id

    def delete_then_fail() -> None:
        with transaction.atomic():
            services.tablo_delete(tablo=tablo)
            raise RuntimeError("abort")

    with pytest.raises(RuntimeError, match="abort"):
        delete_then_fail()

    assert Tablo.objects.filter(id=tablo_id).exists()
    assert queued_purges(tablo_id) == 0

"""Schemathesis over the OpenAPI schema, in process against the ASGI app (token on).

Every operation gets generated requests, valid and invalid; Schemathesis's checks hold:
no server errors, responses match the documented status codes, content types and schemas,
invalid input is rejected and valid input accepted. The number of examples is bounded so
the file stays fast.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings

from ivcontrast.store.db import Database
from ivcontrast.web import create_app
from tests.support.review_store import add_review_series
from tests.support.web_store import fill_store, model_package, web_settings

pytestmark = pytest.mark.slow

TOKEN = "schema-token"
EXAMPLES = 25

# The schema does not depend on the data: read it from an app over an empty in-memory store
# at import, as parametrize needs it then (schemathesis's lazy fixture loader does not work
# with this pytest); the fixture below points it at the app over the filled store.
schema = schemathesis.openapi.from_dict(
    create_app(
        web_settings(Path("unused"), **{"web.token": TOKEN}), Database("sqlite://")
    ).openapi()
)


@schema.auth()
class BearerToken:
    """The token, given through Schemathesis's auth hook rather than fixed headers, so the
    negative cases that drop the Authorization header really go without it (and get 401)."""

    def get(self, case: schemathesis.Case, ctx: object) -> str:
        return TOKEN

    def set(self, case: schemathesis.Case, data: str, ctx: object) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


@pytest.fixture(scope="module")
def web_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    data = tmp_path_factory.mktemp("schema")
    settings_ = web_settings(
        data, **{"web.token": TOKEN, "classifier.model": str(model_package(data / "model"))}
    )
    db = Database(settings_.db_url)
    db.upgrade()
    fill_store(db, settings_.spool_path, slices=6, size=32)
    add_review_series(db, settings_.spool_path, slices=6, size=32)  # review and physics rows
    yield create_app(settings_, db)
    db.dispose()


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
def test_api_conforms_to_its_schema(case: schemathesis.Case, web_app: FastAPI) -> None:
    # Every request, the checks' follow-up requests included, goes to the filled app.
    case.operation.app = case.operation.schema.app = web_app
    case.call_and_validate()

"""Property-based run of schemathesis against the app's OpenAPI schema: no server errors."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from foramflow.label.app import create_app
from foramflow.label.store import LabelStore


def as_local_request(app):
    """The ASGI test client calls itself 'testserver'; present requests as a local browser's."""

    async def wrapped(scope, receive, send):
        if scope["type"] == "http":
            headers = [(k, v) for k, v in scope["headers"] if k != b"host"]
            scope = {**scope, "headers": [*headers, (b"host", b"127.0.0.1:8765")]}
        await app(scope, receive, send)

    return wrapped


def test_no_server_errors(tmp_path, image_root):
    """Every operation, with generated valid and edge-case inputs, answers below 500."""
    store = LabelStore(tmp_path / "project")
    store.add_images(image_root)
    store.set_labels([1, 2], "dark", user="anna")
    store.set_predictions([(3, "bright", 0.9, 0.8)], model="m")
    schema = schemathesis.openapi.from_asgi(
        "/openapi.json", as_local_request(create_app(store.project_dir))
    )
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=15,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case):
            case.call_and_validate(checks=[not_a_server_error])

        check()

"""Request bodies take numbers as JSON numbers only: pydantic's lax mode would read `true` as 1
and `"5"` as 5, which the published schema (and schemathesis) call invalid. Every body model
of every route is found from the app itself, so a new route cannot slip past."""

from __future__ import annotations

from typing import Annotated, Any

import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel, TypeAdapter, ValidationError

from app.core.config import Settings
from app.main import create_app


def _body_models(settings: Settings) -> dict[str, type[BaseModel]]:
    models: dict[str, type[BaseModel]] = {}
    for context in iter_route_contexts(create_app(settings).routes):
        route = context.route
        if not isinstance(route, APIRoute):
            continue
        for param in route.dependant.body_params:
            annotation = param.field_info.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                models[annotation.__name__] = annotation
    return models


def _numeric(prop: dict[str, Any]) -> bool:
    kinds = [prop.get("type")] + [alt.get("type") for alt in prop.get("anyOf", [])]
    return bool({"integer", "number"} & set(kinds))


def _numeric_fields(settings: Settings) -> list[tuple[type[BaseModel], str]]:
    found = []
    for model in _body_models(settings).values():
        props = model.model_json_schema()["properties"]
        found += [(model, name) for name, prop in props.items() if _numeric(prop)]
    return found


def test_the_discovery_sees_the_numeric_body_fields(settings: Settings) -> None:
    names = {f"{model.__name__}.{field}" for model, field in _numeric_fields(settings)}
    # A few known ones, from different domains: the walk is not silently empty.
    assert {"RoomSettingsUpdate.slow_mode_s", "RateSet.rate", "ConcertCreate.artist_id"} <= names


@pytest.mark.parametrize("value", [True, False, "5", "1.5"])
def test_numeric_body_fields_reject_booleans_and_strings(settings: Settings, value: Any) -> None:
    accepted = []
    for model, field in _numeric_fields(settings):
        # This one field alone (its type and constraints), whatever the others would need.
        info = model.model_fields[field]
        adapter: TypeAdapter[Any] = TypeAdapter(Annotated[info.annotation, info])  # type: ignore[arg-type]
        try:
            adapter.validate_python(value)
        except ValidationError:
            continue
        accepted.append(f"{model.__name__}.{field}")
    assert accepted == [], f"{value!r} accepted as a number by {accepted}"

"""engine.config.params: dataclasses built from YAML parameters, each mistake named."""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Any

import pytest

from engine.config.params import build_from_params


@dataclass(frozen=True)
class Greeting:
    """A class as an action or a connector's settings declares its parameters."""

    text: str
    times: int = 1
    loud: bool = False


def test_build_from_params_builds_the_class_from_its_parameters() -> None:
    built, mistakes = build_from_params(Greeting, {"text": "hi", "times": 2}, "action 'greet'")

    assert (built, mistakes) == (Greeting("hi", 2), [])


def test_build_from_params_names_every_mistake_again_each_time() -> None:
    for _ in range(2):
        built, mistakes = build_from_params(Greeting, {"txt": "hi", "times": "2"}, "action 'greet'")

        assert built is None
        assert mistakes == [
            ("txt", "action 'greet' has no parameter 'txt' (did you mean 'text'?)"),
            ("times", "action 'greet': times must be a whole number, not '2'"),
            (None, "action 'greet' needs the parameter 'text'"),
        ]


def test_building_a_class_many_times_resolves_its_annotations_once(monkeypatch: pytest.MonkeyPatch) -> None:
    @dataclass(frozen=True)
    class Fresh:  # a class of its own: nothing has resolved its annotations yet
        text: str

    resolved: list[Any] = []
    real = typing.get_type_hints

    def counted(obj: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        resolved.append(obj)
        return real(obj, *args, **kwargs)

    monkeypatch.setattr(typing, "get_type_hints", counted)
    built = [build_from_params(Fresh, {"text": str(n)}, "action 'fresh'")[0] for n in range(3)]

    assert built == [Fresh("0"), Fresh("1"), Fresh("2")]
    assert resolved == [Fresh]

"""Every exception class of ours has the one root and its layer's base (plantstream.core.errors)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

from plantstream.core import errors

LAYERS = {
    "plantstream.core": errors.CoreError,
    "producers": errors.ProducerError,
    "processors": errors.ProcessorError,
    "sinks": errors.SinkError,
    "plantstream": errors.ToolError,  # the top layer: stack, simulators, bench, cli
}


def our_modules() -> list[str]:
    names = []
    for root in ("plantstream", "producers", "processors", "sinks"):
        package = importlib.import_module(root)
        walked = pkgutil.walk_packages(package.__path__, f"{root}.")
        # __main__ would run the CLI; the Quix peer app runs only in the peer's own virtualenv (quixstreams)
        names += [m.name for m in walked if not m.name.endswith(("__main__", "quix_peer_app"))]
    return names


def layer_base(module: str) -> type[errors.PlantstreamError]:
    return next(base for prefix, base in LAYERS.items() if module == prefix or module.startswith(prefix + "."))


def test_every_exception_class_has_the_root_and_its_layers_base() -> None:
    found = []
    for name in our_modules():
        module = importlib.import_module(name)
        for cls in vars(module).values():
            if inspect.isclass(cls) and issubclass(cls, BaseException) and cls.__module__ == name:
                found.append(cls)
                if name == "plantstream.core.errors":
                    continue
                assert issubclass(cls, layer_base(name)), f"{name}.{cls.__name__} is not a {layer_base(name).__name__}"
    assert len(found) > 15  # the walk saw the packages

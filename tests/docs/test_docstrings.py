"""Every `Args:` entry of the public docstrings names a parameter of the signature.

The API reference (mkdocstrings, strict) fails on a documented parameter that
the signature lacks; this checks the same without the docs tooling. The
signature is the one the docs read from this package's source: a class's own
`__init__` (or one it inherits from a class of this package), never one
inherited from Keras, which the API reference does not load.
"""

import dataclasses
import importlib
import inspect
import pathlib
import re

import pytest

import keras_lowrank

ROOT = pathlib.Path(__file__).resolve().parents[2]
PACKAGE = keras_lowrank.__name__
_ARGS_HEADER = re.compile(r"^(args|arguments|params|parameters):\s*$", re.IGNORECASE)


def documented_parameters(docstring):
    """The names listed in a Google-style `Args:` section, in order."""
    names = []
    lines = inspect.cleandoc(docstring or "").splitlines()
    index = 0
    while index < len(lines):
        if not _ARGS_HEADER.match(lines[index].strip()):
            index += 1
            continue
        header_indent = _indent(lines[index])
        index += 1
        entry_indent = None
        while index < len(lines):
            line = lines[index]
            if line.strip():
                indent = _indent(line)
                if indent <= header_indent:
                    break
                if entry_indent is None:
                    entry_indent = indent
                if indent == entry_indent:
                    name = line.split(":", 1)[0].strip()
                    # `name (type): description` documents `name`.
                    names.append(re.sub(r"\s*\(.*\)$", "", name))
            index += 1
    return names


def _indent(line):
    return len(line) - len(line.lstrip())


def signature_names(function):
    names = set()
    for parameter in inspect.signature(function).parameters.values():
        names.add(parameter.name)
        if parameter.kind is parameter.VAR_POSITIONAL:
            names.add(f"*{parameter.name}")
        elif parameter.kind is parameter.VAR_KEYWORD:
            names.add(f"**{parameter.name}")
    return names


def _from_package(obj):
    return (getattr(obj, "__module__", None) or "").split(".")[0] == PACKAGE


def class_parameters(cls):
    """The constructor parameters the docs can see for `cls`."""
    for klass in cls.__mro__:
        if "__init__" in vars(klass):
            if _from_package(klass) or dataclasses.is_dataclass(klass):
                return signature_names(vars(klass)["__init__"]) - {"self"}
            return set()
    return set()


def public_objects():
    """(qualified name, object) of everything the API reference renders."""
    roots = {f"{PACKAGE}.{name}": getattr(keras_lowrank, name) for name in keras_lowrank.__all__}
    for page in sorted((ROOT / "docs" / "api").glob("*.md")):
        for path in re.findall(r"^::: *([\w.]+)", page.read_text(), re.MULTILINE):
            roots[path] = _resolve(path)
    objects = {}
    for path, obj in roots.items():
        members = _module_members(obj) if inspect.ismodule(obj) else {path: obj}
        for name, member in members.items():
            objects.setdefault(member, name)
            if inspect.isclass(member):
                for attr_name, attr in vars(member).items():
                    if attr_name.startswith("_"):
                        continue
                    if isinstance(attr, (staticmethod, classmethod)):
                        attr = attr.__func__
                    if inspect.isfunction(attr):
                        objects.setdefault(attr, f"{objects[member]}.{attr_name}")
    # One entry per object, under the first name found (the package's own).
    return sorted((name, obj) for obj, name in objects.items())


def _resolve(path):
    module_path, _, attribute = path.rpartition(".")
    try:
        return importlib.import_module(path)
    except ImportError:
        return getattr(importlib.import_module(module_path), attribute)


def _module_members(module):
    names = getattr(module, "__all__", None)
    if names is None:
        names = [
            name for name, obj in vars(module).items()
            if not name.startswith("_") and (inspect.isfunction(obj) or inspect.isclass(obj))
            and getattr(obj, "__module__", None) == module.__name__
        ]
    members = {}
    for name in names:
        obj = getattr(module, name)
        if inspect.ismodule(obj):
            members.update(_module_members(obj))
        elif inspect.isfunction(obj) or inspect.isclass(obj):
            members[f"{module.__name__}.{name}"] = obj
    return members


def test_parser_reads_google_args_sections():
    def example(rank, compression=None, *inputs, **kwargs):
        """Summary.

        Args:
            rank: the rank. A description with a colon: here.
                More description: still the same entry.
            compression (float): the ratio.
            *inputs: the inputs.
            **kwargs: passed on.

        Returns:
            Something: not a parameter.
        """

    assert documented_parameters(example.__doc__) == ["rank", "compression", "*inputs", "**kwargs"]
    assert set(documented_parameters(example.__doc__)) <= signature_names(example)
    assert documented_parameters("Summary.\n\n    Args:\n        a, b: the shape.\n") == ["a, b"]
    assert documented_parameters("No sections.") == []


def test_class_parameters_ignore_constructors_from_keras():
    import keras

    class Optimizer(keras.optimizers.Adam):
        pass

    @dataclasses.dataclass
    class Record:
        size: int
        name: str = ""

    assert class_parameters(Optimizer) == set()
    assert class_parameters(Record) == {"size", "name"}
    assert "rank" in class_parameters(keras_lowrank.LowRankEmbedding)


def test_public_objects_cover_the_exports_and_the_api_pages():
    names = dict(PUBLIC_OBJECTS)
    assert f"{PACKAGE}.compress" in names
    assert f"{PACKAGE}.LazyAdam" in names
    assert f"{PACKAGE}.compression.planner.plan_recipes" in names
    assert f"{PACKAGE}.LowRankEmbedding.call" in names


PUBLIC_OBJECTS = public_objects()


@pytest.mark.parametrize("name, obj", PUBLIC_OBJECTS, ids=[name for name, _ in PUBLIC_OBJECTS])
def test_documented_arguments_are_parameters(name, obj):
    if inspect.isclass(obj):
        parameters = class_parameters(obj)
        init = vars(obj).get("__init__")
        docstrings = [obj.__doc__, init.__doc__ if _from_package(obj) and init is not None else None]
    else:
        parameters = signature_names(obj)
        docstrings = [obj.__doc__]
    documented = [name for doc in docstrings for name in documented_parameters(doc)]
    unknown = [argument for argument in documented if argument not in parameters]
    assert not unknown, (
        f"{name}'s docstring documents {unknown}, which its signature "
        f"({sorted(parameters)}) does not have"
    )

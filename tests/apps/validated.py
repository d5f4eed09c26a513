"""Serves another application wrapped in wsgiref.validate.validator, with warnings turned
into errors: `[wsgi] app = validated:application`.

The environment variable VALIDATED_APP names the application, as the ini file would:
`module:attribute`, `module:factory()` (called once), or `isapi_wsgi:demo` for the
extension's built-in demo app. A protocol slip by either side makes the validator raise
(AssertionError, its traceback names `assert_`) or warn (a WSGIWarning, an error here); both
end up in the log, where tests/wsgi_validated.rs looks for them.
"""
import gc
import importlib
import os
import types
import warnings
from wsgiref.validate import WSGIWarning, validator


def demo_app():
    """The built-in demo app. The extension keeps it in a namespace of its own that is not
    in sys.modules, so it is found among the live functions: the very function the extension
    serves when no application is configured."""
    found = [
        obj
        for obj in gc.get_objects()
        if isinstance(obj, types.FunctionType)
        and obj.__name__ == "demo_app"
        and obj.__globals__.get("__name__") == "isapi_wsgi_support"
    ]
    if len(found) != 1:
        raise LookupError("the built-in demo app was not found (%d candidates)" % len(found))
    return found[0]


def load(spec):
    if spec == "isapi_wsgi:demo":
        return demo_app()
    module, _, attribute = spec.partition(":")
    call = attribute.endswith("()")
    target = importlib.import_module(module)
    for part in attribute[:-2 if call else None].split("."):
        target = getattr(target, part)
    return target() if call else target


TARGET = load(os.environ["VALIDATED_APP"])
# After the import: only warnings raised while serving (the validator's) become errors. With
# VALIDATED_ERRORS=wsgi only the validator's WSGIWarning does: a real application's own
# ResourceWarning or DeprecationWarning is its business, not a protocol slip.
if os.environ.get("VALIDATED_ERRORS") == "wsgi":
    warnings.simplefilter("error", WSGIWarning)
else:
    warnings.simplefilter("error")
application = validator(TARGET)

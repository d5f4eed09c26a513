"""An application whose import fails: the mount tests' example of one app that cannot start
while the others serve."""
raise RuntimeError("broken_app cannot start: this is on purpose")

"""``python -m tests.fakes.kube``: the fake API server on its own, for kubectl by hand."""

from tests.fakes.kube.server import main

main()

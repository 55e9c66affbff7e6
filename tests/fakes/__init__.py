"""Fakes of the outside APIs cairn talks to, served over real sockets for unmodified clients."""

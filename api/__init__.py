"""The FastAPI front end of cairn."""

"""One module per page of the web UI; ``shared.py`` holds what every page needs (the session's
principal, CSRF, rendering and errors as pages)."""

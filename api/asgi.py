"""The ASGI application uvicorn serves; configuration comes from ``CAIRN_*``."""

from api.main import create_app

app = create_app()

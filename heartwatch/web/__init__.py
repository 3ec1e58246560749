"""The web: the Starlette app (ping endpoint, pages, JSON API, write API, OpenAPI, metrics, login) and its assets."""

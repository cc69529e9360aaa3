"""The online path: the `serve` command, the Starlette gateway, the search pipeline and its Triton client."""

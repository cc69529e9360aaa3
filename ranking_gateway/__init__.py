"""ranking-gateway: Triton-hosted search ranking with real-time personalisation."""

__version__ = "0.1.0"

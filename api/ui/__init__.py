"""The dashboard: static pages under ``/ui`` that read the REST API with ``fetch``."""

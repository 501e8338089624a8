"""``orchestrator``: a command-line client for the training orchestrator's REST API.

It talks HTTP only, and imports nothing from the server's packages, so it can be installed
and used on any machine that reaches the API.
"""

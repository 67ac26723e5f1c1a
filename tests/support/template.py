"""Tests read the template through tools.template (one loader for tests and tools)."""

from tools.template import ROOT, TEMPLATE, functions, http_routes, load_handler, template

__all__ = ["ROOT", "TEMPLATE", "functions", "http_routes", "load_handler", "template"]
